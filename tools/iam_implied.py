"""The calls AWS makes for a Terraform config's resources, on a role's behalf or as a service.

Generic (any Terraform JSON): each rule reads one resource type and names the AWS page that says
which calls that service makes. A state machine parameter given as a JSONPath (``"JobQueue.$"``)
is resolved from ``dynamic`` (``"<State>.<Param>" -> [values]``), which the caller supplies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from tools.iam_check import Call, Config, IamCheckError
from tools.preflight_rules import SFN_LOG_ACTIONS

DOC = {
    "lambda": "https://docs.aws.amazon.com/step-functions/latest/dg/lambda-iam.html",
    "sns": "https://docs.aws.amazon.com/step-functions/latest/dg/sns-iam.html",
    "batch": "https://docs.aws.amazon.com/step-functions/latest/dg/batch-iam.html",
    "sdk": "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html",
    "map": "https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html",
    "sfn_logs": "https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html#cloudwatch-iam-policy",
    "sfn_xray": "https://docs.aws.amazon.com/step-functions/latest/dg/xray-iam.html",
    "sfn_kms": "https://docs.aws.amazon.com/step-functions/latest/dg/encryption-at-rest.html",
    "fn_logs": "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html",
    "fn_xray": "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html",
    "fn_dest": "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html",
    "fn_env_kms": "https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html",
    "batch_pull": "https://docs.aws.amazon.com/batch/latest/userguide/instance_IAM_role.html",
    "batch_logs": "https://docs.aws.amazon.com/batch/latest/userguide/using_awslogs.html",
    "s3_kms": "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html",
    "sqs_kms": "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html",
    "sns_kms": "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html",
    "events": "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html",
    "events_dlq": "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html",
    "events_role": "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-identity-based.html",
    "sns_lambda": "https://docs.aws.amazon.com/sns/latest/dg/sns-lambda-as-subscriber.html",
    "alarm_sns": "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html",
    "budgets_sns": "https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html",
    "replication": "https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html",
    "replication_kms": "https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html",
    "flow_logs": "https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html",
    "logs_kms": "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
    "anomaly_sns": "https://docs.aws.amazon.com/cost-management/latest/userguide/ad-SNS.html",
}
S3_READS = {"s3:GetObject", "s3:GetObjectVersion"}
S3_WRITES = {"s3:PutObject"}


def implied_calls(config: Config, dynamic: dict[str, list[str]] | None = None) -> Iterator[Call]:
    calls = [
        *state_machine_calls(config, dynamic or {}),
        *function_calls(config),
        *job_definition_calls(config),
        *service_calls(config),
        *replication_calls(config),
        *flow_log_calls(config),
        *log_group_calls(config),
    ]
    yield from calls


def with_kms(config: Config, calls: list[Call]) -> list[Call]:
    """``calls`` plus the KMS calls each one makes on an encrypted bucket, queue or topic."""
    keys = encrypted(config)
    out = list(calls)
    for call in calls:
        target = call.resource.split("/", 1)[0] if call.resource.startswith("arn:aws:s3:::") else call.resource
        if target not in keys:
            continue
        key, service, bucket_key, region = keys[target]
        context = {"kms:ViaService": f"{service}.{region}.amazonaws.com"}
        if service == "s3":
            context["kms:EncryptionContext:aws:s3:arn"] = target if bucket_key else call.resource
            actions = ["kms:Decrypt"] if call.action in S3_READS else ["kms:GenerateDataKey"]
            if call.action not in S3_READS | S3_WRITES:
                continue
            doc = DOC["s3_kms"]
        elif call.action in ("sqs:SendMessage", "sns:Publish"):
            actions, doc = ["kms:GenerateDataKey", "kms:Decrypt"], DOC[f"{service}_kms"]
        else:
            continue
        for action in actions:
            out.append(Call.of(call.principal, action, key, f"{call.source} -> {doc}", **context))
    return out


def encrypted(config: Config) -> dict[str, tuple[str, str, bool, str]]:
    """Resource ARN -> (key ARN, service, S3 bucket key, region) for SSE-KMS buckets, queues, topics."""
    out: dict[str, tuple[str, str, bool, str]] = {}
    for _, body in config.resources("aws_s3_bucket_server_side_encryption_configuration"):
        bucket = config.address_of(body["bucket"])
        for rule in body.get("rule", []):
            default = rule.get("apply_server_side_encryption_by_default", {})
            if bucket and default.get("sse_algorithm", "").startswith("aws:kms") and default.get("kms_master_key_id"):
                arn = config.attribute(*bucket, "arn")
                key = config.resolve(default["kms_master_key_id"])
                region = config.region_of(config.get(*bucket))
                out[arn] = (key, "s3", bool(rule.get("bucket_key_enabled")), region)
    for type_, service in (("aws_sqs_queue", "sqs"), ("aws_sns_topic", "sns")):
        for name, body in config.resources(type_):
            key = body.get("kms_master_key_id")
            if key and "alias/aws/" not in key:
                out[config.attribute(type_, name, "arn")] = (
                    config.resolve(key),
                    service,
                    False,
                    config.region_of(body),
                )
    return out


def _states(states: dict) -> Iterator[tuple[str, dict]]:
    for name, state in states.items():
        yield name, state
        if state.get("Type") == "Map":
            yield from _states((state.get("ItemProcessor") or state.get("Iterator") or {}).get("States", {}))
        for branch in state.get("Branches", []):
            yield from _states(branch.get("States", {}))


def _value(state_name: str, params: dict, key: str, dynamic: dict[str, list[str]]) -> list[str]:
    """A parameter's values: literal, a States.Format with its ``{}`` as ``*``, or ``dynamic``."""
    if key in params:
        return [params[key]]
    path = params.get(f"{key}.$")
    if path is None:
        return []
    given = dynamic.get(f"{state_name}.{key}")
    if given is not None:
        return given
    fmt = re.fullmatch(r"States\.Format\('([^']*)'.*\)", path)
    if fmt:
        return [fmt.group(1).replace("{}", "*")]
    raise IamCheckError(
        f"state {state_name}: {key}.$ is the path {path}; give its values as dynamic '{state_name}.{key}'"
    )


