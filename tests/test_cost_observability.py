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
    # One env-unique tag alone: values of one TagKeyValue filter are ORed, so two tags there would
    # select either environment's spend (the budget's old Project + Environment filter did).
    (cost_filter,) = budget["cost_filter"]
    assert cost_filter == {"name": "TagKeyValue", "values": [f"user:CostScope$odins-ravne-{env}"]}
    assert synth.pipeline(env)["provider"]["aws"][0]["default_tags"][0]["tags"]["CostScope"] == f"odins-ravne-{env}"
    notes = {(n["notification_type"], n["threshold"]) for n in budget["notification"]}
    # A DAILY budget takes no FORECASTED notification (Budgets rejects it).
    forecast = set() if period == "DAILY" else {("FORECASTED", 100)}
    assert notes == {("ACTUAL", 80), ("ACTUAL", 100)} | forecast
    assert all("aws_sns_topic.budget_topic" in n["subscriber_sns_topic_arns"][0] for n in budget["notification"])
    assert all(not n.get("subscriber_email_addresses") for n in budget["notification"]), "e-mail via the topic"


def test_shutdown_subscribed_to_the_budget_topic_only(synth: SynthResult) -> None:
    subs = [s for s in synth.resources("dev", "aws_sns_topic_subscription").values() if s["protocol"] == "lambda"]
    assert len(subs) == 1 and "budget-shutdown" in subs[0]["endpoint"]
    assert "aws_sns_topic.budget_topic" in subs[0]["topic_arn"]
    [permission] = [
        p for p in synth.resources("dev", "aws_lambda_permission").values() if "budget-shutdown" in p["function_name"]
    ]
    assert permission["principal"] == "sns.amazonaws.com" and "aws_sns_topic.budget_topic" in permission["source_arn"]
    topics = {t["name"]: t for t in synth.resources("dev", "aws_sns_topic").values()}
    assert set(topics) == {"odins-ravne-dev-alerts", "odins-ravne-dev-budget"}
    emails = {
        s["endpoint"]
        for s in synth.resources("dev", "aws_sns_topic_subscription").values()
        if s["protocol"] == "email" and "budget_topic" in s["topic_arn"]
    }
    assert emails == {"odins-ravne-dev-alerts@example.org"}


def test_alert_topic_encrypted_and_restricted(synth: SynthResult) -> None:
    topics = {t["name"]: t for t in synth.resources("prod", "aws_sns_topic").values()}
    assert all(t["kms_master_key_id"].startswith("${aws_kms_key.") for t in topics.values())
    policies = {
        "budget" if "aws_sns_topic.budget_topic" in p["arn"] else "alerts": json.loads(p["policy"])["Statement"]
        for p in synth.resources("prod", "aws_sns_topic_policy").values()
    }
    allow, deny = policies["alerts"]
    # Budgets alone publishes to the budget topic: the Deny covers every principal that is no AWS
    # service (aws:PrincipalServiceName is in the request context only when a service principal
    # calls, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
    budget_allow, budget_deny = policies["budget"]
    assert budget_allow["Principal"] == {"Service": ["budgets.amazonaws.com"]}
    assert (budget_deny["Effect"], budget_deny["Principal"], budget_deny["Action"]) == ("Deny", "*", "sns:Publish")
    assert budget_deny["Condition"] == {"Null": {"aws:PrincipalServiceName": "true"}}
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
    publishers = deny["Condition"]["StringNotLike"]["aws:PrincipalArn"]
    assert len(publishers) == 3 and all(p.endswith(".arn}") for p in publishers)
    roles = {p.split("_role_")[0] for p in publishers}
    assert roles == {"${aws_iam_role.workflow", "${aws_iam_role.fn-budget-shutdown", "${aws_iam_role.fn-start-run"}


