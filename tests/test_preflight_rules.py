"""The general AWS rules of preflight (tools/preflight_rules.py): each one, red first.

Every case takes the synthesized dev stack, breaks one thing real AWS refuses or mishandles and moto
accepts, and expects that rule's finding (and no finding of that rule on the unbroken stack, apart
from the defects awaiting branch i26-defects: see ``tests/test_preflight.py``). The AWS page each
rule rests on is in the rule's docstring and in docs/aws-contract.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SynthResult
from tests.test_preflight import named, run
from tools import preflight_rules

Mutation = Callable[[dict], None]


def edit_json(resource: dict, field: str, change: Callable[[dict], object]) -> None:
    """Apply ``change`` to the parsed JSON document in ``resource[field]`` and write it back."""
    document = json.loads(resource[field])
    change(document)
    resource[field] = json.dumps(document)


def one(config: dict, type_: str, fragment: str) -> dict:
    return config["resource"][type_][named(config, type_, fragment)]


def statements_without(document: dict, test: Callable[[dict], bool]) -> None:
    document["Statement"] = [s for s in document["Statement"] if not test(s)]


def services(statement: dict) -> list:
    principal = statement.get("Principal")
    found = principal.get("Service") if isinstance(principal, dict) else None
    return found if isinstance(found, list) else [found] if found else []


def grants(config: dict, role_fragment: str) -> dict:
    return one(config, "aws_iam_role_policy", role_fragment)


# -- policy-shape ------------------------------------------------------------------------------


def identity_with_principal(config: dict) -> None:
    def change(doc: dict) -> None:
        doc["Statement"][0]["Principal"] = {"AWS": "*"}

    edit_json(grants(config, "fn-guard-budget_role_grants"), "policy", change)


def trust_with_resource(config: dict) -> None:
    def change(doc: dict) -> None:
        doc["Statement"][0]["Resource"] = "*"

    edit_json(one(config, "aws_iam_role", "workflow_role"), "assume_role_policy", change)


def key_statement_without_principal(config: dict) -> None:
    edit_json(one(config, "aws_kms_key", "pipeline-key"), "policy", lambda doc: doc["Statement"][0].pop("Principal"))


def policy_not_json(config: dict) -> None:
    grants(config, "fn-guard-budget_role_grants")["policy"] = '{"Version": "2012-10-17", "Statement": [}'


def policy_old_version(config: dict) -> None:
    edit_json(
        one(config, "aws_sns_topic_policy", "alerts_policy"), "policy", lambda doc: doc.update(Version="2008-10-17")
    )


def iam_sid_with_hyphen(config: dict) -> None:
    edit_json(
        grants(config, "workflow_role_grants"), "policy", lambda doc: doc["Statement"][0].update(Sid="Invoke-Plan")
    )


def inline_policies_too_large(config: dict) -> None:
    def change(doc: dict) -> None:
        doc["Statement"] *= 8

    edit_json(grants(config, "workflow_role_grants"), "policy", change)


# -- kms-logs ----------------------------------------------------------------------------------


def is_logs(statement: dict) -> bool:
    return any(str(s).startswith("logs.") for s in services(statement))


def key_without_logs(config: dict) -> None:
    edit_json(one(config, "aws_kms_key", "pipeline-key"), "policy", lambda doc: statements_without(doc, is_logs))


def key_logs_without_condition(config: dict) -> None:
    def change(doc: dict) -> None:
        for statement in doc["Statement"]:
            if is_logs(statement):
                statement.pop("Condition")

    edit_json(one(config, "aws_kms_key", "pipeline-key"), "policy", change)


def key_logs_other_groups(config: dict) -> None:
    def change(doc: dict) -> None:
        for statement in doc["Statement"]:
            if is_logs(statement):
                statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] = (
                    "arn:aws:logs:eu-north-1:111111111111:log-group:/other/*"
                )

    edit_json(one(config, "aws_kms_key", "pipeline-key"), "policy", change)


# -- sns-publishers ----------------------------------------------------------------------------


def topic_without_budgets(config: dict) -> None:
    def change(doc: dict) -> None:
        for statement in doc["Statement"]:
            if "budgets.amazonaws.com" in services(statement):
                statement["Principal"]["Service"] = [s for s in services(statement) if s != "budgets.amazonaws.com"]

    edit_json(one(config, "aws_sns_topic_policy", "budget_topic_policy"), "policy", change)


def topic_publish_without_source(config: dict) -> None:
    def change(doc: dict) -> None:
        for statement in doc["Statement"]:
            if "events.amazonaws.com" in services(statement):
                statement.pop("Condition")

    edit_json(one(config, "aws_sns_topic_policy", "alerts_policy"), "policy", change)


# -- dashboard ---------------------------------------------------------------------------------


def metric_entries(config: dict) -> tuple[dict, dict]:
    """The dashboard with every metrics entry an array (the shape PutDashboard accepts), and its body."""
    dashboard = next(iter(config["resource"]["aws_cloudwatch_dashboard"].values()))
    body = json.loads(dashboard["dashboard_body"])
    for widget in body["widgets"]:
        metrics = widget.get("properties", {}).get("metrics")
        if metrics:
            widget["properties"]["metrics"] = [m if isinstance(m, list) else [m] for m in metrics]
    return dashboard, body


def dashboard_bare_expression(config: dict) -> None:
    dashboard, body = metric_entries(config)
    metric = next(w for w in body["widgets"] if w["type"] == "metric")
    metric["properties"]["metrics"].append({"expression": "SUM(METRICS())", "id": "total"})
    dashboard["dashboard_body"] = json.dumps(body)


def dashboard_too_wide(config: dict) -> None:
    dashboard, body = metric_entries(config)
    body["widgets"][0]["width"] = 25
    dashboard["dashboard_body"] = json.dumps(body)


# -- names -------------------------------------------------------------------------------------


def role_name_65(config: dict) -> None:
    one(config, "aws_iam_role", "workflow_role")["name"] = "r" * 65


def function_name_with_dot(config: dict) -> None:
    one(config, "aws_lambda_function", "fn-guard-budget")["function_name"] = "odins.guard"


def bucket_upper_case(config: dict) -> None:
    one(config, "aws_s3_bucket", "raw_bucket")["bucket"] = "Odins-Ravne-Raw"


def bucket_account_too_long(config: dict) -> None:
    # 52 characters + the 12-digit account id of the interpolation = 64
    one(config, "aws_s3_bucket", "raw_bucket")["bucket"] = "r" * 51 + "-${data.aws_caller_identity.current.account_id}"


def state_machine_name_81(config: dict) -> None:
    one(config, "aws_sfn_state_machine", "state-machine")["name"] = "s" * 81


# -- ranges ------------------------------------------------------------------------------------


def lambda_timeout_901(config: dict) -> None:
    one(config, "aws_lambda_function", "fn-write-parquet")["timeout"] = 901


def log_retention_31(config: dict) -> None:
    one(config, "aws_cloudwatch_log_group", "workflow_logs")["retention_in_days"] = 31


def sqs_feeds_slower_lambda(config: dict) -> None:
    queue = named(config, "aws_sqs_queue", "fn-guard-budget_dlq")
    function = named(config, "aws_lambda_function", "fn-write-parquet")
    config["resource"]["aws_sqs_queue"][queue]["visibility_timeout_seconds"] = 30
    config["resource"]["aws_lambda_event_source_mapping"] = {
        "feed": {
            "event_source_arn": f"${{aws_sqs_queue.{queue}.arn}}",
            "function_name": f"${{aws_lambda_function.{function}.arn}}",
        }
    }


# -- step-functions ----------------------------------------------------------------------------


def actions_prefixed(prefix: str) -> Mutation:
    def mutate(config: dict) -> None:
        def change(doc: dict) -> None:
            statements_without(doc, lambda s: any(str(a).startswith(prefix) for a in s.get("Action", [])))

        edit_json(grants(config, "workflow_role_grants"), "policy", change)

    return mutate


def log_destination_without_star(config: dict) -> None:
    machine = one(config, "aws_sfn_state_machine", "state-machine")
    machine["logging_configuration"]["log_destination"] = machine["logging_configuration"]["log_destination"][:-2]


def log_group_outside_vendedlogs(config: dict) -> None:
    one(config, "aws_cloudwatch_log_group", "workflow_logs")["name"] = "/odins-ravne/dev/states"


# -- batch -------------------------------------------------------------------------------------


def queue_with_four_environments(config: dict) -> None:
    queue = one(config, "aws_batch_job_queue", "queue-normal")
    order = queue["compute_environment_order"]
    queue["compute_environment_order"] = [{**order[0], "order": i} for i in range(4)]


def environment_before_its_instance_role(config: dict) -> None:
    """defect 2 of issue 26: nothing orders the environment after its instance profile and role's policies."""
    one(config, "aws_batch_compute_environment", "ce-gpu")["depends_on"] = []


