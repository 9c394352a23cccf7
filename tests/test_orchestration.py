"""The workflow definition, the functions and least-privilege IAM, on the synthesized stacks."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from modules import asl
from tests.conftest import REPO, SynthResult

ENVS = ("local", "dev", "staging", "prod")
TOP = ["PlanFanOut", "GuardBudget", "Stage0", "Stage1ToStage2", "WeatherEnrichment", "WriteParquet"]
# Every "Resource": "*" the stacks may contain, with the reason AWS gives no narrower scope.
STAR_ALLOWED = {
    ("xray:PutTelemetryRecords", "xray:PutTraceSegments"): "X-Ray writes have no resource-level permissions",
    (
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    ): "X-Ray has no resource-level permissions",
    ("ecr:GetAuthorizationToken",): "ECR's token is account-wide",
    ("athena:ListWorkGroups",): "Athena's ListWorkGroups has no resource-level permissions",
    ("batch:DescribeJobs",): "Batch Describe* support no resource-level permissions",
    ("batch:ListJobs",): "Batch ListJobs supports no resource-level permissions (budget shutdown)",
    ("batch:DescribeComputeEnvironments", "batch:ListJobs"): "Batch ListJobs and Describe* support no "
    "resource-level permissions (queue-depth metrics)",
    ("batch:DescribeComputeEnvironments",): "Batch Describe* are not resource-scoped (budget shutdown)",
    (
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
    ): "vended-log delivery APIs take no resource ARN",
}


def definition(synth: SynthResult, env: str) -> dict:
    return json.loads(synth.only(env, "aws_sfn_state_machine")["definition"])


@pytest.mark.parametrize("env", ENVS)
def test_definition_shape(synth: SynthResult, env: str) -> None:
    doc = definition(synth, env)
    assert doc["TimeoutSeconds"] == 7200 and doc["StartAt"] == "FromTrigger", "the input is checked before any Lambda"
    assert asl.reachable(doc) == set(doc["States"]), "every state is reachable"
    for name, state in doc["States"].items():
        if state["Type"] in ("Task", "Map"):
            assert state.get("Retry") and state.get("Catch"), f"{name} lacks Retry or Catch"
            for rule in state["Retry"]:
                assert rule["MaxAttempts"] <= 10 and rule["BackoffRate"] >= 1 and rule["JitterStrategy"] == "FULL"
    path, name = [], "Route"
    while name in doc["States"]:
        path.append(name)
        state = doc["States"][name]
        # The way on: a gate's first choice (allowed), a check's default (shards to run, all done).
        forward = state.get("Default") if name in ("AnyShards", "ShardsComplete") else None
        name = state.get("Next") or forward or next((c["Next"] for c in state.get("Choices", [])), None)
    assert [s for s in path if s in TOP] == TOP
    assert path[: path.index("Stage0")] == [
        "Route",
        "PriorityNormal",
        "PlanFanOut",
        "PlanFanOutAllowed",
        "GuardBudget",
        "GuardBudgetAllowed",
    ]
    assert path[path.index("Stage0") : path.index("Stage1ToStage2")] == ["Stage0", "ReadShards", "AnyShards"]
    assert path[path.index("WriteParquet") :] == ["WriteParquet", "ShardsComplete", "Succeeded"]
    # Each gate: a refusal is notified, then ends the execution with its reason as the cause;
    # the plan's comes before any Batch job.
    for gate, error, reason in (
        ("GuardBudget", "BudgetExceeded", "$.guard.reason"),
        ("PlanFanOut", "ManifestRefused", "$.plan.reason"),
    ):
        assert doc["States"][f"{gate}Allowed"]["Default"] == f"Notify{error}"
        assert doc["States"][f"Notify{error}"]["Next"] == error
        assert doc["States"][error] == {"Type": "Fail", "Error": error, "CausePath": reason}
    # GuardBudget is given the plan: its cost estimate counts against the budget.
    assert doc["States"]["GuardBudget"]["Parameters"]["Payload"]["plan.$"] == "$.plan"
    assert "plan.$" not in doc["States"]["PlanFanOut"]["Parameters"]["Payload"]
    fan_out = doc["States"]["Stage1ToStage2"]
    assert fan_out["Type"] == "Map" and fan_out["MaxConcurrency"] == (12 if env == "local" else 25)
    assert fan_out["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert fan_out["ItemReader"]["Parameters"]["Key.$"] == "$.shards.summary.key", "the list comes from S3"
    children = fan_out["ItemProcessor"]["States"]
    assert fan_out["ItemProcessor"]["StartAt"] == "Stage1" and children["Stage1"]["Next"] == "Stage2"
    assert children["Stage2"]["End"] is True and children["Stage2"]["OutputPath"] is None
    # A failed stage job is retried once, after the profile's wait (2 s on the emulator, 30 s in AWS).
    wait = 2 if env == "local" else 30
    for job in [*children.values(), doc["States"]["Stage0"]]:
        [failed] = [r for r in job["Retry"] if r["ErrorEquals"] == ["States.TaskFailed"]]
        assert (failed["MaxAttempts"], failed["IntervalSeconds"]) == (1, wait)
    for job in children.values():
        assert job["Resource"] == "arn:aws:states:::batch:submitJob.sync"
        assert job["Parameters"]["JobQueue.$"] == "$.queue", "GPU steps go to the queue the priority picked"
        assert job["Parameters"]["ContainerOverrides"]["Environment"] == [
            {"Name": "EXECUTION_ID", "Value.$": "$.execution_id"}
        ]
    stage0 = doc["States"]["Stage0"]["Parameters"]
    assert "aws_batch_job_queue.batch_queue-cpu_" in stage0["JobQueue"]
    routes = {c.get("StringEquals"): c["Next"] for c in doc["States"]["Route"]["Choices"]}
    assert routes == {None: "PriorityNormal", "high": "PriorityHigh", "normal": "PriorityNormal", "low": "PriorityLow"}
    assert doc["States"]["Route"]["Default"] == "NotifyInvalidInput"
    assert doc["States"]["NotifyInvalidInput"]["Next"] == "InvalidInput"
    # Shards may fail up to the profile's share; fewer shards done than cut is told.
    assert fan_out["ToleratedFailurePercentage"] == (20 if env == "local" else 2)
    assert doc["States"]["ShardsComplete"]["Choices"] == [
        {"Variable": "$.weather.shards", "NumericLessThanPath": "$.shards.summary.count", "Next": "NotifyFailedShards"}
    ]
    for priority in ("high", "normal", "low"):
        assert f"batch_queue-{priority}_" in doc["States"][f"Priority{priority.title()}"]["Result"]["queue"]


def test_definition_passes_asl_validator(synth: SynthResult, tmp_path: Path) -> None:
    for env in ENVS:
        file = tmp_path / f"{env}.asl.json"
        file.write_text(json.dumps(definition(synth, env)))
        proc = subprocess.run(
            [str(REPO / "node_modules" / ".bin" / "asl-validator"), "--json-path", str(file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{env}: {proc.stdout}{proc.stderr}"


def test_state_machine_settings(synth: SynthResult) -> None:
    for env, level, data in (("dev", "ALL", True), ("prod", "ERROR", False)):
        machine = synth.only(env, "aws_sfn_state_machine")
        assert machine["type"] == "STANDARD" and machine["tracing_configuration"]["enabled"] is True
        logging = machine["logging_configuration"]
        assert (logging["level"], logging["include_execution_data"]) == (level, data)
        assert machine["encryption_configuration"]["type"] == "CUSTOMER_MANAGED_KMS_KEY"


def test_manifest_rule_starts_executions(synth: SynthResult) -> None:
    """The manifest rule invokes start_run (the rule cannot name an execution; start_run names it
    after the manifest's content) with the whole event, as Lambda targets get it; the function's
    resource policy admits that rule only, and its role may start this machine and read manifests,
    nothing else of the kind (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html)."""
    resources = synth.pipeline("dev")["resource"]
    rules = {r["name"]: (n, r) for n, r in resources["aws_cloudwatch_event_rule"].items()}
    rule_id, rule = rules["odins-ravne-dev-on-manifest"]
    pattern = json.loads(rule["event_pattern"])
    assert pattern["detail"]["object"]["key"] == [{"prefix": "manifests/"}]
    (target,) = [t for t in resources["aws_cloudwatch_event_target"].values() if rule_id in t["rule"]]
    function_id = target["arn"].removeprefix("${aws_lambda_function.").removesuffix(".arn}")
    function = resources["aws_lambda_function"][function_id]
    assert function["function_name"] == "odins-ravne-dev-start-run"
    assert not {"input", "input_path", "input_transformer", "role_arn"} & set(target), "the whole event, no role"
    # Undelivered events are kept, not dropped: the function's dead-letter queue, admitting this rule
    # only; EventBridge's retry limits within RetryPolicy's ranges (age 60-86,400 s, attempts 0-185:
    # https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_RetryPolicy.html).
    dlq = target["dead_letter_config"]["arn"]
    assert dlq.startswith("${aws_sqs_queue.fn-start-run_dlq_") and target["retry_policy"] == {
        "maximum_event_age_in_seconds": 86400,
        "maximum_retry_attempts": 185,
    }
    (queue_policy,) = resources["aws_sqs_queue_policy"].values()
    (admits,) = json.loads(queue_policy["policy"])["Statement"]
    assert (admits["Principal"], admits["Action"], admits["Resource"]) == (
        {"Service": "events.amazonaws.com"},
        "sqs:SendMessage",
        dlq,
    )
    assert admits["Condition"] == {"ArnEquals": {"aws:SourceArn": f"${{aws_cloudwatch_event_rule.{rule_id}.arn}}"}}
    (permission,) = [
        p
        for p in resources["aws_lambda_permission"].values()
        if p["function_name"].startswith(f"${{aws_lambda_function.{function_id}.")
    ]
    assert (permission["principal"], permission["source_arn"]) == (
        "events.amazonaws.com",
        f"${{aws_cloudwatch_event_rule.{rule_id}.arn}}",
    )
    assert target["depends_on"] == [f"aws_lambda_permission.{permission['//']['metadata']['uniqueId']}"]
    env = function["environment"]["variables"]
    assert env["STATE_MACHINE_ARN"].endswith(":stateMachine:odins-ravne-dev-pipeline")
    assert (env["MANIFEST_PREFIX"], env["MANIFEST_BUCKET"]) == (
        "manifests",
        "${aws_s3_bucket.data-lake_raw_bucket_72556160.bucket}",
    )
    role = function["role"].removeprefix("${aws_iam_role.").removesuffix(".arn}")
    (grants,) = [g for g in resources["aws_iam_role_policy"].values() if g["role"] == f"${{aws_iam_role.{role}.name}}"]
    statements = json.loads(grants["policy"])["Statement"]
    starts = [s for s in statements if "states:StartExecution" in s["Action"]]
    assert starts == [
        {
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": ["${aws_sfn_state_machine.workflow_state-machine_5D8A73B7.arn}"],
        }
    ]
    reads = [s["Resource"] for s in statements if "s3:GetObject" in s["Action"]]
    assert reads == [["${aws_s3_bucket.data-lake_raw_bucket_72556160.arn}/manifests/*"]]
    doc = definition(synth, "dev")
    assert doc["StartAt"] == "FromTrigger" and doc["States"]["ManifestGiven"]["Default"] == "Route"


def test_functions(synth: SynthResult) -> None:
    functions = {
        f["function_name"].removeprefix("odins-ravne-dev-"): f
        for f in synth.resources("dev", "aws_lambda_function").values()
    }
    assert set(functions) == {
        "guard-budget",
        "plan-fan-out",
        "weather-enrichment",
        "write-parquet",
        "budget-shutdown",
        "batch-metrics",
        "start-run",
    }
    for fn in functions.values():
        assert fn["runtime"] == "python3.12" and fn["architectures"] == ["arm64"]
        assert fn["tracing_config"]["mode"] == "Active" and fn["logging_config"]["log_format"] == "JSON"
        assert fn["kms_key_arn"].startswith("${aws_kms_key.")
    assert functions["write-parquet"]["layers"][0].startswith("arn:aws:lambda:eu-north-1:336392948345:layer:")
    assert (
        "layers"
        not in synth.resources("local", "aws_lambda_function")[
            next(k for k in synth.resources("local", "aws_lambda_function") if "write-parquet" in k)
        ]
    )
    configs = synth.resources("dev", "aws_lambda_function_event_invoke_config").values()
    assert len(configs) == len(functions) and all(
        "aws_sqs_queue" in c["destination_config"]["on_failure"]["destination"] for c in configs
    )


def test_zip_is_reproducible() -> None:
    from modules.functions import package, source_hash  # loads the provider binding: not at collection

    first, second = package("write_parquet"), package("write_parquet")
    assert first == second
    expected = base64.b64encode(hashlib.sha256(first).digest()).decode()
    assert source_hash(first) == expected
    import zipfile, io  # noqa: E401, I001

    assert sorted(zipfile.ZipFile(io.BytesIO(first)).namelist()) == ["handler.py", "pipeline_log.py", "shards.py"]


def _documents(stack: dict) -> list[tuple[str, dict]]:
    docs = []
    for type_, key in (("aws_iam_role_policy", "policy"), ("aws_iam_policy", "policy")):
        for name, body in stack.get("resource", {}).get(type_, {}).items():
            docs.append((name, json.loads(body[key])))
    return docs


def test_no_unexplained_star(synth: SynthResult) -> None:
    for stack_name, stack in synth.stacks.items():
        for name, doc in _documents(stack):
            if "_boundary_" in name:
                continue  # a permissions boundary grants nothing (tests/test_ci_pipeline.py checks its Deny)
            for st in doc["Statement"]:
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                actions = tuple(sorted(st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))
                assert not any(a.endswith(":*") or a == "*" for a in actions), f"{stack_name}/{name}: {actions}"
                if "*" in resources:
                    assert actions in STAR_ALLOWED, f"{stack_name}/{name}: {actions} on * is not documented"


def test_state_machine_role_is_exact(synth: SynthResult) -> None:
    policy = next(
        json.loads(b["policy"])
        for b in synth.resources("dev", "aws_iam_role_policy").values()
        if "workflow_role" in b["role"]
    )
    by_action: dict[str, list[str]] = {}
    for st in policy["Statement"]:
        for action in st["Action"]:
            by_action.setdefault(action, []).extend(st["Resource"])
    assert all("aws_lambda_function" in r for r in by_action["lambda:InvokeFunction"])
    assert len(by_action["lambda:InvokeFunction"]) == 8  # four functions, each with ":*" for versions
    submit = by_action["batch:SubmitJob"]
    # GPU steps to the three priority queues, the CPU step to cpu, each with its own definition only.
    queues = {r.split(".")[1].split("_")[1] for r in submit if "aws_batch_job_queue" in r}
    assert queues == {"queue-cpu", "queue-high", "queue-normal", "queue-low"}
    assert sum("arn_prefix" in r for r in submit) == 3
    assert by_action["events:PutRule"] == [
        "arn:aws:events:eu-north-1:111111111111:rule/StepFunctionsGetEventsForBatchJobsRule"
    ]
    (topic,) = by_action["sns:Publish"]
    assert topic.startswith("${aws_sns_topic.alerts_topic_") and topic.endswith(".arn}")
    # The Distributed Map starts child executions of this machine only, and reads the shard list.
    assert by_action["states:StartExecution"] == [
        "arn:aws:states:eu-north-1:111111111111:stateMachine:odins-ravne-dev-pipeline"
    ]
    assert (
        by_action["states:DescribeExecution"]
        == by_action["states:StopExecution"]
        == ["arn:aws:states:eu-north-1:111111111111:execution:odins-ravne-dev-pipeline/*"]
    )
    processed = "${aws_s3_bucket.data-lake_processed_bucket_FF4A5E15.arn}"
    assert by_action["s3:GetObject"] == [f"{processed}/stage0/*", f"{processed}/map-results/*"]
    # The Map's ResultWriter writes the children's results there, and only there.
    assert by_action["s3:PutObject"] == [f"{processed}/map-results/*"]