def test_cost_explorer_switches(synth: SynthResult) -> None:
    assert not synth.resources("local", "aws_ce_anomaly_monitor")
    monitor = synth.only("prod", "aws_ce_anomaly_monitor")
    spec = json.loads(monitor["monitor_specification"])
    assert spec["Tags"] == {"Key": "CostScope", "MatchOptions": None, "Values": ["odins-ravne-prod"]}
    # monitor_specification is ForceNew; the provider stores json.Marshal of the SDK's Expression
    # (every field, nil as null) and compares with reflect.DeepEqual (SuppressEquivalentJSONDiffs):
    # only a spec already in that shape plans no replacement.
    assert read_back(spec) == spec
    subscription = synth.only("prod", "aws_ce_anomaly_subscription")
    assert subscription["subscriber"][0]["type"] == "SNS"
    # Activating tag keys fails until they exist (up to 24 h after first tagged use): not in any
    # apply, but `make cost-tags ENV=<env>` (pipeline_ops/cost_tags.py).
    assert "aws_ce_cost_allocation_tag" not in synth.stack("state-bootstrap-333333333333")["resource"]


# The fields of aws-sdk-go-v2's costexplorer types, in the order json.Marshal writes them.
EXPRESSION_FIELDS = {
    "Expression": {"And": "[Expression]", "CostCategories": "Values", "Dimensions": "Values", "Not": "Expression"}
    | {"Or": "[Expression]", "Tags": "Values"},
    "Values": {"Key": None, "MatchOptions": None, "Values": None},
}


def read_back(value: dict | None, shape: str = "Expression") -> dict | None:
    """What the provider's Read stores for an Expression: each field present, null when unset."""
    if value is None:
        return None
    out = {}
    for field, inner in EXPRESSION_FIELDS[shape].items():
        got = value.get(field)
        if inner is None or got is None:
            out[field] = got
        elif inner.startswith("["):
            out[field] = [read_back(item, inner[1:-1]) for item in got]
        else:
            out[field] = read_back(got, inner)
    return out


@pytest.mark.parametrize("env", ENVS)
def test_alarms_point_at_the_topic(synth: SynthResult, env: str) -> None:
    alarms = {
        a["alarm_name"].removeprefix(f"odins-ravne-{env}-"): a
        for a in synth.resources(env, "aws_cloudwatch_metric_alarm").values()
    }
    expected = {"sfn-ExecutionsFailed", "sfn-ExecutionsTimedOut", "sfn-ExecutionThrottled", "batch-jobs-failed"}
    for fn in (
        "guard_budget",
        "plan_fan_out",
        "weather_enrichment",
        "write_parquet",
        "budget_shutdown",
        "batch_metrics",
        "start_run",
    ):
        expected |= {f"{fn}-errors", f"{fn}-throttles", f"{fn}-duration"}
    expected |= {f"batch-{queue}-runnable" for queue in ("high", "normal", "low", "cpu")}
    expected.add("trigger-failed-invocations")  # every env has the manifest trigger
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
    runnable = alarms["batch-normal-runnable"]
    assert (runnable["namespace"], runnable["metric_name"], runnable["statistic"]) == (
        "OdinsRavne/Pipeline",
        "OldestRunnableSeconds",
        "Maximum",
    )
    assert runnable["dimensions"] == {"Environment": env, "Queue": "normal"} and runnable["threshold"] == 30 * 60


def test_batch_failed_rule_feeds_topic(synth: SynthResult) -> None:
    rules = {r["name"]: r for r in synth.resources("dev", "aws_cloudwatch_event_rule").values()}
    pattern = json.loads(rules["odins-ravne-dev-batch-job-failed"]["event_pattern"])
    assert pattern["detail"]["status"] == ["FAILED"] and len(pattern["detail"]["jobQueue"]) == 4  # 3 GPU + cpu