def environment_before_its_service_role(config: dict) -> None:
    """A custom service role of the stack and its attachment; the compute environment does not wait for it."""
    config["resource"]["aws_iam_role"]["svc"] = {"name": "svc", "assume_role_policy": "{}"}
    config["resource"]["aws_iam_role_policy_attachment"]["svc-managed"] = {
        "role": "${aws_iam_role.svc.name}",
        "policy_arn": "arn:aws:iam::aws:policy/service-role/AWSBatchServiceRole",
    }
    environment = one(config, "aws_batch_compute_environment", "ce-gpu")
    environment["service_role"] = "${aws_iam_role.svc.arn}"


# -- s3-logging, invoke-permissions ------------------------------------------------------------


def log_bucket_with_kms(config: dict) -> None:
    """The pipeline key, whose policy does not name the logging service."""
    key = named(config, "aws_kms_key", "pipeline-key")
    encryption = one(config, "aws_s3_bucket_server_side_encryption_configuration", "logs_encryption")
    encryption["rule"][0]["apply_server_side_encryption_by_default"] = {
        "sse_algorithm": "aws:kms",
        "kms_master_key_id": f"${{aws_kms_key.{key}.arn}}",
    }


def log_bucket_without_delivery(config: dict) -> None:
    edit_json(
        one(config, "aws_s3_bucket_policy", "logs_policy"),
        "policy",
        lambda doc: statements_without(doc, lambda s: "logging.s3.amazonaws.com" in services(s)),
    )


