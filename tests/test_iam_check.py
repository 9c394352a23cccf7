"""The IAM call check (``make iam-check``): every AWS call of the code and of AWS on its behalf is
allowed on prod/dev/staging, and the check sees a removed grant, an explicit deny and a new call.

The evaluation is ``tools/iam_eval.py``, AWS's documented logic
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html);
the tests on small configs below check the cases of that page and of the condition pages, and the
reason each denial names.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_ops import iam_calls
from tests.conftest import REPO, SynthResult
from tools.iam_check import Call, Config, evaluate, report

ENVS = ("prod", "dev", "staging", "local")


def stack_config(synth: SynthResult, env: str, mutate=None) -> Config:
    """The env's pipeline stack beside its account's bootstrap stack, optionally changed first."""
    pipeline = copy.deepcopy(synth.pipeline(env))
    if mutate:
        mutate(pipeline)
    accounts = pipeline["provider"]["aws"][0].get("allowed_account_ids", [])
    return Config([pipeline, *(synth.stack(f"state-bootstrap-{a}") for a in accounts)])


def denied(config: Config, root: Path = REPO) -> list[str]:
    verdicts, _ = iam_calls.run_check(config, root=root)
    return [v.line() for v in verdicts if not v.allowed]


def policy_of(config: dict, role_fragment: str) -> tuple[dict, dict]:
    """The inline policy resource of the role whose address contains ``role_fragment``, parsed."""
    body = next(b for n, b in config["resource"]["aws_iam_role_policy"].items() if role_fragment in n)
    return body, json.loads(body["policy"])


def edit_policy(config: dict, role_fragment: str, edit) -> None:
    body, document = policy_of(config, role_fragment)
    edit(document["Statement"])
    body["policy"] = json.dumps(document)


@pytest.mark.parametrize("env", ENVS)
def test_no_call_is_denied_in_any_env(synth: SynthResult, env: str) -> None:
    verdicts, unused = iam_calls.run_check(stack_config(synth, env))
    assert [v.line() for v in verdicts if not v.allowed] == []
    found = {(v.call.principal.rsplit("/", 1)[-1], v.call.action) for v in verdicts}
    # The code's own calls (AST), AWS's calls for a .sync Batch task, a Distributed Map, SSE-KMS
    # reads, Lambda's logs and a service publishing to the encrypted alert topic are all there.
    for expected in [
        (f"odins-ravne-{env}-guard-budget-fn", "budgets:ViewBudget"),
        (f"odins-ravne-{env}-budget-shutdown-fn", "batch:UpdateJobQueue"),
        (f"odins-ravne-{env}-stage0-job", "s3:PutObject"),
        (f"odins-ravne-{env}-stage1-job", "kms:Decrypt"),
        (f"odins-ravne-{env}-pipeline-states", "events:PutRule"),
        (f"odins-ravne-{env}-pipeline-states", "states:StartExecution"),
        (f"odins-ravne-{env}-pipeline-states", "logs:CreateLogDelivery"),
        (f"odins-ravne-{env}-write-parquet-fn", "logs:PutLogEvents"),
        (f"odins-ravne-{env}-batch-instance", "ecr:BatchGetImage"),
        ("budgets.amazonaws.com", "kms:GenerateDataKey"),
        ("sns.amazonaws.com", "lambda:InvokeFunction"),
    ]:
        assert expected in found, expected
    assert any("kms:ReEncrypt*" in line for line in unused), "unused grants are listed for tightening"
    shutdown_unused = [line for line in unused if "budget-shutdown" in line and " batch:" in line]
    assert shutdown_unused == [], "the budget shutdown is granted only the Batch calls it makes"


GUARD = REPO / "lambda_src" / "guard_budget" / "handler.py"


def test_removing_a_grant_is_a_denied_call(synth: SynthResult) -> None:
    """Red: the guard's budgets:ViewBudget grant removed from the synthesized JSON."""

    def drop(config: dict) -> None:
        edit_policy(
            config, "guard-budget", lambda s: s.remove(next(x for x in s if x["Action"] == ["budgets:ViewBudget"]))
        )

    lines = denied(stack_config(synth, "prod", drop))
    call = next(n for n, text in enumerate(GUARD.read_text().splitlines(), 1) if ".describe_budget(" in text)
    assert lines == [
        "DENIED arn:aws:iam::333333333333:role/odins-ravne-prod-guard-budget-fn budgets:ViewBudget "
        "arn:aws:budgets::333333333333:budget/odins-ravne-prod-cost: no identity policy allows it "
        f"(has: inline grants) [odins-ravne-prod-guard-budget: lambda_src/guard_budget/handler.py:{call}]"
    ]


