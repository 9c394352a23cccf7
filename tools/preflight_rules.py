"""General AWS rules for ``tools.preflight``: what real AWS rejects or misbehaves on and moto accepts.

Each rule reads one synthesized stack (any Terraform JSON of the AWS provider, through the duck-typed
``Stack`` of ``tools.preflight``: ``of``, ``ref``, ``refs_to``, ``region``) and yields ``Finding``s.
The AWS documentation page of each rule is in its docstring and in ``docs/aws-contract.md``, which
names the rule (``preflight:<rule>``) for every resource type it covers. Values Terraform fills in at
apply time (``${...}``) count as a 12-character account id where a length matters.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

INTERPOLATION = re.compile(r"\$\{[^}]*\}")
# type.name inside an interpolation (a resource the expression reads).
RESOURCE_NAME = re.compile(r"\b([a-z][a-z0-9_]*)\.([A-Za-z0-9_-]+)")
# The role Batch uses without a service role: https://docs.aws.amazon.com/batch/latest/userguide/using-service-linked-roles.html
BATCH_SLR = "AWSServiceRoleForBatch"


@dataclass(frozen=True)
class Finding:
    check: str
    address: str
    problem: str
    fix: str

    def line(self) -> str:
        return f"FAIL {self.check} {self.address}: {self.problem}; {self.fix}"


def first(value: Any) -> dict:
    """A nested block: cdktf writes single blocks as an object, Terraform JSON also allows a list."""
    if isinstance(value, list):
        return value[0] if value else {}
    return value or {}


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def resolved(value: Any) -> str:
    """A name as AWS would see it, with each interpolation counted as a 12-digit account id."""
    return INTERPOLATION.sub("000000000000", str(value))


def document(text: Any) -> tuple[Any, str | None]:
    """A JSON document (policy, dashboard body, definition) and why it does not parse, if it does not."""
    if not isinstance(text, str):
        return text, None
    try:
        return json.loads(text), None
    except ValueError as error:
        return None, f"is not valid JSON ({error.msg} at line {error.lineno})"


# ----------------------------------------------------------------------------------------------
# policy documents

# (type, attribute) -> kind: "identity" (no Principal), "resource" (Principal required), "trust".
POLICY_FIELDS = {
    ("aws_iam_role", "assume_role_policy"): "trust",
    ("aws_iam_role_policy", "policy"): "identity",
    ("aws_iam_policy", "policy"): "identity",
    ("aws_iam_user_policy", "policy"): "identity",
    ("aws_iam_group_policy", "policy"): "identity",
    ("aws_kms_key", "policy"): "resource",
    ("aws_kms_key_policy", "policy"): "resource",
    ("aws_sns_topic", "policy"): "resource",
    ("aws_sns_topic_policy", "policy"): "resource",
    ("aws_s3_bucket_policy", "policy"): "resource",
    ("aws_sqs_queue", "policy"): "resource",
    ("aws_sqs_queue_policy", "policy"): "resource",
    ("aws_vpc_endpoint", "policy"): "resource",
    ("aws_vpc_endpoint_policy", "policy"): "resource",
    ("aws_ecr_repository_policy", "policy"): "resource",
    ("aws_cloudwatch_log_resource_policy", "policy_document"): "resource",
}
# Size limits (characters; IAM does not count white space). https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html,
# https://docs.aws.amazon.com/kms/latest/developerguide/resource-limits.html, S3/SNS/SQS: their quota pages.
POLICY_SIZE = {
    "aws_iam_policy": 6144,
    "aws_iam_role.assume_role_policy": 2048,
    "aws_kms_key": 32768,
    "aws_kms_key_policy": 32768,
    "aws_s3_bucket_policy": 20480,
    "aws_sns_topic": 30720,
    "aws_sns_topic_policy": 30720,
    "aws_sqs_queue": 20480,
    "aws_sqs_queue_policy": 20480,
    "aws_vpc_endpoint": 20480,
}
ROLE_INLINE_TOTAL = 10240  # all inline policies of one role together
IAM_TYPES = {"aws_iam_role", "aws_iam_role_policy", "aws_iam_policy", "aws_iam_user_policy", "aws_iam_group_policy"}
ACTION = re.compile(r"^(\*|[a-z0-9-]+:[A-Za-z0-9*?]+)$")
SID_IAM = re.compile(r"^[A-Za-z0-9]*$")


def compact(policy: Any) -> int:
    return len(json.dumps(policy, separators=(",", ":")))


def statement_problems(statement: Any, kind: str, iam: bool) -> list[str]:
    if not isinstance(statement, dict):
        return ["a statement is not an object"]
    problems = []
    sid = statement.get("Sid", "")
    if iam and not SID_IAM.match(str(sid)):
        problems.append(f"Sid {sid!r} has characters IAM refuses (only A-Z, a-z, 0-9)")
    if statement.get("Effect") not in {"Allow", "Deny"}:
        problems.append(f"Effect {statement.get('Effect')!r} is not Allow or Deny")
    if ("Action" in statement) == ("NotAction" in statement):
        problems.append("it needs exactly one of Action and NotAction")
    for action in as_list(statement.get("Action", statement.get("NotAction"))):
        if not isinstance(action, str) or not ACTION.match(action):
            problems.append(f"action {action!r} is not service:Action")
    has_principal = "Principal" in statement or "NotPrincipal" in statement
    has_resource = "Resource" in statement or "NotResource" in statement
    if kind == "identity" and has_principal:
        problems.append("an identity policy must not name a Principal")
    if kind in {"resource", "trust"} and not has_principal:
        problems.append("a resource or trust policy statement needs a Principal")
    if kind == "trust" and has_resource:
        problems.append("a trust policy must not have a Resource")
    if kind != "trust" and not has_resource:
        problems.append("it needs a Resource or NotResource")
    return problems


def check_policy_shape(stack: Any) -> Iterator[Finding]:
    """Every policy document is JSON with Version 2012-10-17, a Statement list of Effect, Action/NotAction,
    Resource/NotResource (none in a trust policy), a Principal exactly in resource and trust policies, IAM
    Sids alphanumeric, unique Sids, within its size limit.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"""
    inline: dict[str, int] = {}
    for (type_, field), kind in POLICY_FIELDS.items():
        for name, body in stack.of(type_).items():
            if field not in body:
                continue
            address = f"{type_}.{name}"
            policy, error = document(body[field])
            if error or not isinstance(policy, dict):
                yield Finding(
                    "policy-shape", address, f"{field} {error or 'is not a JSON object'}", "write it with json.dumps"
                )
                continue
            problems = []
            if policy.get("Version") != "2012-10-17":
                problems.append(
                    f'Version {policy.get("Version")!r} (want "2012-10-17": older versions ignore policy variables)'
                )
            statements = as_list(policy.get("Statement"))
            if not statements:
                problems.append("no Statement")
            sids = [s.get("Sid") for s in statements if isinstance(s, dict) and s.get("Sid")]
            if len(sids) != len(set(sids)):
                problems.append("Sids are not unique")
            for index, statement in enumerate(statements):
                problems += [f"statement {index}: {p}" for p in statement_problems(statement, kind, type_ in IAM_TYPES)]
            limit = POLICY_SIZE.get(f"{type_}.{field}", POLICY_SIZE.get(type_) if kind != "trust" else None)
            size = compact(policy)
            if limit and size > limit:
                problems.append(f"{size} characters, over the limit of {limit}")
            if type_ == "aws_iam_role_policy":
                role = stack.ref(body.get("role"))
                inline[role[1] if role else name] = inline.get(role[1] if role else name, 0) + size
            for problem in problems:
                yield Finding("policy-shape", address, f"{field}: {problem}", "fix the document (AWS refuses it)")
    for role, size in inline.items():
        if size > ROLE_INLINE_TOTAL:
            yield Finding(
                "policy-shape",
                f"aws_iam_role.{role}",
                f"its inline policies add up to {size} characters, over IAM's {ROLE_INLINE_TOTAL}",
                "move statements to a managed policy",
            )


def statements_of(policy: Any) -> list[dict]:
    return [s for s in as_list((policy or {}).get("Statement")) if isinstance(s, dict)]


def principals(statement: dict, kind: str = "Service") -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    return [str(p) for p in as_list(principal.get(kind))] if isinstance(principal, dict) else []


def allows(statement: dict, action: str) -> bool:
    return statement.get("Effect") == "Allow" and any(
        fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in as_list(statement.get("Action"))
    )


def condition_keys(statement: dict) -> dict[str, Any]:
    """Condition key (lower case) -> value, whatever the operator."""
    return {k.lower(): v for block in (statement.get("Condition") or {}).values() for k, v in (block or {}).items()}


# ----------------------------------------------------------------------------------------------
# KMS keys and the services that use them

LOGS_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:DescribeKey")


def key_policy(stack: Any, value: Any) -> tuple[str, Any] | None:
    """(key name, parsed policy) of a key of this stack referenced by ``value``."""
    ref = stack.ref(value)
    if not ref or ref[0] != "aws_kms_key":
        return None
    policy, _ = document((stack.of("aws_kms_key").get(ref[1]) or {}).get("policy") or "{}")
    return ref[1], policy


def check_kms_logs(stack: Any) -> Iterator[Finding]:
    """A log group encrypted with a customer key: the key policy lets ``logs.<region>.amazonaws.com``
    Encrypt*, Decrypt*, ReEncrypt*, GenerateDataKey*, Describe* under an ``kms:EncryptionContext:aws:logs:arn``
    condition matching the group (else CreateLogGroup/AssociateKmsKey fail).
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"""
    service = f"logs.{stack.region}.amazonaws.com"
    for name, group in stack.of("aws_cloudwatch_log_group").items():
        found = key_policy(stack, group.get("kms_key_id"))
        if not found:
            continue
        key, policy = found
        grants = [s for s in statements_of(policy) if service in principals(s)]
        missing = [a for a in LOGS_KEY_ACTIONS if not any(allows(s, a) for s in grants)]
        pattern = next(
            (v for s in grants for k, v in condition_keys(s).items() if k == "kms:encryptioncontext:aws:logs:arn"),
            None,
        )
        arn = f"arn:aws:logs:{stack.region}:000000000000:log-group:{resolved(group.get('name', ''))}"
        arn_pattern = [re.sub(r":\d{12}:", ":000000000000:", resolved(p)) for p in as_list(pattern)]
        if missing:
            yield Finding(
                "kms-logs",
                f"aws_kms_key.{key}",
                f"its policy does not let {service} {', '.join(missing)}, so log group {name} cannot use it",
                "allow the CloudWatch Logs principal of the region in the key policy",
            )
        elif pattern is None:
            yield Finding(
                "kms-logs",
                f"aws_kms_key.{key}",
                f"{service} may use it for any log group of any account (no encryption context condition)",
                "add an ArnLike condition on kms:EncryptionContext:aws:logs:arn",
            )
        elif not any(fnmatch.fnmatchcase(arn, p) for p in arn_pattern):
            yield Finding(
                "kms-logs",
                f"aws_kms_key.{key}",
                f"its logs condition {pattern} does not match log group {group.get('name')}",
                "widen the ArnLike condition to the group's ARN",
            )


# ----------------------------------------------------------------------------------------------
# SNS topics and the services that publish to them


def publishers(stack: Any) -> Iterator[tuple[str, str, str]]:
    """(sender address, topic name, service principal) for every AWS service that publishes to a topic."""
    for type_ in ("aws_cloudwatch_metric_alarm", "aws_cloudwatch_composite_alarm"):
        for name, alarm in stack.of(type_).items():
            actions = [*as_list(alarm.get("alarm_actions")), *as_list(alarm.get("ok_actions"))]
            actions += as_list(alarm.get("insufficient_data_actions"))
            for topic in stack.refs_to(actions, "aws_sns_topic"):
                yield f"{type_}.{name}", topic, "cloudwatch.amazonaws.com"
    for name, target in stack.of("aws_cloudwatch_event_target").items():
        for topic in stack.refs_to(target.get("arn"), "aws_sns_topic"):
            yield f"aws_cloudwatch_event_target.{name}", topic, "events.amazonaws.com"
    for name, budget in stack.of("aws_budgets_budget").items():
        for notification in as_list(budget.get("notification")):
            for topic in stack.refs_to(notification.get("subscriber_sns_topic_arns"), "aws_sns_topic"):
                yield f"aws_budgets_budget.{name}", topic, "budgets.amazonaws.com"
    for name, sub in stack.of("aws_ce_anomaly_subscription").items():
        for topic in stack.refs_to(sub.get("subscriber"), "aws_sns_topic"):
            yield f"aws_ce_anomaly_subscription.{name}", topic, "costalerts.amazonaws.com"
    for name, notification in stack.of("aws_s3_bucket_notification").items():
        for topic in stack.refs_to(notification.get("topic"), "aws_sns_topic"):
            yield f"aws_s3_bucket_notification.{name}", topic, "s3.amazonaws.com"


SOURCE_KEYS = {"aws:sourceaccount", "aws:sourcearn", "aws:sourceowner"}


def check_sns_publishers(stack: Any) -> Iterator[Finding]:
    """A topic with its own policy (which replaces the default one) lets every service that publishes to
    it ``sns:Publish``, limited by ``aws:SourceAccount``/``aws:SourceArn`` (the confused-deputy guard).
    https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions,
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html,
    https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html"""
    policies: dict[str, list[tuple[str, Any]]] = {}
    for name, body in stack.of("aws_sns_topic_policy").items():
        topic = stack.ref(body.get("arn"))
        if topic:
            policies.setdefault(topic[1], []).append((f"aws_sns_topic_policy.{name}", document(body.get("policy"))[0]))
    for name, topic in stack.of("aws_sns_topic").items():
        if topic.get("policy"):
            policies.setdefault(name, []).append((f"aws_sns_topic.{name}", document(topic["policy"])[0]))
    reported: set[tuple[str, str]] = set()
    for sender, topic, service in publishers(stack):
        if topic not in policies or (topic, service) in reported:
            continue
        grants = [s for _, p in policies[topic] for s in statements_of(p) if service in principals(s)]
        if not any(allows(s, "sns:Publish") for s in grants):
            problem, fix = f"does not let {service} publish (first sender: {sender})", f"allow {service} sns:Publish"
        elif not any(allows(s, "sns:Publish") and SOURCE_KEYS & condition_keys(s).keys() for s in grants):
            problem, fix = (
                f"lets {service} publish for any account",
                "add an aws:SourceAccount or aws:SourceArn condition",
            )
        else:
            continue
        reported.add((topic, service))
        yield Finding("sns-publishers", policies[topic][0][0], problem, fix)


# ----------------------------------------------------------------------------------------------
# CloudWatch dashboards


def check_dashboard(stack: Any) -> Iterator[Finding]:
    """PutDashboard's body: widgets with x/y/width/height in range, and in a metric widget every entry of
    ``metrics`` is an array: ``[namespace, name, dim, value, ..., {options}]`` or ``[{expression, id}]``.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html"""
    for name, dashboard in stack.of("aws_cloudwatch_dashboard").items():
        address = f"aws_cloudwatch_dashboard.{name}"
        body, error = document(dashboard.get("dashboard_body"))
        if error or not isinstance(body, dict) or not isinstance(body.get("widgets"), list):
            yield Finding("dashboard", address, f"dashboard_body {error or 'has no widgets list'}", "fix the body")
            continue
        for widget in body["widgets"]:
            title = (widget.get("properties") or {}).get("title", widget.get("type"))
            width, height = widget.get("width", 6), widget.get("height", 6)
            if not (1 <= int(width) <= 24 and 1 <= int(height) <= 1000):
                yield Finding(
                    "dashboard", address, f"widget {title!r} is {width}x{height}", "width 1-24, height 1-1000"
                )
            if widget.get("type") != "metric":
                continue
            for entry in as_list((widget.get("properties") or {}).get("metrics")):
                if not isinstance(entry, list) or not entry:
                    yield Finding(
                        "dashboard",
                        address,
                        f"widget {title!r} has a metrics entry that is not an array: {json.dumps(entry)[:80]}",
                        "wrap it in a list ([{...}] for an expression)",
                    )
                elif isinstance(entry[0], dict) and "expression" not in entry[0]:
                    yield Finding("dashboard", address, f"widget {title!r}: {entry[0]} is no expression", "add it")
                elif isinstance(entry[0], str) and not all(isinstance(x, str) for x in entry[:2]):
                    yield Finding("dashboard", address, f"widget {title!r}: {entry} lacks namespace/metric", "fix it")


# ----------------------------------------------------------------------------------------------
# names


@dataclass(frozen=True)
class NameRule:
    field: str
    low: int
    high: int
    pattern: str
    doc: str


B = "https://docs.aws.amazon.com/"
NAMES = {
    "aws_iam_role": NameRule("name", 1, 64, r"[\w+=,.@-]+", B + "IAM/latest/APIReference/API_CreateRole.html"),
    "aws_dynamodb_table": NameRule(
        "name", 3, 255, r"[a-zA-Z0-9_.-]+", B + "amazondynamodb/latest/APIReference/API_CreateTable.html"
    ),
    "aws_iam_policy": NameRule("name", 1, 128, r"[\w+=,.@-]+", B + "IAM/latest/APIReference/API_CreatePolicy.html"),
    "aws_iam_role_policy": NameRule(
        "name", 1, 128, r"[\w+=,.@-]+", B + "IAM/latest/APIReference/API_PutRolePolicy.html"
    ),
    "aws_iam_instance_profile": NameRule(
        "name", 1, 128, r"[\w+=,.@-]+", B + "IAM/latest/APIReference/API_CreateInstanceProfile.html"
    ),
    "aws_lambda_function": NameRule(
        "function_name", 1, 64, r"[a-zA-Z0-9_-]+", B + "lambda/latest/api/API_CreateFunction.html"
    ),
    "aws_sfn_state_machine": NameRule(
        "name", 1, 80, r"[a-zA-Z0-9_-]+", B + "step-functions/latest/apireference/API_CreateStateMachine.html"
    ),
    "aws_batch_compute_environment": NameRule(
        "compute_environment_name",
        1,
        128,
        r"[a-zA-Z0-9_-]+",
        B + "batch/latest/APIReference/API_CreateComputeEnvironment.html",
    ),
    "aws_batch_job_queue": NameRule(
        "name", 1, 128, r"[a-zA-Z0-9_-]+", B + "batch/latest/APIReference/API_CreateJobQueue.html"
    ),
    "aws_batch_job_definition": NameRule(
        "name", 1, 128, r"[a-zA-Z0-9_-]+", B + "batch/latest/APIReference/API_RegisterJobDefinition.html"
    ),
    "aws_sqs_queue": NameRule(
        "name", 1, 80, r"[a-zA-Z0-9_-]+(\.fifo)?", B + "AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html"
    ),
    "aws_sns_topic": NameRule("name", 1, 256, r"[a-zA-Z0-9_-]+(\.fifo)?", B + "sns/latest/api/API_CreateTopic.html"),
    "aws_cloudwatch_log_group": NameRule(
        "name", 1, 512, r"[.\-_/#A-Za-z0-9]+", B + "AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html"
    ),
    "aws_cloudwatch_event_rule": NameRule(
        "name", 1, 64, r"[.\-_A-Za-z0-9]+", B + "eventbridge/latest/APIReference/API_PutRule.html"
    ),
    "aws_cloudwatch_dashboard": NameRule(
        "dashboard_name", 1, 255, r"[A-Za-z0-9_-]+", B + "AmazonCloudWatch/latest/APIReference/API_PutDashboard.html"
    ),
    "aws_cloudwatch_metric_alarm": NameRule(
        "alarm_name", 1, 255, r"[^\x00-\x1f]+", B + "AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html"
    ),
    "aws_kms_alias": NameRule(
        "name", 7, 256, r"alias/(?!aws/)[a-zA-Z0-9/_-]+", B + "kms/latest/APIReference/API_CreateAlias.html"
    ),
    "aws_ecr_repository": NameRule(
        "name",
        2,
        256,
        r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
        B + "AmazonECR/latest/APIReference/API_CreateRepository.html",
    ),
    "aws_launch_template": NameRule(
        "name", 3, 128, r"[a-zA-Z0-9().\-/_]+", B + "AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html"
    ),
    "aws_athena_workgroup": NameRule(
        "name", 1, 128, r"[a-zA-Z0-9._-]+", B + "athena/latest/APIReference/API_CreateWorkGroup.html"
    ),
    "aws_glue_catalog_database": NameRule(
        "name", 1, 255, r"[a-z0-9_]+", B + "athena/latest/ug/tables-databases-columns-names.html"
    ),
    "aws_glue_catalog_table": NameRule(
        "name", 1, 255, r"[a-z0-9_]+", B + "athena/latest/ug/tables-databases-columns-names.html"
    ),
    "aws_budgets_budget": NameRule(
        "name", 1, 100, r"[^:\\]+", B + "aws-cost-management/latest/APIReference/API_budgets_Budget.html"
    ),
    "aws_ssm_parameter": NameRule(
        "name", 1, 1011, r"/?[a-zA-Z0-9_.\-/]+", B + "systems-manager/latest/userguide/sysman-paramstore-su-create.html"
    ),
    "aws_security_group": NameRule(
        "name", 1, 255, r"(?!sg-)[ -~]+", B + "AWSEC2/latest/APIReference/API_CreateSecurityGroup.html"
    ),
}
BUCKET_DOC = B + "AmazonS3/latest/userguide/bucketnamingrules.html"
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BUCKET_BAD = (
    (re.compile(r"\.\."), "two adjacent periods"),
    (re.compile(r"^\d+\.\d+\.\d+\.\d+$"), "the form of an IP address"),
    (re.compile(r"^(xn--|sthree-|amzn-s3-demo-)"), "a reserved prefix"),
    (re.compile(r"(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$"), "a reserved suffix"),
)


def check_names(stack: Any) -> Iterator[Finding]:
    """Names within each API's length and character set (``NAMES``; S3 bucket naming rules), checked
    with interpolations counted as a 12-digit account id: moto accepts any string."""
    for type_, rule in NAMES.items():
        for name, body in stack.of(type_).items():
            if rule.field not in body:
                continue
            value = resolved(body[rule.field])
            if not rule.low <= len(value) <= rule.high or not re.fullmatch(rule.pattern, value):
                yield Finding(
                    "names",
                    f"{type_}.{name}",
                    f"{rule.field} {value!r} ({len(value)} characters) breaks {rule.low}-{rule.high} of {rule.pattern}",
                    f"shorten or rename it ({rule.doc})",
                )
    for name, body in stack.of("aws_s3_bucket").items():
        if "bucket" not in body:
            continue
        value = resolved(body["bucket"])
        why = [label for pattern, label in BUCKET_BAD if pattern.search(value)]
        if not BUCKET.match(value):
            why.insert(0, "not 3-63 lower-case letters, digits, '.', '-' starting and ending with a letter or digit")
        for reason in why:
            yield Finding("names", f"aws_s3_bucket.{name}", f"bucket {value!r}: {reason}", f"rename it ({BUCKET_DOC})")


# ----------------------------------------------------------------------------------------------
# value ranges and timeouts

# The values CloudWatch Logs accepts for retentionInDays (conf/profile.py validates profiles with
# the same set): https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
LOG_RETENTION = {
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
}
# (type, field) -> (low, high, doc)
RANGES = {
    ("aws_lambda_function", "timeout"): (1, 900, B + "lambda/latest/dg/gettingstarted-limits.html"),
    ("aws_lambda_function", "memory_size"): (128, 10240, B + "lambda/latest/dg/gettingstarted-limits.html"),
    ("aws_lambda_function_event_invoke_config", "maximum_retry_attempts"): (
        0,
        2,
        B + "lambda/latest/api/API_PutFunctionEventInvokeConfig.html",
    ),
    ("aws_lambda_function_event_invoke_config", "maximum_event_age_in_seconds"): (
        60,
        21600,
        B + "lambda/latest/api/API_PutFunctionEventInvokeConfig.html",
    ),
    ("aws_sqs_queue", "message_retention_seconds"): (
        60,
        1209600,
        B + "AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html",
    ),
    ("aws_sqs_queue", "visibility_timeout_seconds"): (
        0,
        43200,
        B + "AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html",
    ),
    ("aws_sqs_queue", "kms_data_key_reuse_period_seconds"): (
        60,
        86400,
        B + "AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html",
    ),
    ("aws_kms_key", "deletion_window_in_days"): (7, 30, B + "kms/latest/APIReference/API_ScheduleKeyDeletion.html"),
    ("aws_batch_compute_environment", "compute_resources.bid_percentage"): (
        0,
        100,
        B + "batch/latest/APIReference/API_ComputeResource.html",
    ),
    ("aws_batch_job_definition", "timeout.attempt_duration_seconds"): (
        60,
        None,
        B + "batch/latest/userguide/job_timeouts.html",
    ),
    ("aws_batch_job_definition", "retry_strategy.attempts"): (
        1,
        10,
        B + "batch/latest/APIReference/API_RetryStrategy.html",
    ),
    ("aws_sfn_state_machine", "encryption_configuration.kms_data_key_reuse_period_seconds"): (
        60,
        900,
        B + "step-functions/latest/apireference/API_EncryptionConfiguration.html",
    ),
}
VISIBILITY_DOC = B + "lambda/latest/dg/services-sqs-configure.html"


def path_value(body: dict, path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        value = first(value).get(part) if isinstance(value, (dict, list)) else None
    return value


def check_ranges(stack: Any) -> Iterator[Finding]:
    """Numbers inside the API's valid range (``RANGES``), log retention one of CloudWatch Logs' values,
    and an SQS queue that feeds a Lambda has a visibility timeout of at least the function's timeout
    (CreateEventSourceMapping refuses less; AWS recommends six times).
    https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html"""
    for (type_, path), (low, high, doc) in RANGES.items():
        for name, body in stack.of(type_).items():
            value = path_value(body, path)
            if isinstance(value, (int, float)) and (value < low or (high is not None and value > high)):
                yield Finding("ranges", f"{type_}.{name}", f"{path} = {value} is outside {low}-{high or 'any'}", doc)
    for name, group in stack.of("aws_cloudwatch_log_group").items():
        days = group.get("retention_in_days")
        if days not in (None, 0) and days not in LOG_RETENTION:
            yield Finding(
                "ranges",
                f"aws_cloudwatch_log_group.{name}",
                f"retention_in_days = {days} is not a value CloudWatch Logs accepts",
                "use one of 1, 3, 5, 7, 14, 30, 60, 90, ... 3653",
            )
    for name, mapping in stack.of("aws_lambda_event_source_mapping").items():
        queue = stack.get(stack.ref(mapping.get("event_source_arn")))
        function = stack.get(stack.ref(mapping.get("function_name")))
        if queue is None or function is None or stack.ref(mapping.get("event_source_arn"))[0] != "aws_sqs_queue":
            continue
        visibility, timeout = int(queue.get("visibility_timeout_seconds", 30)), int(function.get("timeout", 3))
        if visibility < timeout:
            yield Finding(
                "ranges",
                f"aws_lambda_event_source_mapping.{name}",
                f"the queue's visibility timeout {visibility} s is shorter than the function's timeout {timeout} s",
                f"set visibility_timeout_seconds to at least 6 x {timeout} ({VISIBILITY_DOC})",
            )


# ----------------------------------------------------------------------------------------------
# Step Functions

SFN_LOG_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
SFN_XRAY_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)
SFN_KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
SFN_DEFINITION_LIMIT = 1024 * 1024


def role_statements(stack: Any, role: str) -> list[dict]:
    """Allow/Deny statements of a role's inline policies in this stack (managed policies are not read)."""
    found = []
    for body in stack.of("aws_iam_role_policy").values():
        if stack.ref(body.get("role")) == ("aws_iam_role", role):
            found += statements_of(document(body.get("policy"))[0])
    inline = (stack.of("aws_iam_role").get(role) or {}).get("inline_policy")
    for block in as_list(inline):
        found += statements_of(document(block.get("policy"))[0])
    return found


