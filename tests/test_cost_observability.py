"""Budgets, alerting, alarms, dashboard, logs, parameters and outputs (properties, per environment)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SynthResult

ENVS = ("local", "dev", "staging", "prod")


@pytest.mark.parametrize(
    ("env", "amount", "period"),
    [("dev", "50.00", "DAILY"), ("staging", "300.00", "MONTHLY"), ("prod", "1000.00", "MONTHLY")],
)
def test_budget_amounts_filters_and_notifications(synth: SynthResult, env: str, amount: str, period: str) -> None:
    budget = synth.only(env, "aws_budgets_budget")
    assert (budget["limit_amount"], budget["limit_unit"], budget["time_unit"]) == (amount, "USD", period)
    (cost_filter,) = budget["cost_filter"]
    assert cost_filter == {"name": "TagKeyValue", "values": ["user:Project$odins-ravne", f"user:Environment${env}"]}
    notes = {(n["notification_type"], n["threshold"]) for n in budget["notification"]}
    assert notes == {("ACTUAL", 80), ("FORECASTED", 100), ("ACTUAL", 100)}
    assert all("aws_sns_topic.alerts" in n["subscriber_sns_topic_arns"][0] for n in budget["notification"])


def test_shutdown_subscribed_to_alert_topic(synth: SynthResult) -> None:
    subs = [s for s in synth.resources("dev", "aws_sns_topic_subscription").values() if s["protocol"] == "lambda"]
    assert len(subs) == 1 and "budget-shutdown" in subs[0]["endpoint"]
    permission = synth.only("dev", "aws_lambda_permission")
    assert permission["principal"] == "sns.amazonaws.com" and "aws_sns_topic.alerts" in permission["source_arn"]


def test_alert_topic_encrypted_and_restricted(synth: SynthResult) -> None:
    topic = synth.only("prod", "aws_sns_topic")
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.")
    allow, deny = json.loads(synth.only("prod", "aws_sns_topic_policy")["policy"])["Statement"]
    assert allow["Principal"] == {
        "Service": [
            "budgets.amazonaws.com",
            "cloudwatch.amazonaws.com",
            "costalerts.amazonaws.com",
            "events.amazonaws.com",
        ]
    }
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": "333333333333"}}
    assert deny["Effect"] == "Deny" and deny["Condition"]["Null"] == {"aws:PrincipalServiceName": "true"}
    (publisher,) = deny["Condition"]["StringNotLike"]["aws:PrincipalArn"]
    assert publisher.startswith("${aws_iam_role.workflow_role_") and publisher.endswith(".arn}")


def test_cost_explorer_switches(synth: SynthResult) -> None:
    assert not synth.resources("local", "aws_ce_anomaly_monitor")
    monitor = synth.only("prod", "aws_ce_anomaly_monitor")
    spec = json.loads(monitor["monitor_specification"])
    assert {"Tags": {"Key": "Environment", "Values": ["prod"], "MatchOptions": ["EQUALS"]}} in spec["And"]
    subscription = synth.only("prod", "aws_ce_anomaly_subscription")
    assert subscription["subscriber"][0]["type"] == "SNS"
    tags = synth.stack("state-bootstrap-333333333333")["resource"]["aws_ce_cost_allocation_tag"].values()
    assert {t["tag_key"] for t in tags} == {"Project", "Environment", "CostCenter"}


@pytest.mark.parametrize("env", ENVS)
def test_alarms_point_at_the_topic(synth: SynthResult, env: str) -> None:
    alarms = {
        a["alarm_name"].removeprefix(f"odins-ravne-{env}-"): a
        for a in synth.resources(env, "aws_cloudwatch_metric_alarm").values()
    }
    expected = {"sfn-ExecutionsFailed", "sfn-ExecutionsTimedOut", "sfn-ExecutionThrottled", "batch-jobs-failed"}
    for fn in ("guard_budget", "plan_fan_out", "weather_enrichment", "write_parquet", "budget_shutdown"):
        expected |= {f"{fn}-errors", f"{fn}-throttles", f"{fn}-duration"}
    if env != "local":
        expected |= {"s3-raw-5xx", "s3-processed-5xx", "s3-curated-5xx"}
    assert set(alarms) == expected
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == alarm["ok_actions"] and "aws_sns_topic.alerts" in alarm["alarm_actions"][0]
        assert alarm["treat_missing_data"] == "notBreaching" and alarm["evaluation_periods"] == 1
    assert alarms["sfn-ExecutionsFailed"]["namespace"] == "AWS/States"
    assert "aws_sfn_state_machine" in alarms["sfn-ExecutionsFailed"]["dimensions"]["StateMachineArn"]
    assert alarms["write_parquet-duration"]["threshold"] == 600 * 1000 * 0.8
    assert alarms["batch-jobs-failed"]["dimensions"]["RuleName"].startswith("${aws_cloudwatch_event_rule.monitoring_")


def test_batch_failed_rule_feeds_topic(synth: SynthResult) -> None:
    rules = {r["name"]: r for r in synth.resources("dev", "aws_cloudwatch_event_rule").values()}
    pattern = json.loads(rules["odins-ravne-dev-batch-job-failed"]["event_pattern"])
    assert pattern["detail"]["status"] == ["FAILED"] and len(pattern["detail"]["jobQueue"]) == 4  # 3 GPU + cpu


def test_dashboard_widgets(synth: SynthResult) -> None:
    body = json.loads(synth.only("dev", "aws_cloudwatch_dashboard")["dashboard_body"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == [
        "Executions",
        "Execution duration (ms)",
        "Lambda errors",
        "Lambda duration (ms, max)",
        "Batch jobs failed",
        "Data bucket sizes (bytes)",
        "Estimated charges vs budget (USD)",
    ]
    budget = body["widgets"][-1]["properties"]["annotations"]["horizontal"][0]
    assert budget == {"label": "budget", "value": 50.0}


@pytest.mark.parametrize(("env", "days"), [("local", 7), ("dev", 30), ("staging", 60), ("prod", 90)])
def test_every_log_group_has_retention_and_key(synth: SynthResult, env: str, days: int) -> None:
    groups = {g["name"]: g for g in synth.resources(env, "aws_cloudwatch_log_group").values()}
    for group in groups.values():
        assert group["retention_in_days"] == days and group["kms_key_id"].startswith("${aws_kms_key.")
    functions = synth.resources(env, "aws_lambda_function").values()
    expected = {f"/aws/lambda/{f['function_name']}" for f in functions}
    expected |= {
        f"/aws/batch/odins-ravne-{env}",
        f"/vpc/odins-ravne-{env}/flow-logs",
        f"/aws/vendedlogs/states/odins-ravne-{env}-pipeline",
    }
    assert set(groups) == expected, "every log-producing resource has its own Terraform-managed group"
    for fn in functions:
        assert fn["logging_config"]["log_group"].startswith("${aws_cloudwatch_log_group.")
    for definition in synth.resources(env, "aws_batch_job_definition").values():
        container = json.loads(definition["container_properties"])
        assert container["logConfiguration"]["options"]["awslogs-group"].startswith("${aws_cloudwatch_log_group.batch_")


def test_parameters(synth: SynthResult) -> None:
    params = {p["name"]: p for p in synth.resources("dev", "aws_ssm_parameter").values()}
    secret = params["/odins-ravne/dev/secrets/weather-api-key"]
    assert secret["type"] == "SecureString" and secret["key_id"].startswith("${aws_kms_key.")
    assert secret["lifecycle"] == {"ignore_changes": ["value"]}
    assert params["/odins-ravne/dev/kill-switch"]["value"] == "off"
    assert "bucket_raw" in json.loads(params["/odins-ravne/dev/settings"]["value"])


def test_outputs(synth: SynthResult) -> None:
    outputs = set(synth.pipeline("prod")["output"])
    for name in (
        "bucket_raw",
        "bucket_processed",
        "bucket_curated",
        "job_queue_high_arn",
        "job_queue_normal_arn",
        "job_queue_low_arn",
        "job_definition_stage0_arn",
        "state_machine_arn",
        "alert_topic_arn",
        "dashboard_url",
        "budget_name",
        "stage_images",
    ):
        assert name in outputs