def test_each_function_scope_binds_its_own_names(synth: SynthResult) -> None:
    """Red (review of issue 31): PlanFanOut's ``bucket`` is the processed bucket in ``claim`` and the
    manifest's in ``handler``; read per file, the manifest read was checked against the claims
    prefix and passed with the raw bucket's read grant gone. Per scope it is the step's read of
    raw/manifests, denied without that grant."""

    def drop(statements: list) -> None:
        statements[:] = [s for s in statements if "/manifests/*" not in json.dumps(s.get("Resource"))]

    lines = denied(stack_config(synth, "dev", lambda c: edit_policy(c, "plan-fan-out", drop)))
    read = "lambda_src/plan_fan_out/handler.py"
    assert lines and all(" arn:aws:s3:::odins-ravne-dev-raw-111111111111/manifests/*: " in line for line in lines), (
        lines
    )
    assert {line.split()[2] for line in lines} == {"s3:GetObject", "s3:GetObjectVersion"}
    assert all(read in line for line in lines) and any(line.endswith(" (VersionId)]") for line in lines)


def test_a_read_of_a_version_needs_get_object_version(synth: SynthResult) -> None:
    """Red (review of issue 31): start_run and PlanFanOut read the manifest version the event names
    (GetObject with VersionId), which S3 authorizes as s3:GetObjectVersion
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html): without it, denied."""

    def drop_version(statements: list) -> None:
        for item in statements:
            if "s3:GetObjectVersion" in item["Action"]:
                item["Action"] = [a for a in item["Action"] if a != "s3:GetObjectVersion"]

    lines = denied(stack_config(synth, "dev", lambda c: edit_policy(c, "start-run", drop_version)))
    assert len(lines) == 1 and lines[0].startswith(
        "DENIED arn:aws:iam::111111111111:role/odins-ravne-dev-start-run-fn s3:GetObjectVersion "
        "arn:aws:s3:::odins-ravne-dev-raw-111111111111/manifests/*"
    ), lines


def test_names_resolve_as_python_scopes_them(tmp_path: Path) -> None:
    """A parameter, a later plain assignment or a loop variable hides the module's environment
    name; a class body's names are not its methods'; the last assignment of a name wins."""
    module = tmp_path / "handler.py"
    module.write_text(
        "import os\n"
        "import boto3\n"
        "s3 = boto3.client('s3')\n"
        "bucket = os.environ['RAW_BUCKET']\n"
        "def module_name():\n"
        "    return s3.get_object(Bucket=bucket, Key='k')\n"
        "def parameter(bucket):\n"
        "    return s3.get_object(Bucket=bucket, Key='k')\n"
        "def reassigned():\n"
        "    bucket = os.environ['RAW_BUCKET']\n"
        "    bucket = 'other'\n"
        "    return s3.get_object(Bucket=bucket, Key='k')\n"
        "def looped(names):\n"
        "    for bucket in names:\n"
        "        s3.get_object(Bucket=bucket, Key='k')\n"
        "class Reader:\n"
        "    bucket = os.environ['PROCESSED_BUCKET']\n"
        "    def read(self):\n"
        "        return s3.get_object(Bucket=bucket, Key='k')\n"
        "def last_wins():\n"
        "    where = 'x'\n"
        "    where = os.environ['PROCESSED_BUCKET']\n"
        "    return s3.get_object(Bucket=where, Key='k')\n"
    )
    found = iam_calls.scan([module])
    assert [f.bucket_env for f in found] == ["RAW_BUCKET", None, None, None, "RAW_BUCKET", "PROCESSED_BUCKET"]