def granted(statements: list[dict], action: str, resource: str = "*") -> bool:
    return any(
        allows(s, action)
        and any(fnmatch.fnmatchcase(resource, str(r)) or r == resource for r in as_list(s.get("Resource")))
        for s in statements
    )


def check_step_functions(stack: Any) -> Iterator[Finding]:
    """Logging to CloudWatch Logs: destination is the log group ARN with ``:*``, a ``/aws/vendedlogs/`` group
    (keeps the account's log resource policy under its 5,120-character limit), and the role has the log
    delivery actions on ``*`` (they take no resource); X-Ray tracing: the role has the four xray actions on
    ``*``; a customer key: the role can GenerateDataKey/Decrypt with it; definition at most 1 MiB.
    https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html,
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-xray-tracing.html,
    https://docs.aws.amazon.com/step-functions/latest/dg/encryption-at-rest.html,
    https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html"""
    for name, machine in stack.of("aws_sfn_state_machine").items():
        address = f"aws_sfn_state_machine.{name}"
        role = stack.ref(machine.get("role_arn"))
        statements = role_statements(stack, role[1]) if role and role[0] == "aws_iam_role" else None
        if len(str(machine.get("definition", "")).encode()) > SFN_DEFINITION_LIMIT:
            yield Finding(
                "step-functions", address, "its definition is over 1 MiB", "split it (Distributed Map children)"
            )
        logging = first(machine.get("logging_configuration"))
        if logging and logging.get("level", "OFF") != "OFF":
            destination = str(logging.get("log_destination", ""))
            group = stack.get(stack.ref(destination)) if stack.ref(destination) else None
            if not destination.endswith(":*"):
                yield Finding(
                    "step-functions",
                    address,
                    f"log_destination {destination!r} lacks ':*'",
                    "append ':*' to the log group ARN",
                )
            if group is not None and not str(group.get("name", "")).startswith("/aws/vendedlogs/"):
                yield Finding(
                    "step-functions",
                    address,
                    f"logs to {group.get('name')!r}, outside /aws/vendedlogs/ (it grows the log resource policy)",
                    "name the group /aws/vendedlogs/states/<machine>",
                )
            if statements is not None:
                missing = [a for a in SFN_LOG_ACTIONS if not granted(statements, a)]
                if missing:
                    yield Finding(
                        "step-functions",
                        address,
                        f"its role lacks {', '.join(missing)} on *",
                        "grant the log delivery actions",
                    )
        if statements is not None and first(machine.get("tracing_configuration")).get("enabled"):
            missing = [a for a in SFN_XRAY_ACTIONS if not granted(statements, a)]
            if missing:
                yield Finding(
                    "step-functions",
                    address,
                    f"tracing is on but its role lacks {', '.join(missing)} on *",
                    "grant them",
                )
        encryption = first(machine.get("encryption_configuration"))
        key = encryption.get("kms_key_id")
        if statements is not None and encryption.get("type") == "CUSTOMER_MANAGED_KMS_KEY" and key:
            missing = [a for a in SFN_KMS_ACTIONS if not granted(statements, a, str(key))]
            if missing:
                yield Finding(
                    "step-functions",
                    address,
                    f"its role cannot {', '.join(missing)} with {key}",
                    "grant them on the key",
                )