def event_target_without_permission(config: dict) -> None:
    del config["resource"]["aws_lambda_permission"][named(config, "aws_lambda_permission", "batch-metrics-schedule")]


# -- s3-data, endpoint-policy -----------------------------------------------------------------


def infrequent_access_after_ten_days(config: dict) -> None:
    lifecycle = one(config, "aws_s3_bucket_lifecycle_configuration", "raw_lifecycle")
    lifecycle["rule"].append(
        {
            "id": "too-soon",
            "status": "Enabled",
            "filter": [{"prefix": ""}],
            "transition": [{"days": 10, "storage_class": "STANDARD_IA"}],
        }
    )


def replication_of_unversioned_source(config: dict) -> None:
    del config["resource"]["aws_s3_bucket_versioning"][
        named(config, "aws_s3_bucket_versioning", "data-lake_raw_versioning")
    ]


def replica_that_is_no_backup(config: dict) -> None:
    """A second replication of the raw bucket to its replica (the synthesized one awaits i26-defects)."""
    replications = config["resource"]["aws_s3_bucket_replication_configuration"]
    replica = copy.deepcopy(replications[named(config, "aws_s3_bucket_replication_configuration", "raw-replication")])
    for rule in replica["rule"]:
        rule["delete_marker_replication"] = {"status": "Enabled"}
    lifecycle = one(config, "aws_s3_bucket_lifecycle_configuration", "raw-replica_lifecycle")
    lifecycle["rule"].append(
        {
            "id": "expire",
            "status": "Enabled",
            "filter": [{"prefix": ""}],
            "noncurrent_version_expiration": [{"noncurrent_days": 30}],
        }
    )
    replications["second"] = replica


def open_gateway_endpoint(config: dict) -> None:
    s3 = one(config, "aws_vpc_endpoint", "s3-endpoint")
    config["resource"]["aws_vpc_endpoint"]["dynamodb"] = {
        **s3,
        "service_name": "com.amazonaws.eu-north-1.dynamodb",
        "policy": json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}],
            }
        ),
    }


def s3_endpoint_with(*statements: dict) -> Mutation:
    """The S3 gateway endpoint with one statement of the review of issue 26 (item 9) added."""

    def mutate(config: dict) -> None:
        edit_json(
            one(config, "aws_vpc_endpoint", "s3-endpoint"),
            "policy",
            lambda doc: doc["Statement"].extend({"Effect": "Allow", "Principal": "*", **s} for s in statements),
        )

    return mutate