def test_a_version_passed_through_a_dict_is_found(tmp_path: Path) -> None:
    module = tmp_path / "handler.py"
    module.write_text(
        "import boto3\n"
        "s3 = boto3.client('s3')\n"
        "def read(version):\n"
        "    options = {'VersionId': version} if version else {}\n"
        "    return s3.get_object(Bucket='b', Key='k', **options)\n"
        "def plain():\n"
        "    options = {'Range': 'bytes=0-1'}\n"
        "    return s3.get_object(Bucket='b', Key='k', **options)\n"
    )
    assert [f.versioned for f in iam_calls.scan([module])] == [True, False]


def test_the_trigger_keeps_undelivered_events_only_with_the_queue_policy(synth: SynthResult) -> None:
    """Red: without the dead-letter queue's policy EventBridge may not send it the events it could
    not deliver (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html)."""

    def drop(config: dict) -> None:
        del config["resource"]["aws_sqs_queue_policy"]

    lines = denied(stack_config(synth, "dev", drop))
    assert len(lines) == 1 and lines[0].startswith(
        "DENIED events.amazonaws.com sqs:SendMessage arn:aws:sqs:eu-north-1:111111111111:odins-ravne-dev-start-run-dlq"
    ), lines


def test_a_listing_is_checked_against_the_listed_prefix(synth: SynthResult) -> None:
    """Red: the weather role's ListBucket narrowed to another prefix. Its listing of the shards
    (ListFailedShards' mode) is s3:ListBucket on the bucket with the listed prefix as s3:prefix
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html): denied."""

    def narrow(statements: list) -> None:
        for item in statements:
            if item["Action"] == ["s3:ListBucket"] and "stage2/*" in json.dumps(item.get("Condition", {})):
                item["Condition"]["StringLike"]["s3:prefix"] = ["weather/*"]

    lines = denied(stack_config(synth, "dev", lambda c: edit_policy(c, "weather-enrichment", narrow)))
    shared = REPO / "lambda_src" / "_shared" / "shards.py"
    call = next(n for n, text in enumerate(shared.read_text().splitlines(), 1) if '"list_objects_v2"' in text)
    assert len(lines) == 1 and lines[0].startswith(
        "DENIED arn:aws:iam::111111111111:role/odins-ravne-dev-weather-enrichment-fn s3:ListBucket arn:aws:s3:::"
    )
    assert lines[0].endswith(f"[odins-ravne-dev-weather-enrichment: lambda_src/_shared/shards.py:{call}]")


def test_removing_the_sync_rule_grant_denies_each_batch_state(synth: SynthResult) -> None:
    """Red: what Step Functions itself calls for ``batch:submitJob.sync`` (the managed rule)."""

    def drop(config: dict) -> None:
        edit_policy(config, "workflow_role", lambda s: s.remove(next(x for x in s if "events:PutRule" in x["Action"])))

    lines = denied(stack_config(synth, "dev", drop))
    assert len(lines) == 9  # PutRule, PutTargets, DescribeRule for Stage0, Stage1 and Stage2
    assert all("StepFunctionsGetEventsForBatchJobsRule: no identity policy allows it" in line for line in lines)


def test_an_explicit_deny_in_the_role_wins(synth: SynthResult) -> None:
    deny = {"Sid": "NoCurated", "Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::*curated*/*"}
    lines = denied(stack_config(synth, "staging", lambda c: edit_policy(c, "write-parquet", lambda s: s.append(deny))))
    assert len(lines) == 1
    assert "odins-ravne-staging-write-parquet-fn s3:PutObject" in lines[0]
    assert "explicit deny in inline grants (Sid NoCurated)" in lines[0]


def test_an_explicit_deny_in_the_bucket_policy_wins(synth: SynthResult) -> None:
    def deny_stage_writes(config: dict) -> None:
        body = next(b for n, b in config["resource"]["aws_s3_bucket_policy"].items() if "processed" in n)
        document = json.loads(body["policy"])
        document["Statement"].append(
            {"Sid": "Frozen", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "*"}
        )
        body["policy"] = json.dumps(document)

    lines = denied(stack_config(synth, "prod", deny_stage_writes))
    writers = {line.split()[1].rsplit("/", 1)[-1] for line in lines}
    assert writers == {
        f"odins-ravne-prod-{w}"
        for w in ("stage0-job", "stage1-job", "stage2-job", "weather-enrichment-fn", "plan-fan-out-fn")
    }
    assert all(
        "explicit deny in bucket policy data-lake_processed_policy" in line and "(Sid Frozen)" in line for line in lines
    )