# ----------------------------------------------------------------------------------------------
# Batch


def check_batch(stack: Any) -> Iterator[Finding]:
    """A job queue has 1-3 compute environments with distinct orders. A compute environment waits
    (``depends_on`` or a reference, directly or through other resources) for its instance profile and
    the policy attachments of the profile's role, and, with a custom service role of this stack, for that
    role's attachments (or for a service-linked role the stack creates): otherwise it can be created
    INVALID and stick in DELETING on destroy.
    https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateJobQueue.html,
    https://docs.aws.amazon.com/batch/latest/userguide/invalid_compute_environment.html,
    https://registry.terraform.io/providers/hashicorp/aws/5.100.0/docs/resources/batch_compute_environment"""
    for name, queue in stack.of("aws_batch_job_queue").items():
        order = as_list(queue.get("compute_environment_order"))
        orders = [o.get("order") for o in order]
        if not 1 <= len(order) <= 3 or len(set(orders)) != len(orders):
            yield Finding(
                "batch",
                f"aws_batch_job_queue.{name}",
                f"{len(order)} compute environments with orders {orders}",
                "use 1-3 compute environments with distinct orders",
            )
    for name, env in stack.of("aws_batch_compute_environment").items():
        waits = dependencies(stack, f"aws_batch_compute_environment.{name}")
        missing = [a for a in environment_needs(stack, env) if a not in waits]
        if missing:
            yield Finding(
                "batch",
                f"aws_batch_compute_environment.{name}",
                f"does not wait for {', '.join(missing)} (its roles' policies and instance profile)",
                "add them to depends_on",
            )


