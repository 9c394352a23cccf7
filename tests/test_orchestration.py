"""The workflow definition, the functions and least-privilege IAM, on the synthesized stacks."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from modules import asl
from modules.functions import package, source_hash
from tests.conftest import REPO, SynthResult

ENVS = ("local", "dev", "staging", "prod")
ORDER = ["GuardBudget", "Stage0", "Stage1", "Stage2", "WeatherEnrichment", "WriteParquet"]
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
    ("batch:DescribeJobs",): "Batch Describe* support no resource-level permissions",
    ("batch:DescribeComputeEnvironments", "batch:DescribeJobQueues"): "Batch Describe* are not resource-scoped",
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
    assert doc["TimeoutSeconds"] == 7200 and doc["StartAt"] == "GuardBudget"
    assert asl.reachable(doc) == set(doc["States"]), "every state is reachable"
    for name, state in doc["States"].items():
        if state["Type"] in ("Task", "Map"):
            assert state.get("Retry") and state.get("Catch"), f"{name} lacks Retry or Catch"
            for rule in state["Retry"]:
                assert rule["MaxAttempts"] <= 10 and rule["BackoffRate"] >= 1 and rule["JitterStrategy"] == "FULL"
    path, name = [], "GuardBudget"
    while name in doc["States"]:
        path.append(name)
        state = doc["States"][name]
        name = state.get("Next") or next((c["Next"] for c in state.get("Choices", [])), None)
    assert [s for s in path if s in ORDER] == ORDER
    assert doc["States"]["BudgetAllowed"]["Default"] == "NotifyBudgetExceeded"
    assert doc["States"]["BudgetExceeded"] == {
        "Type": "Fail",
        "Error": "BudgetExceeded",
        "Cause": "The budget guard refused the execution (see the alert topic)",
    }
    stage1 = doc["States"]["Stage1"]
    assert stage1["Type"] == "Map" and stage1["MaxConcurrency"] == (8 if env == "prod" else 4)
    job = stage1["ItemProcessor"]["States"]["Stage1Shard"]
    assert job["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    assert job["Parameters"]["ContainerOverrides"]["Environment"] == [
        {"Name": "EXECUTION_ID", "Value.$": "$.execution_id"}
    ]


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
    rules = {r["name"]: r for r in synth.resources("dev", "aws_cloudwatch_event_rule").values()}
    pattern = json.loads(rules["odins-ravne-dev-on-manifest"]["event_pattern"])
    assert pattern["detail"]["object"]["key"] == [{"prefix": "manifests/"}]
    (target,) = [
        t for t in synth.resources("dev", "aws_cloudwatch_event_target").values() if "on-manifest" in t["rule"]
    ]
    assert "aws_sfn_state_machine" in target["arn"]
    assert target["input_transformer"]["input_template"] == '{"manifest": "s3://<bucket>/<key>"}'


def test_functions(synth: SynthResult) -> None:
    functions = {
        f["function_name"].removeprefix("odins-ravne-dev-"): f
        for f in synth.resources("dev", "aws_lambda_function").values()
    }
    assert set(functions) == {"guard-budget", "weather-enrichment", "write-parquet", "budget-shutdown"}
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
    assert len(configs) == 4 and all(
        "aws_sqs_queue" in c["destination_config"]["on_failure"]["destination"] for c in configs
    )


def test_zip_is_reproducible() -> None:
    first, second = package("write_parquet"), package("write_parquet")
    assert first == second
    expected = base64.b64encode(hashlib.sha256(first).digest()).decode()
    assert source_hash(first) == expected
    import zipfile, io  # noqa: E401, I001

    assert sorted(zipfile.ZipFile(io.BytesIO(first)).namelist()) == ["handler.py", "pipeline_log.py"]


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
    assert len(by_action["lambda:InvokeFunction"]) == 6  # three functions, each with ":*" for versions
    submit = by_action["batch:SubmitJob"]
    # Two queues (GPU stages to normal, the CPU stage to cpu), each with its stages' definitions only.
    queues = [r for r in submit if "aws_batch_job_queue" in r]
    assert sorted(q.split(".")[1].split("_")[1] for q in queues) == ["queue-cpu", "queue-normal"]
    assert sum("arn_prefix" in r for r in submit) == 3
    assert by_action["events:PutRule"] == [
        "arn:aws:events:eu-north-1:111111111111:rule/StepFunctionsGetEventsForBatchJobsRule"
    ]
    (topic,) = by_action["sns:Publish"]
    assert topic.startswith("${aws_sns_topic.alerts_topic_") and topic.endswith(".arn}")
    assert "states:StartExecution" not in by_action