def _s3(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def state_machine_calls(config: Config, dynamic: dict[str, list[str]]) -> Iterator[Call]:
    for name, body in config.resources("aws_sfn_state_machine"):
        role = config.resolve(body["role_arn"])
        arn = config.attribute("aws_sfn_state_machine", name, "arn")
        sm_name = config.resolve(body["name"])
        definition = json.loads(config.resolve(body["definition"]))
        calls: list[Call] = []
        for state_name, state in _states(definition.get("States", {})):
            where = f"{sm_name} state {state_name}"
            resource = state.get("Resource", "")
            params = state.get("Parameters", {}) or {}
            if state.get("Type") == "Task":
                calls += task_calls(config, role, where, state_name, resource, params, dynamic)
            if state.get("Type") == "Map":
                processor = (state.get("ItemProcessor") or {}).get("ProcessorConfig", {})
                if processor.get("Mode") == "DISTRIBUTED":
                    calls.append(Call.of(role, "states:StartExecution", arn, f"{where} -> {DOC['map']}"))
                    for action in ("states:DescribeExecution", "states:StopExecution"):
                        execution = arn.replace(":stateMachine:", ":execution:") + "/*"
                        calls.append(Call.of(role, action, execution, f"{where} -> {DOC['map']}"))
                reader = state.get("ItemReader")
                if reader:
                    calls += task_calls(
                        config,
                        role,
                        f"{where} ItemReader",
                        state_name,
                        reader["Resource"],
                        reader.get("Parameters", {}),
                        dynamic,
                    )
        logging = body.get("logging_configuration") or {}
        if logging.get("log_destination") and logging.get("level", "OFF") != "OFF":
            for action in SFN_LOG_ACTIONS:
                calls.append(Call.of(role, action, "*", f"{sm_name} logging -> {DOC['sfn_logs']}"))
        if (body.get("tracing_configuration") or {}).get("enabled"):
            for action in (
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ):
                calls.append(Call.of(role, action, "*", f"{sm_name} tracing -> {DOC['sfn_xray']}"))
        encryption = body.get("encryption_configuration") or {}
        if encryption.get("type") == "CUSTOMER_MANAGED_KMS_KEY":
            key = config.resolve(encryption["kms_key_id"])
            for action in ("kms:Decrypt", "kms:GenerateDataKey"):
                calls.append(
                    Call.of(
                        role,
                        action,
                        key,
                        f"{sm_name} encryption -> {DOC['sfn_kms']}",
                        **{"kms:EncryptionContext:aws:states:stateMachineArn": arn},
                    )
                )
        yield from with_kms(config, calls)


def task_calls(
    config: Config, role: str, where: str, state: str, resource: str, params: dict, dynamic: dict[str, list[str]]
) -> list[Call]:
    integration = resource.removeprefix("arn:aws:states:::")
    out: list[Call] = []
    if integration.startswith("lambda:invoke"):
        for function in _value(state, params, "FunctionName", dynamic):
            out.append(Call.of(role, "lambda:InvokeFunction", function, f"{where} -> {DOC['lambda']}"))
    elif integration == "sns:publish":
        for topic in _value(state, params, "TopicArn", dynamic):
            out.append(Call.of(role, "sns:Publish", topic, f"{where} -> {DOC['sns']}"))
    elif integration.startswith("batch:submitJob"):
        source = f"{where} -> {DOC['batch']}"
        for queue in _value(state, params, "JobQueue", dynamic):
            out.append(Call.of(role, "batch:SubmitJob", queue, source))
        for definition in _value(state, params, "JobDefinition", dynamic):
            out.append(Call.of(role, "batch:SubmitJob", definition, source))
        if integration.endswith(".sync"):
            account, region = config.account, config.region
            out.append(Call.of(role, "batch:DescribeJobs", "*", source))
            out.append(Call.of(role, "batch:TerminateJob", f"arn:aws:batch:{region}:{account}:job/*", source))
            rule = f"arn:aws:events:{region}:{account}:rule/StepFunctionsGetEventsForBatchJobsRule"
            for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
                out.append(Call.of(role, action, rule, source))
    elif integration.startswith("aws-sdk:s3:") or integration in ("s3:getObject", "s3:listObjectsV2"):
        operation = integration.split(":")[-1]
        action = "s3:" + operation[0].upper() + operation[1:]
        source = f"{where} -> {DOC['sdk'] if 'aws-sdk' in integration else DOC['map']}"
        for bucket in _value(state, params, "Bucket", dynamic):
            if operation in ("listObjectsV2", "listObjects"):
                out.append(Call.of(role, "s3:ListBucket", _s3(bucket), source))
            for key in _value(state, params, "Key", dynamic):
                out.append(Call.of(role, action, _s3(bucket, key), source))
    else:
        raise IamCheckError(f"{where}: integration {resource} has no IAM rule in tools/iam_implied.py; add one")
    return out


def function_calls(config: Config) -> Iterator[Call]:
    """What Lambda does with the execution role: logs, X-Ray, async destinations, env decryption."""
    destinations: dict[str, list[str]] = {}
    for _, body in config.resources("aws_lambda_function_event_invoke_config"):
        target = config.address_of(body["function_name"])
        failure = ((body.get("destination_config") or {}).get("on_failure") or {}).get("destination")
        if target and failure:
            destinations.setdefault(target[1], []).append(config.resolve(failure))
    for name, body in config.resources("aws_lambda_function"):
        role = config.resolve(body["role"])
        fn = config.resolve(body["function_name"])
        calls = []
        group = config.resolve((body.get("logging_config") or {}).get("log_group") or f"/aws/lambda/{fn}")
        log_group = f"arn:aws:logs:{config.region_of(body)}:{config.account}:log-group:{group}:*"
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            calls.append(Call.of(role, action, log_group, f"{fn} logs -> {DOC['fn_logs']}"))
        if (body.get("tracing_config") or {}).get("mode") == "Active":
            for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords"):
                calls.append(Call.of(role, action, "*", f"{fn} tracing -> {DOC['fn_xray']}"))
        dlq = (body.get("dead_letter_config") or {}).get("target_arn")
        for target in [config.resolve(dlq)] * bool(dlq) + destinations.get(name, []):
            action = {"sqs": "sqs:SendMessage", "sns": "sns:Publish", "lambda": "lambda:InvokeFunction"}[
                target.split(":")[2]
            ]
            calls.append(Call.of(role, action, target, f"{fn} failure destination -> {DOC['fn_dest']}"))
        if body.get("kms_key_arn") and body.get("environment"):
            key = config.resolve(body["kms_key_arn"])
            calls.append(Call.of(role, "kms:Decrypt", key, f"{fn} environment -> {DOC['fn_env_kms']}"))
        yield from with_kms(config, calls)


def job_definition_calls(config: Config) -> Iterator[Call]:
    """The ECS agent pulls the image and writes awslogs with the execution role, or (EC2 compute
    environments, no execution role) with the container instance role."""
    instance_roles = []
    for _, ce in config.resources("aws_batch_compute_environment"):
        profile = config.address_of((ce.get("compute_resources") or {}).get("instance_role", ""))
        body = config.get(*profile) if profile else None
        if body:
            role = config.address_of(body["role"])
            instance_roles.append(config.attribute(*role, "arn"))
    # The ECS agent on each instance joins the cluster Batch creates and reports on its tasks.
    for role in sorted(set(instance_roles)):
        for action in (
            "ecs:CreateCluster",
            "ecs:RegisterContainerInstance",
            "ecs:DeregisterContainerInstance",
            "ecs:DiscoverPollEndpoint",
            "ecs:Poll",
            "ecs:StartTelemetrySession",
            "ecs:SubmitContainerStateChange",
            "ecs:SubmitTaskStateChange",
        ):
            yield Call.of(role, action, "*", f"container instance -> {DOC['batch_pull']}")
    for _, body in config.resources("aws_batch_job_definition"):
        props = json.loads(config.resolve(body.get("container_properties") or "{}"))
        roles = [props["executionRoleArn"]] if props.get("executionRoleArn") else sorted(set(instance_roles))
        name = config.resolve(body["name"])
        image = props.get("image", "")
        match = re.match(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)", image)
        for role in roles:
            if match:
                repo = f"arn:aws:ecr:{match.group(2)}:{match.group(1)}:repository/{match.group(3)}"
                source = f"job definition {name} image -> {DOC['batch_pull']}"
                yield Call.of(role, "ecr:GetAuthorizationToken", "*", source)
                for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
                    yield Call.of(role, action, repo, source)
            options = (props.get("logConfiguration") or {}).get("options", {})
            if (props.get("logConfiguration") or {}).get("logDriver") == "awslogs" and options.get("awslogs-group"):
                region = options.get("awslogs-region", config.region)
                group = f"arn:aws:logs:{region}:{config.account}:log-group:{options['awslogs-group']}:*"
                for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
                    yield Call.of(role, action, group, f"job definition {name} logs -> {DOC['batch_logs']}")


def service_calls(config: Config) -> Iterator[Call]:
    """Services that call our resources as themselves: EventBridge targets, SNS -> Lambda,
    alarms, budgets and cost anomaly alerts -> SNS (and its key)."""
    calls: list[Call] = []
    for _, body in config.resources("aws_cloudwatch_event_target"):
        rule_ref = config.address_of(body["rule"])
        rule = config.attribute(*rule_ref, "arn") if rule_ref else config.resolve(body["rule"])
        target = config.resolve(body["arn"])
        service = target.split(":")[2]
        if body.get("role_arn"):
            action = {"states": "states:StartExecution", "batch": "batch:SubmitJob"}.get(service, f"{service}:*")
            calls.append(
                Call.of(config.resolve(body["role_arn"]), action, target, f"rule {rule} -> {DOC['events_role']}")
            )
        else:
            action = {"lambda": "lambda:InvokeFunction", "sns": "sns:Publish", "sqs": "sqs:SendMessage"}[service]
            calls.append(
                Call.of(
                    "events.amazonaws.com", action, target, f"rule {rule} -> {DOC['events']}", **{"aws:SourceArn": rule}
                )
            )
        dlq = body.get("dead_letter_config")  # a block: an object in the config, a list in a plan
        for dead_letters in dlq if isinstance(dlq, list) else [dlq or {}]:
            if dead_letters.get("arn"):
                calls.append(
                    Call.of(
                        "events.amazonaws.com",
                        "sqs:SendMessage",
                        config.resolve(dead_letters["arn"]),
                        f"rule {rule} undelivered -> {DOC['events_dlq']}",
                        **{"aws:SourceArn": rule},
                    )
                )
    for _, body in config.resources("aws_sns_topic_subscription"):
        if body.get("protocol") == "lambda":
            topic = config.resolve(body["topic_arn"])
            calls.append(
                Call.of(
                    "sns.amazonaws.com",
                    "lambda:InvokeFunction",
                    config.resolve(body["endpoint"]),
                    f"subscription of {topic} -> {DOC['sns_lambda']}",
                    **{"aws:SourceArn": topic},
                )
            )
    for name, body in config.resources("aws_cloudwatch_metric_alarm"):
        for target in {
            config.resolve(t)
            for k in ("alarm_actions", "ok_actions", "insufficient_data_actions")
            for t in body.get(k) or []
        }:
            if ":sns:" in target:
                calls.append(
                    Call.of("cloudwatch.amazonaws.com", "sns:Publish", target, f"alarm {name} -> {DOC['alarm_sns']}")
                )
    for name, body in config.resources("aws_budgets_budget"):
        for target in {
            config.resolve(t) for n in body.get("notification") or [] for t in n.get("subscriber_sns_topic_arns") or []
        }:
            calls.append(
                Call.of("budgets.amazonaws.com", "sns:Publish", target, f"budget {name} -> {DOC['budgets_sns']}")
            )
    for name, body in config.resources("aws_ce_anomaly_subscription"):
        for subscriber in body.get("subscriber") or []:
            if subscriber.get("type") == "SNS":
                target = config.resolve(subscriber["address"])
                calls.append(
                    Call.of(
                        "costalerts.amazonaws.com", "sns:Publish", target, f"anomaly {name} -> {DOC['anomaly_sns']}"
                    )
                )
    yield from dict.fromkeys(with_kms(config, calls))


def replication_calls(config: Config) -> Iterator[Call]:
    """S3 replication reads the source's versions and writes the replicas with the rule's role,
    decrypting with the source key and encrypting with the replica key."""
    keys = encrypted(config)
    for name, body in config.resources("aws_s3_bucket_replication_configuration"):
        role = config.resolve(body["role"])
        source_ref = config.address_of(body["bucket"])
        source = config.attribute(*source_ref, "arn")
        where = f"replication {name} -> {DOC['replication']}"
        for action in ("s3:GetReplicationConfiguration", "s3:ListBucket"):
            yield Call.of(role, action, source, where)
        for action in ("s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"):
            yield Call.of(role, action, f"{source}/*", where)
        for rule in body.get("rule", []):
            if rule.get("status") != "Enabled":
                continue
            destination = rule["destination"]
            target = config.resolve(destination["bucket"])
            actions = ["s3:ReplicateObject", "s3:ReplicateTags"]
            if (rule.get("delete_marker_replication") or {}).get("status") == "Enabled":
                actions.append("s3:ReplicateDelete")
            for action in actions:
                yield Call.of(role, action, f"{target}/*", where)
            kms_where = f"replication {name} -> {DOC['replication_kms']}"
            if source in keys:
                key, _, bucket_key, region = keys[source]
                context = {
                    "kms:ViaService": f"s3.{region}.amazonaws.com",
                    "kms:EncryptionContext:aws:s3:arn": source if bucket_key else f"{source}/*",
                }
                yield Call.of(role, "kms:Decrypt", key, kms_where, **context)
            replica_key = (destination.get("encryption_configuration") or {}).get("replica_kms_key_id")
            if replica_key:
                region = keys.get(target, ("", "", False, config.region))[3]
                context = {
                    "kms:ViaService": f"s3.{region}.amazonaws.com",
                    "kms:EncryptionContext:aws:s3:arn": target
                    if keys.get(target, ("", "", False))[2]
                    else f"{target}/*",
                }
                yield Call.of(role, "kms:Encrypt", config.resolve(replica_key), kms_where, **context)


def flow_log_calls(config: Config) -> Iterator[Call]:
    """A flow log to CloudWatch Logs writes with its role. The doc's example policy also lists
    logs:CreateLogGroup (the group exists: Terraform creates it) and logs:DescribeLogGroups, which
    the page does not say the delivery calls: not modelled, written down as unproven."""
    for name, body in config.resources("aws_flow_log"):
        if body.get("log_destination_type", "cloud-watch-logs") != "cloud-watch-logs" or not body.get("iam_role_arn"):
            continue
        role = config.resolve(body["iam_role_arn"])
        group = config.resolve(body["log_destination"])
        where = f"flow log {name} -> {DOC['flow_logs']}"
        for action in ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"):
            yield Call.of(role, action, f"{group}:*", where)


def log_group_calls(config: Config) -> Iterator[Call]:
    """CloudWatch Logs itself uses the key of a KMS-encrypted log group, as the regional service
    principal and with the group's ARN as encryption context (the key policy must allow it)."""
    for name, body in config.resources("aws_cloudwatch_log_group"):
        if not body.get("kms_key_id"):
            continue
        region = config.region_of(body)
        group = config.attribute("aws_cloudwatch_log_group", name, "arn")
        context = {"kms:EncryptionContext:aws:logs:arn": group}
        for action in ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:DescribeKey"):
            yield Call.of(
                f"logs.{region}.amazonaws.com",
                action,
                config.resolve(body["kms_key_id"]),
                f"log group {name} -> {DOC['logs_kms']}",
                **context,
            )