def environment_needs(stack: Any, env: dict) -> list[str]:
    """What a compute environment must be created after: its instance profile and the managed-policy
    attachments of the profile's role; its service role's attachments when that is a role of the stack;
    a Batch service-linked role the stack creates when it uses that (no or the SLR's service role)."""
    needs: list[str] = []
    roles: list[tuple[str, str]] = []
    profile = stack.ref(first(env.get("compute_resources")).get("instance_role"))
    if profile and profile[0] == "aws_iam_instance_profile":
        needs.append(".".join(profile))
        role = stack.ref((stack.of(profile[0]).get(profile[1]) or {}).get("role"))
        roles += [role] if role and role[0] == "aws_iam_role" else []
    service = env.get("service_role")
    role = stack.ref(service)
    if role and role[0] == "aws_iam_role":
        roles.append(role)
    elif not role and (
        not service
        or str(service).endswith(f"role/aws-service-role/batch.amazonaws.com/{BATCH_SLR}")
        or str(service).endswith(f":role/{BATCH_SLR}")
    ):
        needs += [
            f"aws_iam_service_linked_role.{n}"
            for n, slr in stack.of("aws_iam_service_linked_role").items()
            if slr.get("aws_service_name") == "batch.amazonaws.com"
        ]
    needs += [
        f"aws_iam_role_policy_attachment.{n}"
        for n, attachment in stack.of("aws_iam_role_policy_attachment").items()
        if stack.ref(attachment.get("role")) in roles
    ]
    return needs