def test_a_new_call_in_the_code_is_found_and_checked(synth: SynthResult, tmp_path: Path) -> None:
    """No list to update: a delete the write-parquet role was never granted shows up denied."""
    for folder in ("lambda_src", "images"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    handler = tmp_path / "lambda_src" / "write_parquet" / "handler.py"
    text = handler.read_text()
    call = "            s3.put_object(Bucket=self.bucket, Key=key,"
    assert call in text
    handler.write_text(text.replace(call, "            s3.delete_object(Bucket=self.bucket, Key=key)\n" + call))
    lines = denied(stack_config(synth, "prod"), root=tmp_path)
    assert len(lines) == 1
    assert (
        "odins-ravne-prod-write-parquet-fn s3:DeleteObject arn:aws:s3:::odins-ravne-prod-curated-333333333333"
        in lines[0]
    )
    assert "lambda_src/write_parquet/handler.py" in lines[0]


# AWS's evaluation logic on minimal configs (the page cited in the module docstring).
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"


def minimal(
    identity: list[dict],
    *,
    boundary: list[dict] | None = None,
    key_policy: list[dict] | None = None,
    bucket_policy: list[dict] | None = None,
) -> Config:
    role = {"name": "app", "assume_role_policy": "{}"}
    resource: dict = {
        "aws_iam_role": {"app": role},
        "aws_iam_role_policy": {
            "p": {"name": "p", "role": "${aws_iam_role.app.name}", "policy": json.dumps({"Statement": identity})}
        },
    }
    if boundary is not None:
        role["permissions_boundary"] = "${aws_iam_policy.cap.arn}"
        resource["aws_iam_policy"] = {"cap": {"name": "cap", "policy": json.dumps({"Statement": boundary})}}
    if key_policy is not None:
        resource["aws_kms_key"] = {"k": {"policy": json.dumps({"Statement": key_policy})}}
    if bucket_policy is not None:
        resource["aws_s3_bucket"] = {"b": {"bucket": "b"}}
        resource["aws_s3_bucket_policy"] = {
            "b": {"bucket": "${aws_s3_bucket.b.id}", "policy": json.dumps({"Statement": bucket_policy})}
        }
    return Config(
        [{"provider": {"aws": [{"region": "eu-west-1", "allowed_account_ids": [ACCOUNT]}]}, "resource": resource}]
    )


def verdict(config: Config, action: str, resource: str) -> str:
    (one,) = evaluate(config, [Call.of(ROLE, action, resource, "test")])
    return "allowed" if one.allowed else one.why


def allow(action: str, resource: str = "*") -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def test_boundary_caps_the_identity_policy() -> None:
    """The page's boundary example: identity allows s3 and ec2, the boundary only s3."""
    config = minimal([allow("s3:*"), allow("ec2:*")], boundary=[allow("s3:*")])
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::b/k") == "allowed"
    assert (
        verdict(config, "ec2:RunInstances", "*")
        == "boundary arn:aws:iam::111122223333:policy/cap allows no such action"
    )


def test_explicit_deny_overrides_allow_and_implicit_deny_is_the_default() -> None:
    config = minimal(
        [allow("s3:*"), {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]
    )
    assert verdict(config, "s3:DeleteObject", "arn:aws:s3:::b/k") == "explicit deny in inline p (Sid NoDelete)"
    assert verdict(config, "sqs:SendMessage", "arn:aws:sqs:eu-west-1:111122223333:q").startswith(
        "no identity policy allows it"
    )


def test_a_key_policy_must_allow_the_role_or_the_account() -> None:
    """KMS: an identity policy alone is not enough; the key policy must allow the role or delegate
    to the account (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html)."""
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/k"
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}
    other = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    assert verdict(minimal([allow("kms:Decrypt")], key_policy=[root]), "kms:Decrypt", key) == "allowed"
    assert verdict(minimal([], key_policy=[root]), "kms:Decrypt", key).startswith("no identity policy allows it")
    assert verdict(minimal([allow("kms:Decrypt")], key_policy=[other]), "kms:Decrypt", key) == (
        "key policy k allows neither the role nor the account root"
    )


def test_report_prints_one_line_per_denied_call_and_the_unused_grants(capsys) -> None:
    config = minimal([allow("s3:GetObject", "arn:aws:s3:::b/*"), allow("sqs:SendMessage", "*")])
    verdicts = evaluate(
        config,
        [
            Call.of(ROLE, "s3:GetObject", "arn:aws:s3:::b/k", "here"),
            Call.of(ROLE, "s3:PutObject", "arn:aws:s3:::b/k", "there"),
        ],
    )
    from tools.iam_check import unused_grants

    assert report(verdicts, unused_grants(config, verdicts)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"DENIED {ROLE} s3:PutObject arn:aws:s3:::b/k: no identity policy allows it")
    assert out[1] == f"UNUSED {ROLE} sqs:SendMessage * (inline p)"
    assert out[2] == "2 calls checked, 1 denied, 1 grants no call uses"


def test_cli_names_a_missing_stack_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_ops.iam_calls", str(tmp_path), "prod"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path}/pipeline-prod/cdk.tf.json not found; run `make synth` first"
    ]