def test_dashboard_widgets(synth: SynthResult) -> None:
    """The seed's figures for every service, from the metrics AWS publishes and BatchMetrics' EMF."""
    body = json.loads(synth.only("dev", "aws_cloudwatch_dashboard")["dashboard_body"])
    widgets = {w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["type"] == "metric"}
    assert list(widgets) == [
        "Executions: started, succeeded, failed, timed out",
        "Execution duration (ms): p50, p90",
        "Images processed per execution",
        "Lambda error rate (%)",
        "Lambda invocations and throttles",
        "Lambda duration (ms, p90)",
        "Batch queue high: jobs by state (depth) and finished",
        "Batch queue normal: jobs by state (depth) and finished",
        "Batch queue low: jobs by state (depth) and finished",
        "Batch queue cpu: jobs by state (depth) and finished",
        "Batch: oldest RUNNABLE job (s) per queue",
        "Batch vCPUs: desired vs max per compute environment",
        "Batch: spot interruption warnings, jobs failed",
        "S3 storage (bytes), every storage class",
        "S3 requests (needs request metrics)",
        "S3 bytes down / up (needs request metrics)",
        "Estimated charges vs budget (USD)",
    ]
    stats = [m[-1].get("stat") for m in widgets["Execution duration (ms): p50, p90"]["metrics"]]
    assert stats == ["p50", "p90"]
    rates = [m[0] for m in widgets["Lambda error rate (%)"]["metrics"] if isinstance(m[0], dict)]
    functions = synth.resources("dev", "aws_lambda_function")
    assert len(rates) == len(functions) and rates[0]["expression"] == "100 * FILL(e0, 0) / i0"
    queue = [m[1] for m in widgets["Batch queue normal: jobs by state (depth) and finished"]["metrics"]]
    assert (
        queue == ["JobsSubmitted", "JobsPending", "JobsRunnable", "JobsStarting", "JobsRunning"] + ["JobsFinished"] * 2
    )
    assert widgets["Batch: oldest RUNNABLE job (s) per queue"]["annotations"]["horizontal"][0]["value"] == 1800
    storage = widgets["S3 storage (bytes), every storage class"]["metrics"]
    assert len(storage) == 3 and all(
        "StorageType" in m["expression"] and "SEARCH(" in m["expression"] for (m,) in storage
    )
    assert "StandardStorage" not in json.dumps(storage), "every class, not only Standard"
    budget = widgets["Estimated charges vs budget (USD)"]["annotations"]["horizontal"][0]
    assert budget == {"label": "budget", "value": 50.0}


def test_batch_metrics_are_fed_by_a_schedule_and_batch_events(synth: SynthResult) -> None:
    """BatchMetrics runs every minute and on each finished job and spot warning, and may only list jobs."""
    rules = {
        r["name"].removeprefix("odins-ravne-dev-"): r
        for r in synth.resources("dev", "aws_cloudwatch_event_rule").values()
    }
    assert rules["batch-metrics-schedule"]["schedule_expression"] == "rate(1 minute)"
    finished = json.loads(rules["batch-jobs-finished"]["event_pattern"])
    assert finished["detail"]["status"] == ["SUCCEEDED", "FAILED"] and len(finished["detail"]["jobQueue"]) == 4
    spot = json.loads(rules["spot-interruptions"]["event_pattern"])
    assert spot["detail-type"] == ["EC2 Spot Instance Interruption Warning"]
    targets = synth.resources("dev", "aws_cloudwatch_event_target").values()
    fed = [t for t in targets if "fn-batch-metrics" in t["arn"]]
    assert len(fed) == 3
    permissions = [
        p for p in synth.resources("dev", "aws_lambda_permission").values() if "fn-batch-metrics" in p["function_name"]
    ]
    assert sorted(p["principal"] for p in permissions) == ["events.amazonaws.com"] * 3
    assert all("aws_cloudwatch_event_rule.monitoring_" in p["source_arn"] for p in permissions)
    function = next(
        f
        for f in synth.resources("dev", "aws_lambda_function").values()
        if f["function_name"].endswith("batch-metrics")
    )
    variables = function["environment"]["variables"]
    assert variables["METRIC_NAMESPACE"] == "OdinsRavne/Pipeline" and variables["PIPELINE_ENV"] == "dev"
    assert [pair.split("=")[0] for pair in variables["JOB_QUEUES"].split(",")] == ["high", "normal", "low", "cpu"]
    assert [pair.split("=")[0] for pair in variables["COMPUTE_ENVIRONMENTS"].split(",")] == ["gpu", "cpu"]


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
    assert "/odins-ravne/dev/secrets/weather-api-key" not in params  # set by `make weather-key`
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