def dependencies(stack: Any, address: str) -> set[str]:
    """Every resource of the stack that ``address`` waits for: through references and ``depends_on``,
    transitively (Terraform orders creation along both)."""
    seen: set[str] = set()
    todo = [address]
    while todo:
        type_, _, name = todo.pop().partition(".")
        body = dict(stack.of(type_).get(name) or {})
        direct = {d for d in as_list(body.pop("depends_on", None)) if isinstance(d, str)}
        for expression in INTERPOLATION.findall(json.dumps(body)):
            direct |= {f"{t}.{n}" for t, n in RESOURCE_NAME.findall(expression) if n in stack.of(t)}
        todo += sorted(direct - seen)
        seen |= direct
    return seen


# ----------------------------------------------------------------------------------------------
# S3 access logging and Lambda invoke permissions


def check_s3_logging(stack: Any) -> Iterator[Finding]:
    """The target bucket of server access logging is encrypted with SSE-S3, or with SSE-KMS under a customer
    key whose policy lets ``logging.s3.amazonaws.com`` GenerateDataKey (never the AWS-managed aws/s3 key),
    and its bucket policy lets ``logging.s3.amazonaws.com`` PutObject with a source condition.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html"""
    for name, logging in stack.of("aws_s3_bucket_logging").items():
        target = stack.ref(logging.get("target_bucket"))
        if not target or target[0] != "aws_s3_bucket":
            continue
        for enc_name, enc in bucket_blocks(stack, "aws_s3_bucket_server_side_encryption_configuration", target):
            default = first(first(enc.get("rule")).get("apply_server_side_encryption_by_default"))
            if default.get("sse_algorithm", "AES256") == "AES256":
                continue
            found = key_policy(stack, default.get("kms_master_key_id"))
            if found and any(
                "logging.s3.amazonaws.com" in principals(s) and allows(s, "kms:GenerateDataKey")
                for s in statements_of(found[1])
            ):
                continue
            yield Finding(
                "s3-logging",
                f"aws_s3_bucket_server_side_encryption_configuration.{enc_name}",
                f"log target {target[1]} is encrypted with a key logging.s3.amazonaws.com may not use: "
                "S3 delivers no access logs to it",
                "use AES256 (SSE-S3), or a customer key that allows the logging service kms:GenerateDataKey",
            )
        statements = [
            s
            for p in stack.of("aws_s3_bucket_policy").values()
            if stack.ref(p.get("bucket")) == target
            for s in statements_of(document(p.get("policy"))[0])
        ]
        if not any(
            "logging.s3.amazonaws.com" in principals(s)
            and allows(s, "s3:PutObject")
            and SOURCE_KEYS & condition_keys(s).keys()
            for s in statements
        ):
            yield Finding(
                "s3-logging",
                f"aws_s3_bucket_logging.{name}",
                f"the policy of {target[1]} does not let logging.s3.amazonaws.com PutObject with a source condition",
                "add that statement to the log bucket's policy",
            )