def test_a_service_the_key_policy_does_not_name_is_denied(synth: SynthResult) -> None:
    """Red: without the key policy's CloudWatch Logs statement, the service cannot use the key of
    any encrypted log group (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""

    def drop_logs(config: dict) -> None:
        key = next(b for n, b in config["resource"]["aws_kms_key"].items() if n.startswith("pipeline-key"))
        document = json.loads(key["policy"])
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != "CloudWatchLogsOfThisAccount"]
        key["policy"] = json.dumps(document)

    lines = denied(stack_config(synth, "dev", drop_logs))
    groups = {line.split("[log group ")[1].split(" ")[0] for line in lines}
    assert len(groups) == len(synth.resources("dev", "aws_cloudwatch_log_group"))
    assert all(line.startswith("DENIED logs.eu-north-1.amazonaws.com kms:") for line in lines)
    assert all(
        "key policy pipeline-key" in line and "does not allow logs.eu-north-1.amazonaws.com" in line for line in lines
    )


def test_the_generic_engine_imports_no_pipeline_code() -> None:
    """``tools/`` works on any Terraform JSON: the pipeline's facts reach it as calls and values."""
    import ast

    for name in ("iam_check.py", "iam_implied.py"):
        tree = ast.parse((REPO / "tools" / name).read_text())
        imported = {
            (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not {m for m in imported if m.split(".")[0] in ("pipeline_ops", "modules", "conf", "stacks")}, name


def test_the_bucket_and_prefix_the_code_names_are_the_ones_checked(synth: SynthResult, tmp_path: Path) -> None:
    """weather_enrichment writing its output under its input's prefix (a mix-up) is denied: the
    bucket and the key's prefix come from the code's own ``os.environ`` reads, not from the spec."""
    for folder in ("lambda_src", "images"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    handler = tmp_path / "lambda_src" / "weather_enrichment" / "handler.py"
    target = 'target = os.environ["OUTPUT_PREFIX"]'
    assert target in handler.read_text()
    handler.write_text(handler.read_text().replace(target, 'target = os.environ["INPUT_PREFIX"]'))
    lines = denied(stack_config(synth, "dev"), root=tmp_path)
    assert len(lines) == 1, lines
    assert (
        "odins-ravne-dev-weather-enrichment-fn s3:PutObject "
        "arn:aws:s3:::odins-ravne-dev-processed-111111111111/stage2/*: "
        "no identity policy allows it"
    ) in lines[0]


def test_condition_keys_of_the_stack_policies_are_evaluated(synth: SynthResult) -> None:
    """The raw bucket's TLS-only statement denies the same read over HTTP (``aws:SecureTransport``),
    and the alert topic's statement denies a publish by a role it does not list (``aws:PrincipalArn``)."""
    config = stack_config(synth, "prod")
    role = "arn:aws:iam::333333333333:role/odins-ravne-prod-plan-fan-out-fn"
    manifest = "arn:aws:s3:::odins-ravne-prod-raw-333333333333/manifests/m.json"
    https, http = evaluate(
        config,
        [
            Call.of(role, "s3:GetObject", manifest, "test"),
            Call.of(role, "s3:GetObject", manifest, "test", **{"aws:SecureTransport": "false"}),
        ],
    )
    assert https.allowed
    assert http.why == "explicit deny in bucket policy data-lake_raw_policy_67952A34 (Sid DenyInsecureTransport)"
    topic = "arn:aws:sns:eu-north-1:333333333333:odins-ravne-prod-alerts"
    (publish,) = evaluate(config, [Call.of(role, "sns:Publish", topic, "test")])
    assert not publish.allowed
    assert "(Sid OnlyGrantedRolesAmongPrincipals)" in publish.why


def test_an_aws_managed_policy_counts_by_name(synth: SynthResult) -> None:
    """Red: without AmazonEC2ContainerServiceforEC2Role (attached by ARN) the ECS agent on the Batch
    instances cannot join the cluster; the instance role's own inline grants still pull images."""

    def detach(config: dict) -> None:
        attachments = config["resource"]["aws_iam_role_policy_attachment"]
        (name,) = [
            n for n, b in attachments.items() if b["policy_arn"].endswith("/AmazonEC2ContainerServiceforEC2Role")
        ]
        del attachments[name]

    lines = denied(stack_config(synth, "staging", detach))
    assert lines and all(" ecs:" in line and "odins-ravne-staging-batch-instance" in line for line in lines)
    assert len(lines) == 8


@pytest.mark.parametrize(
    ("service", "operation", "action"),
    [
        ("cloudwatch", "PutMetricData", "cloudwatch:PutMetricData"),  # signs as "monitoring"
        ("stepfunctions", "StartExecution", "states:StartExecution"),
        ("sesv2", "SendEmail", "ses:SendEmail"),
        ("ses", "SendEmail", "ses:SendEmail"),  # endpoint prefix "email"
        ("opensearch", "CreateDomain", "es:CreateDomain"),
        ("iot-data", "Publish", "iot:Publish"),
        ("s3", "HeadObject", "s3:GetObject"),
        ("logs", "PutLogEvents", "logs:PutLogEvents"),
    ],
)
def test_the_iam_prefix_is_the_services_iam_namespace_not_its_signing_name(
    service: str, operation: str, action: str
) -> None:
    """https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html lists
    PutMetricData as cloudwatch:PutMetricData; botocore signs CloudWatch requests as "monitoring"."""
    from tools.iam_check import sdk_action

    assert sdk_action(service, operation) == action


def test_an_operation_without_an_iam_action_is_an_error() -> None:
    from tools.iam_check import IamCheckError, sdk_action

    with pytest.raises(IamCheckError, match=r"cloudwatch\.NoSuchOperation: no IAM action under monitoring, cloudwatch"):
        sdk_action("cloudwatch", "NoSuchOperation")


# The review of issue 26 (item 11): calls the scan missed silently. Each is now an error naming
# file:line, or (a chained literal call) found.
UNFOLLOWED = {
    "variable-service": ('SERVICE = "s3"\nclient = boto3.client(SERVICE)\n', "names its service in a variable"),
    "getattr": ('sns = boto3.client("sns")\ngetattr(sns, "publish")(TopicArn="t", Message="m")\n', "getattr(sns"),
    "dict": ('clients = {"s3": boto3.client("s3")}\nclients["s3"].delete_object(Bucket="b", Key="k")\n', "held in"),
    "list": ('s3 = boto3.client("s3")\npool = [s3]\npool[0].delete_object(Bucket="b", Key="k")\n', "held in [s3]"),
    "resource": ('bucket = boto3.resource("s3").Bucket("b")\n', "boto3.resource is not scanned"),
    "from-import": ('from boto3 import client\nclient("s3").delete_object(Bucket="b", Key="k")\n', "from boto3 import"),
    "argument": ('handle(boto3.client("s3"))\n', "held in handle("),
    # what the first merge of issues 27 and 30 wrote, found then by no call check: an operation
    # handed to a thread pool, a client kept on an object, a client stored in an attribute
    "passed-on": (
        's3 = boto3.client("s3")\npool.submit(s3.put_object, Bucket="b", Key="k")\n',
        "s3.put_object is passed on, not called",
    ),
    "attribute": ('s3 = boto3.client("s3")\nself.s3.put_object(Bucket="b", Key="k")\n', "reaches a client through"),
    "stored": ('s3 = boto3.client("s3")\nwriter.s3 = s3\n', "client s3 stored in writer.s3"),
}


@pytest.mark.parametrize("case", sorted(UNFOLLOWED))
def test_the_call_scan_fails_closed_on_what_it_cannot_follow(case: str, tmp_path: Path) -> None:
    code, expected = UNFOLLOWED[case]
    module = tmp_path / "handler.py"
    module.write_text("import boto3\n" + code)
    with pytest.raises(iam_calls.IamCheckError) as raised:
        iam_calls.scan([module])
    assert f"{module}:" in str(raised.value) and expected in str(raised.value), str(raised.value)


def test_a_chained_client_call_is_found(tmp_path: Path) -> None:
    module = tmp_path / "handler.py"
    module.write_text('import boto3\n\nboto3.client("s3").delete_object(Bucket="b", Key="k")\n')
    (found,) = iam_calls.scan([module])
    assert (found.service, found.operation, found.where) == ("s3", "DeleteObject", f"{module}:3")


# The evaluator's four unsound cases of the review of issue 26 (item 10), each reproduced on a
# minimal config, then AWS's documented examples of the evaluation and condition logic.


def test_resources_match_case_sensitively_and_actions_do_not() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html: ARNs are
    case-sensitive; https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html:
    action names are not."""
    config = minimal([allow("S3:getobject", "arn:aws:s3:::Photos/*")])
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::Photos/k") == "allowed"
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::photos/k").startswith("no identity policy allows it")


def test_a_negated_operator_on_an_absent_key_matches() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html:
    with a negated operator (StringNotLike, ...) a key the request lacks matches, so this Deny applies."""
    deny = {
        "Sid": "OnlyTeamA",
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"StringNotLike": {"aws:PrincipalTag/team": "a-*"}},
    }
    config = minimal([allow("s3:*"), deny])
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::b/k") == "explicit deny in inline p (Sid OnlyTeamA)"
    tagged = Call.of(ROLE, "s3:GetObject", "arn:aws:s3:::b/k", "test", **{"aws:PrincipalTag/team": "a-1"})
    assert evaluate(config, [tagged])[0].allowed


def test_the_boundary_caps_a_bucket_policy_that_names_the_role() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html: a resource policy
    naming the role ARN allows without an identity policy, but the role's boundary still limits it; one
    naming the account only delegates to the identity policies
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)."""
    to_role = [
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    ]
    assert verdict(minimal([], bucket_policy=to_role), "s3:GetObject", "arn:aws:s3:::b/k") == "allowed"
    capped = minimal([], bucket_policy=to_role, boundary=[allow("sqs:*")])
    assert verdict(capped, "s3:GetObject", "arn:aws:s3:::b/k") == (
        "boundary arn:aws:iam::111122223333:policy/cap allows no such action"
    )
    to_account = [{**to_role[0], "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]
    assert verdict(minimal([], bucket_policy=to_account), "s3:GetObject", "arn:aws:s3:::b/k").startswith(
        "no identity policy allows it"
    )


def test_regex_characters_in_an_arn_are_literal() -> None:
    """Only ``*`` and ``?`` are wildcards: ``+`` and ``.`` match themselves."""
    config = minimal([allow("s3:GetObject", "arn:aws:s3:::b/a+b.c/*")])
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::b/a+b.c/k") == "allowed"
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::b/aab.c/k").startswith("no identity policy")
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::b/a+bxc/k").startswith("no identity policy")


def test_not_action_and_not_resource() -> None:
    """The NotAction example (allow everything but IAM) of
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html and a
    NotResource deny (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html)."""
    config = minimal(
        [
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "NotResource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]},
        ]
    )
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::b/k") == "allowed"
    assert verdict(config, "iam:CreateUser", "*").startswith("no identity policy allows it")
    assert verdict(config, "s3:GetObject", "arn:aws:s3:::other/k") == "explicit deny in inline p"


def test_condition_operators_as_documented() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
    (IfExists, Null, Bool, Arn*, IpAddress) and
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
    (ForAnyValue fails and ForAllValues holds on an absent key); keys are case-insensitive, values of one
    key are ORed, keys and operators ANDed
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html)."""
    from tools.iam_eval import condition_holds

    assert condition_holds({"StringEqualsIfExists": {"ec2:InstanceType": ["t2.micro"]}}, {})
    assert not condition_holds({"StringEquals": {"ec2:InstanceType": ["t2.micro"]}}, {})
    assert condition_holds(
        {"StringEquals": {"EC2:instancetype": ["t2.small", "t2.micro"]}}, {"ec2:InstanceType": "t2.micro"}
    )
    assert not condition_holds(
        {"StringEquals": {"ec2:InstanceType": "t2.micro", "aws:RequestedRegion": "eu-west-1"}},
        {"ec2:InstanceType": "t2.micro", "aws:RequestedRegion": "us-east-1"},
    )
    assert not condition_holds({"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}, {})
    assert condition_holds({"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}, {})
    assert not condition_holds({"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}, {"aws:TagKeys": ["env", "x"]})
    assert condition_holds({"ForAnyValue:StringLike": {"aws:TagKeys": ["e*"]}}, {"aws:TagKeys": ["x", "env"]})
    assert condition_holds({"Null": {"aws:TokenIssueTime": "true"}}, {})
    assert not condition_holds({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "2026-12-06T00:00:00Z"})
    assert condition_holds({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "false"})
    assert not condition_holds({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"})
    arn = "arn:aws:sns:eu-west-1:111122223333:topic"
    assert condition_holds({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:111122223333:*"}}, {"aws:SourceArn": arn})
    assert not condition_holds({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:444455556666:*"}}, {"aws:SourceArn": arn})
    assert condition_holds({"ArnNotEquals": {"aws:SourceArn": arn}}, {})
    assert condition_holds({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.7"})
    assert condition_holds({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "198.51.100.1"})
    assert condition_holds({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "7"})
    assert condition_holds(
        {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}, {"aws:CurrentTime": "2026-12-06T00:00:00Z"}
    )
    assert condition_holds(
        {"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, {"s3:prefix": "home/ann/x", "aws:username": "ann"}
    )
    assert not condition_holds({"StringLike": {"s3:prefix": "home/${aws:username}/*"}}, {"s3:prefix": "home/ann/x"})


def test_an_unknown_condition_operator_is_an_error_not_a_guess() -> None:
    from tools.iam_check import IamCheckError

    config = minimal([{**allow("s3:*"), "Condition": {"StringSortOf": {"aws:SourceIp": "x"}}}])
    with pytest.raises(IamCheckError, match="StringSortOf"):
        verdict(config, "s3:GetObject", "arn:aws:s3:::b/k")


def test_not_principal_and_service_principals_in_a_resource_policy() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html: a
    Deny with NotPrincipal applies to every principal it does not name."""
    from tools.iam_eval import principal_match

    deny_others = {"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "s3:*", "Resource": "*"}
    assert principal_match(deny_others, ROLE, ACCOUNT) is None
    assert principal_match(deny_others, f"arn:aws:iam::{ACCOUNT}:role/other", ACCOUNT) == "direct"
    service = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage"}
    assert principal_match(service, "sns.amazonaws.com", ACCOUNT) == "direct"
    assert principal_match(service, "events.amazonaws.com", ACCOUNT) is None
    assert principal_match({"Principal": {"AWS": ACCOUNT}}, ROLE, ACCOUNT) == "account"
    assert principal_match({"Principal": {"AWS": ACCOUNT}}, "arn:aws:iam::444455556666:role/x", ACCOUNT) is None