def test_cost_reports_export_cur2_and_save_the_queries(synth: SynthResult) -> None:
    """CUR 2.0 to a bucket only the billing services of this account may write; every saved query
    parses as Trino SQL, reads only columns the export selects, and keeps to its environment."""
    import sqlglot
    from sqlglot import exp

    from modules.cost_reports import CUR_COLUMNS
    from modules.dataset import COLUMNS as DETECTION_COLUMNS

    [export] = synth.only("prod", "aws_bcmdataexports_export")["export"]
    query = export["data_query"][0]
    assert query["query_statement"] == f"SELECT {', '.join(CUR_COLUMNS)} FROM COST_AND_USAGE_REPORT"
    config = query["table_configurations"]["COST_AND_USAGE_REPORT"]
    assert (config["TIME_GRANULARITY"], config["INCLUDE_SPLIT_COST_ALLOCATION_DATA"]) == ("DAILY", "TRUE")
    destination = export["destination_configurations"][0]["s3_destination"][0]
    assert (
        destination["s3_bucket"] == "odins-ravne-prod-cost-reports-333333333333" and destination["s3_prefix"] == "cur2"
    )
    assert synth.only("prod", "aws_bcmdataexports_export")["provider"] == "aws.billing"
    providers = {p.get("alias"): p["region"] for p in synth.pipeline("prod")["provider"]["aws"]}
    assert providers["billing"] == "us-east-1", "Data Exports lives in us-east-1"
    policies = [json.loads(p["policy"]) for p in synth.resources("prod", "aws_s3_bucket_policy").values()]
    [delivery] = [s for p in policies for s in p["Statement"] if s.get("Sid") == "BillingDataExportsDeliver"]
    assert delivery["Condition"]["StringLike"]["aws:SourceAccount"] == "333333333333"
    assert delivery["Resource"][1].endswith("/cur2/*")
    table = next(t for t in synth.resources("prod", "aws_glue_catalog_table").values() if t["name"] == "cur2")
    assert table["parameters"]["projection.enabled"] == "true"
    assert table["parameters"]["storage.location.template"].endswith("/data/BILLING_PERIOD=$${billing_period}")
    workgroups = synth.resources("prod", "aws_athena_workgroup").values()
    workgroup = next(w for w in workgroups if w["name"] == "odins-ravne-prod-cost")["configuration"]
    assert workgroup["enforce_workgroup_configuration"] is True
    assert workgroup["result_configuration"]["encryption_configuration"]["encryption_option"] == "SSE_S3"
    queries = {
        q["name"].removeprefix("odins-ravne-prod-"): q
        for q in synth.resources("prod", "aws_athena_named_query").values()
        if q["workgroup"].startswith("${aws_athena_workgroup.cost-reports_")
    }
    assert set(queries) == {
        "cost-daily",
        "cost-weekly",
        "cost-monthly",
        "cost-per-stage",
        "cost-per-1000-images",
        "spot-savings",
    }
    known = set(CUR_COLUMNS) | set(DETECTION_COLUMNS) | {"k", "v", "day", "week", "month", "usd", "n"}
    for name, saved in queries.items():
        tree = sqlglot.parse_one(saved["query"], read="trino")
        columns = {c.name for c in tree.find_all(exp.Column)}
        assert columns <= known, f"{name} reads columns the export lacks: {columns - known}"
        assert "'user_environment') = 'prod'" in saved["query"], f"{name} is not limited to prod"
    assert (
        "SpotUsage" in queries["spot-savings"]["query"]
        and "pricing_public_on_demand_cost" in queries["spot-savings"]["query"]
    )
    assert "'user_stage')" in queries["cost-per-stage"]["query"]
    assert "FROM odins_ravne_prod_dataset.detections" in queries["cost-per-1000-images"]["query"]
    jobdefs = synth.resources("prod", "aws_batch_job_definition").values()
    assert {j["tags"]["Stage"] for j in jobdefs} == {"stage0", "stage1", "stage2"} and all(
        j["propagate_tags"] for j in jobdefs
    )
    assert not synth.resources("local", "aws_bcmdataexports_export"), "the emulator has no Data Exports"