def invokers(stack: Any) -> Iterator[tuple[str, str, str, str]]:
    """(caller address, function name, service principal, source ARN expression) for push invocations."""
    for name, target in stack.of("aws_cloudwatch_event_target").items():
        for function in stack.refs_to(target.get("arn"), "aws_lambda_function"):
            rule = stack.ref(target.get("rule"))
            yield f"aws_cloudwatch_event_target.{name}", function, "events.amazonaws.com", rule[1] if rule else ""
    for name, sub in stack.of("aws_sns_topic_subscription").items():
        if sub.get("protocol") == "lambda":
            topic = stack.ref(sub.get("topic_arn"))
            for function in stack.refs_to(sub.get("endpoint"), "aws_lambda_function"):
                yield f"aws_sns_topic_subscription.{name}", function, "sns.amazonaws.com", topic[1] if topic else ""
    for name, notification in stack.of("aws_s3_bucket_notification").items():
        bucket = stack.ref(notification.get("bucket"))
        for function in stack.refs_to(notification.get("lambda_function"), "aws_lambda_function"):
            yield f"aws_s3_bucket_notification.{name}", function, "s3.amazonaws.com", bucket[1] if bucket else ""


def check_invoke_permissions(stack: Any) -> Iterator[Finding]:
    """Every function a service invokes (EventBridge target, SNS subscription, S3 notification) has an
    ``aws_lambda_permission`` for that principal limited to the calling resource (``source_arn``).
    https://docs.aws.amazon.com/lambda/latest/dg/access-control-resource-based.html,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions"""
    for caller, function, service, source in invokers(stack):
        permitted = [
            p
            for p in stack.of("aws_lambda_permission").values()
            if function in stack.refs_to(p.get("function_name"), "aws_lambda_function")
            and p.get("principal") == service
        ]
        if not any(source and source in json.dumps(p.get("source_arn", "")) for p in permitted):
            yield Finding(
                "invoke-permissions",
                caller,
                f"{service} may not invoke {function} from it (no aws_lambda_permission with its source_arn)",
                "add an aws_lambda_permission with principal and source_arn",
            )


# ----------------------------------------------------------------------------------------------
# S3 data lifecycle, replication, and what the network lets compute reach

INFREQUENT = {"STANDARD_IA", "ONEZONE_IA"}


def bucket_blocks(stack: Any, type_: str, bucket: tuple[str, str] | None) -> list[tuple[str, dict]]:
    return [(n, b) for n, b in stack.of(type_).items() if bucket and stack.ref(b.get("bucket")) == bucket]


def versioned(stack: Any, bucket: tuple[str, str]) -> list[str]:
    """Names of the aws_s3_bucket_versioning resources that enable versioning on ``bucket``."""
    return [
        n
        for n, v in bucket_blocks(stack, "aws_s3_bucket_versioning", bucket)
        if first(v.get("versioning_configuration")).get("status") == "Enabled"
    ]