S3_ANY_BUCKET = s3_endpoint_with({"Action": "s3:*", "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]})
S3_MEANINGLESS_CONDITION = s3_endpoint_with(
    {"Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
)
S3_READ_WRITE_ANYWHERE = s3_endpoint_with({"Action": ["s3:PutObject", "s3:GetObject"], "Resource": "*"})
S3_IF_EXISTS = s3_endpoint_with(
    {"Action": "s3:*", "Resource": "*", "Condition": {"StringEqualsIfExists": {"aws:ResourceAccount": "111111111111"}}}
)
S3_OTHER_ACCOUNT = s3_endpoint_with(
    {"Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceAccount": "999999999999"}}}
)
S3_WRITE_ECR_LAYERS = s3_endpoint_with(
    {"Action": "s3:PutObject", "Resource": "arn:aws:s3:::prod-eu-north-1-starport-layer-bucket/*"}
)


# -- service-roles -----------------------------------------------------------------------------


def workflow_role_trusts_lambda(config: dict) -> None:
    def change(doc: dict) -> None:
        doc["Statement"][0]["Principal"]["Service"] = "lambda.amazonaws.com"

    edit_json(one(config, "aws_iam_role", "workflow_role"), "assume_role_policy", change)


def without_actions(role_fragment: str, prefix: str) -> Mutation:
    def mutate(config: dict) -> None:
        def change(doc: dict) -> None:
            for statement in doc["Statement"]:
                statement["Action"] = [a for a in statement["Action"] if not a.startswith(prefix)] or ["s3:GetObject"]

        edit_json(grants(config, role_fragment), "policy", change)

    return mutate


def events_role_without_start(config: dict) -> None:
    """A rule that starts the state machine itself, with a role that may not (the stack's own
    trigger goes through start_run, which needs no role)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    resources = config["resource"]
    resources["aws_iam_role"]["events_role"] = {"name": "events", "assume_role_policy": json.dumps(trust)}
    resources["aws_iam_role_policy"]["events_role_grants"] = {
        "name": "grants",
        "role": "${aws_iam_role.events_role.name}",
        "policy": json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}]}
        ),
    }
    machine = next(iter(resources["aws_sfn_state_machine"]))
    rule = next(iter(resources["aws_cloudwatch_event_rule"]))
    resources["aws_cloudwatch_event_target"]["events_start"] = {
        "rule": f"${{aws_cloudwatch_event_rule.{rule}.name}}",
        "arn": f"${{aws_sfn_state_machine.{machine}.arn}}",
        "role_arn": "${aws_iam_role.events_role.arn}",
    }


RED: dict[str, tuple[str, Mutation, str] | tuple[str, Mutation, str, str]] = {
    "identity-principal": ("policy-shape", identity_with_principal, "an identity policy must not name a Principal"),
    "trust-resource": ("policy-shape", trust_with_resource, "a trust policy must not have a Resource"),
    "key-no-principal": ("policy-shape", key_statement_without_principal, "statement needs a Principal"),
    "not-json": ("policy-shape", policy_not_json, "is not valid JSON"),
    "old-version": ("policy-shape", policy_old_version, "Version '2008-10-17'"),
    "iam-sid": ("policy-shape", iam_sid_with_hyphen, "has characters IAM refuses"),
    "inline-total": ("policy-shape", inline_policies_too_large, "inline policies add up to"),
    "key-no-logs": ("kms-logs", key_without_logs, "does not let logs.eu-north-1.amazonaws.com"),
    "key-logs-any": ("kms-logs", key_logs_without_condition, "for any log group of any account"),
    "key-logs-other": ("kms-logs", key_logs_other_groups, "does not match log group"),
    "topic-no-budgets": ("sns-publishers", topic_without_budgets, "does not let budgets.amazonaws.com publish"),
    "topic-no-source": ("sns-publishers", topic_publish_without_source, "lets events.amazonaws.com publish for any"),
    "dashboard-bare": ("dashboard", dashboard_bare_expression, "has a metrics entry that is not an array"),
    "dashboard-wide": ("dashboard", dashboard_too_wide, "is 25x"),
    "role-65": ("names", role_name_65, "(65 characters) breaks 1-64"),
    "function-dot": ("names", function_name_with_dot, "function_name 'odins.guard'"),
    "bucket-upper": ("names", bucket_upper_case, "not 3-63 lower-case letters"),
    "bucket-long": ("names", bucket_account_too_long, "not 3-63 lower-case letters"),
    "sfn-81": ("names", state_machine_name_81, "(81 characters) breaks 1-80"),
    "timeout-901": ("ranges", lambda_timeout_901, "timeout = 901 is outside 1-900"),
    "retention-31": ("ranges", log_retention_31, "retention_in_days = 31"),
    "sqs-visibility": ("ranges", sqs_feeds_slower_lambda, "visibility timeout 30 s is shorter than"),
    "sfn-logs-role": ("step-functions", actions_prefixed("logs:"), "its role lacks logs:CreateLogDelivery"),
    "sfn-xray-role": ("step-functions", actions_prefixed("xray:"), "tracing is on but its role lacks xray:"),
    "sfn-kms-role": ("step-functions", actions_prefixed("kms:"), "its role cannot kms:GenerateDataKey, kms:Decrypt"),
    "sfn-destination": ("step-functions", log_destination_without_star, "lacks ':*'"),
    "sfn-vendedlogs": ("step-functions", log_group_outside_vendedlogs, "outside /aws/vendedlogs/"),
    "queue-four": ("batch", queue_with_four_environments, "4 compute environments"),
    "ce-no-depends": (
        "batch",
        environment_before_its_instance_role,
        "does not wait for aws_iam_role_policy_attachment.batch_instance-role",
    ),
    "ce-before-role": (
        "batch",
        environment_before_its_service_role,
        "does not wait for aws_iam_role_policy_attachment.svc",
    ),
    "log-bucket-kms": ("s3-logging", log_bucket_with_kms, "S3 delivers no access logs to it"),
    "log-bucket-policy": ("s3-logging", log_bucket_without_delivery, "does not let logging.s3.amazonaws.com"),
    "no-permission": ("invoke-permissions", event_target_without_permission, "events.amazonaws.com may not invoke"),
    "ia-10-days": ("s3-data", infrequent_access_after_ten_days, "STANDARD_IA after 10 days"),
    "unversioned-source": ("s3-data", replication_of_unversioned_source, "is not versioned", "prod"),
    "replica-no-backup": ("s3-data", replica_that_is_no_backup, "a deletion leaves no copy", "prod"),
    "open-endpoint": ("endpoint-policy", open_gateway_endpoint, "allows every action on every resource"),
    "s3-any-bucket": ("endpoint-policy", S3_ANY_BUCKET, "reach buckets of any account (arn:aws:s3:::*, arn:aws"),
    "s3-meaningless-condition": ("endpoint-policy", S3_MEANINGLESS_CONDITION, "reach buckets of any account (*)"),
    "s3-read-write-anywhere": ("endpoint-policy", S3_READ_WRITE_ANYWHERE, "reach buckets of any account (*)"),
    "s3-if-exists": ("endpoint-policy", S3_IF_EXISTS, "reach buckets of any account (*)"),
    "s3-other-account": ("endpoint-policy", S3_OTHER_ACCOUNT, "reach buckets of any account (*)"),
    "s3-write-ecr-layers": ("endpoint-policy", S3_WRITE_ECR_LAYERS, "(arn:aws:s3:::prod-eu-north-1-starport"),
    "trust-wrong": ("service-roles", workflow_role_trusts_lambda, "does not let states.amazonaws.com assume it"),
    "events-no-start": (
        "service-roles",
        events_role_without_start,
        "lacks states:StartExecution that events.amazonaws.com needs",
    ),
    "flow-log-no-put": (
        "service-roles",
        without_actions("flow-logs-role_grants", "logs:PutLogEvents"),
        "lacks logs:PutLogEvents that vpc-flow-logs.amazonaws.com needs",
    ),
    "dlq-no-kms": (
        "service-roles",
        without_actions("fn-guard-budget_role_grants", "kms:"),
        "lacks kms:GenerateDataKey, kms:Decrypt that lambda.amazonaws.com needs",
    ),
}


def test_every_rule_has_a_red_case() -> None:
    assert {case[0] for case in RED.values()} == set(preflight_rules.RULES)


def rule_findings(config: dict, rule: str, tmp_path: Path) -> list[str]:
    return [f.line() for f in run(config, tmp_path) if f.check == rule]


@pytest.mark.parametrize("case", sorted(RED))
def test_rule_finds_the_broken_stack(synth: SynthResult, tmp_path: Path, case: str) -> None:
    rule, mutate, expected, env = (*RED[case], "dev")[:4]
    config = copy.deepcopy(synth.pipeline(env))
    assert rule_findings(config, rule, tmp_path) == []  # green before the mutation
    mutate(config)
    found = rule_findings(config, rule, tmp_path)
    assert any(expected in line for line in found), "\n".join(found) or "no finding"


def test_a_replica_that_keeps_deleted_versions_longer_than_its_source_passes(
    synth: SynthResult, tmp_path: Path
) -> None:
    """The replica's noncurrent versions outlive the source's: a deletion can still be undone from it."""
    config = copy.deepcopy(synth.pipeline("prod"))
    replica_that_is_no_backup(config)
    source = one(config, "aws_s3_bucket_lifecycle_configuration", "data-lake_raw_lifecycle")
    source["rule"] = [r for r in source["rule"] if "noncurrent_version_expiration" not in r]
    source["rule"].append({"id": "n", "status": "Enabled", "noncurrent_version_expiration": [{"noncurrent_days": 7}]})
    assert [line for line in rule_findings(config, "s3-data", tmp_path) if ".second:" in line] == []