def check_s3_data(stack: Any) -> Iterator[Finding]:
    """Lifecycle: a move to STANDARD_IA/ONEZONE_IA after 30 days or more, an expiration after the last
    transition. Replication: versioning enabled on both buckets, the configuration applied after it
    (``depends_on``). A replica is not a backup: when delete markers are replicated and the replica expires
    noncurrent versions no later than the source, a deletion leaves no copy once they expire.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-requirements.html,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/delete-marker-replication.html,
    https://registry.terraform.io/providers/hashicorp/aws/5.100.0/docs/resources/s3_bucket_replication_configuration"""
    for name, lifecycle in stack.of("aws_s3_bucket_lifecycle_configuration").items():
        address = f"aws_s3_bucket_lifecycle_configuration.{name}"
        for rule in as_list(lifecycle.get("rule")):
            moves = [(t.get("days"), t.get("storage_class")) for t in as_list(rule.get("transition"))]
            moves += [
                (t.get("noncurrent_days"), t.get("storage_class"))
                for t in as_list(rule.get("noncurrent_version_transition"))
            ]
            for days, storage in moves:
                if storage in INFREQUENT and isinstance(days, int) and days < 30:
                    yield Finding(
                        "s3-data", address, f"rule {rule.get('id')}: {storage} after {days} days", "S3 needs 30 or more"
                    )
            expire = first(rule.get("expiration")).get("days")
            last = max((d for d, _ in moves[: len(as_list(rule.get("transition")))] if isinstance(d, int)), default=0)
            if isinstance(expire, int) and last and expire <= last:
                yield Finding(
                    "s3-data",
                    address,
                    f"rule {rule.get('id')}: expires after {expire} days, not after its last move ({last})",
                    "expire later",
                )
    for name, replication in stack.of("aws_s3_bucket_replication_configuration").items():
        address = f"aws_s3_bucket_replication_configuration.{name}"
        source = stack.ref(replication.get("bucket"))
        waits = set(as_list(replication.get("depends_on")))
        if source and source[0] == "aws_s3_bucket":
            enabled = versioned(stack, source)
            if not enabled:
                yield Finding("s3-data", address, f"source {source[1]} is not versioned", "enable versioning on it")
            elif not any(f"aws_s3_bucket_versioning.{v}" in waits for v in enabled):
                yield Finding(
                    "s3-data", address, "is not applied after the source's versioning", "add it to depends_on"
                )
        for rule in as_list(replication.get("rule")):
            target = stack.ref(first(rule.get("destination")).get("bucket"))
            if not target or target[0] != "aws_s3_bucket":
                continue
            if not versioned(stack, target):
                yield Finding(
                    "s3-data", address, f"destination {target[1]} is not versioned", "enable versioning on it"
                )
            if first(rule.get("delete_marker_replication")).get("status") != "Enabled":
                continue
            kept, source_kept = noncurrent_days(stack, target), noncurrent_days(stack, source)
            if kept is not None and (source_kept is None or kept <= source_kept):
                yield Finding(
                    "s3-data",
                    address,
                    f"replicates delete markers to {target[1]}, which expires noncurrent versions after {kept} days, "
                    f"no later than the source ({source_kept or 'never'}): a deletion leaves no copy after that",
                    "do not replicate delete markers, or keep the replica's noncurrent versions longer",
                )


def noncurrent_days(stack: Any, bucket: tuple[str, str] | None) -> int | None:
    """After how many days a bucket's enabled lifecycle deletes noncurrent versions (None: never)."""
    days = [
        first(rule.get("noncurrent_version_expiration")).get("noncurrent_days")
        for _, lifecycle in bucket_blocks(stack, "aws_s3_bucket_lifecycle_configuration", bucket)
        for rule in as_list(lifecycle.get("rule"))
        if rule.get("status") == "Enabled"
    ]
    return min((d for d in days if isinstance(d, int) and d > 0), default=None)


# Buckets AWS owns that compute in a private subnet needs through the S3 gateway endpoint (read only):
# ECR image layers (https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html#ecr-setting-up-s3-gateway),
# the Amazon Linux 2 and 2023 package repositories
# (https://repost.aws/knowledge-center/ec2-al1-al2-update-yum-without-internet,
# https://docs.aws.amazon.com/linux/al2023/ug/managing-repos-os-updates.html).
AWS_OWNED_BUCKETS = (
    "prod-{region}-starport-layer-bucket",
    "amazonlinux.{region}.amazonaws.com",
    "amazonlinux-2-repos-{region}",
    "al2023-repos-{region}-de612dc2",
)
AWS_OWNED_ACTIONS = {"s3:getobject"}
# Condition keys that pin a request to the resource's owner (account or organization):
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-resourceaccount
OWNER_KEYS = {"aws:resourceaccount", "aws:resourceorgid"}


def stack_accounts(stack: Any) -> set[str]:
    """The accounts the stack's AWS providers may deploy to (``allowed_account_ids``)."""
    return {
        str(a)
        for p in as_list(getattr(stack, "config", {}).get("provider", {}).get("aws"))
        for a in as_list(p.get("allowed_account_ids"))
    }


def pinned_to_owner(statement: dict, accounts: set[str]) -> bool:
    """The statement's condition limits it to resources of this account (or organization): a plain
    ``StringEquals`` on aws:ResourceAccount / aws:ResourceOrgID (``...IfExists`` and set operators let a
    request without the key through). Extra operators only narrow a statement further."""
    for operator, block in (statement.get("Condition") or {}).items():
        if operator != "StringEquals" or not isinstance(block, dict):
            continue
        for key, values in block.items():
            values = [str(v) for v in as_list(values)]
            if key.lower() == "aws:resourceorgid" and values and all(v.startswith("o-") for v in values):
                return True
            if key.lower() == "aws:resourceaccount" and values:
                known = accounts or {v for v in values if re.fullmatch(r"\d{12}|\$\{.*\}", v)}
                if all(v in known for v in values):
                    return True
    return False


def foreign_s3_resources(statement: dict, region: str, accounts: set[str], ours: set[str]) -> list[str]:
    """The resources of an Allow statement of an S3 endpoint policy that reach beyond this account's buckets."""
    if statement.get("Effect") != "Allow" or pinned_to_owner(statement, accounts):
        return []
    negated = [f"{k} {statement[k]}" for k in ("NotResource", "NotAction") if k in statement]
    if negated:
        return negated
    actions = {str(a).lower() for a in as_list(statement.get("Action"))}
    if not any(a in ("*", "s3:*") or a.startswith("s3:") for a in actions):
        return []
    owned = {b.format(region=region) for b in AWS_OWNED_BUCKETS}
    foreign = []
    for resource in as_list(statement.get("Resource")):
        text = str(resource)
        bucket = text.removeprefix("arn:aws:s3:::").split("/")[0] if text.startswith("arn:aws:s3:::") else "*"
        if "${" in bucket:  # a bucket of the stack (a reference)
            continue
        if bucket in ours or (bucket in owned and actions <= AWS_OWNED_ACTIONS):
            continue
        foreign.append(text)
    return foreign


def check_endpoint_policy(stack: Any) -> Iterator[Finding]:
    """A gateway endpoint (S3, DynamoDB) without a policy, or whose policy allows every action on every
    resource without a condition, lets compute in the VPC reach any bucket or table of any account. An S3
    endpoint's Allow statements name this stack's buckets, or pin ``*`` to this account with StringEquals
    on aws:ResourceAccount (or the organization with aws:ResourceOrgID), or read a documented AWS-owned
    bucket (ECR layers, Amazon Linux repositories).
    https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html,
    https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-s3.html#vpc-endpoints-policies-s3"""
    accounts = stack_accounts(stack)
    ours = {str(b.get("bucket")) for b in stack.of("aws_s3_bucket").values() if b.get("bucket")}
    for name, endpoint in stack.of("aws_vpc_endpoint").items():
        if endpoint.get("vpc_endpoint_type", "Gateway") != "Gateway":
            continue
        policies = [endpoint.get("policy")] + [
            p.get("policy")
            for p in stack.of("aws_vpc_endpoint_policy").values()
            if stack.ref(p.get("vpc_endpoint_id")) == ("aws_vpc_endpoint", name)
        ]
        statements = [s for p in policies if p for s in statements_of(document(p)[0])]
        open_ = [
            s
            for s in statements
            if s.get("Effect") == "Allow"
            and any(a == "*" or str(a).endswith(":*") for a in as_list(s.get("Action")))
            and "*" in as_list(s.get("Resource"))
            and not s.get("Condition")
        ]
        if not statements or open_:
            yield Finding(
                "endpoint-policy",
                f"aws_vpc_endpoint.{name}",
                "its policy allows every action on every resource (no policy is full access)",
                "allow only the stack's buckets and the regional buckets image pulls need",
            )
            continue
        if not str(endpoint.get("service_name", "")).endswith(".s3"):
            continue
        foreign = [r for s in statements for r in foreign_s3_resources(s, stack.region, accounts, ours)]
        if foreign:
            yield Finding(
                "endpoint-policy",
                f"aws_vpc_endpoint.{name}",
                f"its policy lets S3 requests reach buckets of any account ({', '.join(sorted(set(foreign)))})",
                "name this stack's buckets, or add StringEquals aws:ResourceAccount = this account",
            )


# ----------------------------------------------------------------------------------------------
# roles that AWS services assume on our behalf


def trusts(stack: Any, role: str, service: str) -> bool:
    trust, _ = document((stack.of("aws_iam_role").get(role) or {}).get("assume_role_policy") or "{}")
    return any(service in principals(s) and allows(s, "sts:AssumeRole") for s in statements_of(trust))


def assumed(stack: Any) -> Iterator[tuple[str, str, str, list[tuple[str, str]]]]:
    """(user address, role name, service that assumes it, [(action, resource) it must allow])."""
    for name, machine in stack.of("aws_sfn_state_machine").items():
        yield f"aws_sfn_state_machine.{name}", machine.get("role_arn"), "states.amazonaws.com", []
    for name, target in stack.of("aws_cloudwatch_event_target").items():
        if target.get("role_arn"):
            needs = (
                [("states:StartExecution", target["arn"])]
                if stack.refs_to(target.get("arn"), "aws_sfn_state_machine")
                else []
            )
            yield f"aws_cloudwatch_event_target.{name}", target["role_arn"], "events.amazonaws.com", needs
    for name, flow in stack.of("aws_flow_log").items():
        if flow.get("iam_role_arn") and flow.get("log_destination_type", "cloud-watch-logs") == "cloud-watch-logs":
            stream = f"{flow.get('log_destination')}:log-stream:eni"
            needs = [("logs:CreateLogStream", stream), ("logs:PutLogEvents", stream)]
            yield f"aws_flow_log.{name}", flow["iam_role_arn"], "vpc-flow-logs.amazonaws.com", needs
    for name, function in stack.of("aws_lambda_function").items():
        needs = []
        for config in stack.of("aws_lambda_function_event_invoke_config").values():
            if name not in stack.refs_to(config.get("function_name"), "aws_lambda_function"):
                continue
            destination = first(first(config.get("destination_config")).get("on_failure")).get("destination")
            queue_ref = stack.ref(destination)
            if queue_ref and queue_ref[0] == "aws_sqs_queue":
                needs.append(("sqs:SendMessage", destination))
                key = (stack.get(queue_ref) or {}).get("kms_master_key_id")
                if stack.ref(key):
                    needs += [("kms:GenerateDataKey", key), ("kms:Decrypt", key)]
        yield f"aws_lambda_function.{name}", function.get("role"), "lambda.amazonaws.com", needs
    for name, env in stack.of("aws_batch_compute_environment").items():
        if env.get("service_role"):
            yield f"aws_batch_compute_environment.{name}", env["service_role"], "batch.amazonaws.com", []
        profile = stack.get(stack.ref(first(env.get("compute_resources")).get("instance_role")))
        if profile and profile.get("role"):
            yield f"aws_batch_compute_environment.{name}", profile["role"], "ec2.amazonaws.com", []
    for name, definition in stack.of("aws_batch_job_definition").items():
        container, _ = document(definition.get("container_properties") or "{}")
        for key in ("jobRoleArn", "executionRoleArn"):
            if isinstance(container, dict) and container.get(key):
                yield f"aws_batch_job_definition.{name}", container[key], "ecs-tasks.amazonaws.com", []
    for name, replication in stack.of("aws_s3_bucket_replication_configuration").items():
        yield f"aws_s3_bucket_replication_configuration.{name}", replication.get("role"), "s3.amazonaws.com", []


def check_service_roles(stack: Any) -> Iterator[Finding]:
    """Every role an AWS service assumes for a resource trusts that service, and allows what the service
    then does for it: EventBridge starting a state machine, VPC flow logs writing their log group, Lambda
    sending a failed event to an SQS destination (and using the queue's key).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-service.html,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-identity-based.html,
    https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html,
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"""
    for user, role_value, service, needs in assumed(stack):
        role = stack.ref(role_value)
        if not role or role[0] != "aws_iam_role" or role[1] not in stack.of("aws_iam_role"):
            continue
        if not trusts(stack, role[1], service):
            yield Finding(
                "service-roles",
                f"aws_iam_role.{role[1]}",
                f"its trust policy does not let {service} assume it, which {user} needs",
                f"trust {service} (with an aws:SourceAccount condition)",
            )
        statements = role_statements(stack, role[1])
        missing = [action for action, resource in needs if not granted(statements, action, str(resource))]
        if missing:
            yield Finding(
                "service-roles",
                f"aws_iam_role.{role[1]}",
                f"lacks {', '.join(missing)} that {service} needs for {user}",
                "grant them on that resource",
            )


RULES: dict[str, Callable[[Any], Iterator[Finding]]] = {
    "policy-shape": check_policy_shape,
    "kms-logs": check_kms_logs,
    "sns-publishers": check_sns_publishers,
    "dashboard": check_dashboard,
    "names": check_names,
    "ranges": check_ranges,
    "step-functions": check_step_functions,
    "batch": check_batch,
    "s3-logging": check_s3_logging,
    "invoke-permissions": check_invoke_permissions,
    "s3-data": check_s3_data,
    "endpoint-policy": check_endpoint_policy,
    "service-roles": check_service_roles,
}
