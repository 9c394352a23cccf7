"""Stacks, backends, provider guards and the offline terraform toolchain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conf import load_profile
from tests.conftest import REPO, SynthResult

# cdktf and the provider binding are imported by the tests that use them: every xdist worker
# imports this module to collect it, and loading the provider assembly costs ~5 CPU seconds.
CLOUD = ("dev", "staging", "prod")


def test_every_environment_and_account_bootstrap(synth: SynthResult) -> None:
    assert sorted(synth.stacks) == [
        "pipeline-dev",
        "pipeline-local",
        "pipeline-prod",
        "pipeline-staging",
        "state-bootstrap-111111111111",
        "state-bootstrap-222222222222",
        "state-bootstrap-333333333333",
    ]


def test_state_keys_unique_and_locked(synth: SynthResult) -> None:
    seen = set()
    for env in CLOUD:
        s3 = synth.pipeline(env)["terraform"]["backend"]["s3"]
        assert s3["key"] == f"odins-ravne/{env}/terraform.tfstate"
        assert s3["encrypt"] is True and s3["use_lockfile"] is True
        assert s3["region"] == "eu-north-1"
        seen.add((s3["bucket"], s3["key"]))
    local = synth.pipeline("local")["terraform"]["backend"]["local"]["path"]
    assert local == "../../../.state/local/terraform.tfstate"
    seen.add(("local", local))
    assert len(seen) == 4


def test_provider_guards_and_tags(synth: SynthResult) -> None:
    for env in (*CLOUD, "local"):
        provider = next(p for p in synth.pipeline(env)["provider"]["aws"] if "alias" not in p)
        tags = provider["default_tags"][0]["tags"]
        assert tags == {
            "CostScope": f"odins-ravne-{env}",
            "Project": "odins-ravne",
            "Environment": env,
            "ManagedBy": "cdktf",
            "CostCenter": "wildlife-research",
        }
        if env == "local":
            assert "allowed_account_ids" not in provider
            # A CreateFunction whose answer and replayed retry were both dropped failed make test
            # (2026-11-29, max_retries 2): retries are safe, the emulator replays the first answer.
            assert provider["max_retries"] == 5 and provider["s3_use_path_style"] is True
        else:
            assert provider["region"] == "eu-north-1"
            account = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}[env]
            assert provider["allowed_account_ids"] == [account]


# The provider's endpoint key of each resource type prefix the stacks use (the AWS provider's
# custom-service-endpoints guide: https://registry.terraform.io/providers/hashicorp/aws/latest/docs/guides/custom-service-endpoints).
ENDPOINT_OF_PREFIX = {
    "aws_athena": "athena", "aws_batch": "batch", "aws_bcmdataexports": "bcmdataexports", "aws_budgets": "budgets",
    "aws_ce": "ce", "aws_cloudwatch_dashboard": "cloudwatch", "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_dynamodb": "dynamodb",
    "aws_cloudwatch_event": "events", "aws_cloudwatch_log": "logs", "aws_ecr": "ecr", "aws_glue": "glue",
    "aws_iam": "iam", "aws_kms": "kms", "aws_lambda": "lambda", "aws_s3": "s3", "aws_sfn": "sfn", "aws_sns": "sns",
    "aws_sqs": "sqs", "aws_ssm": "ssm", "aws_caller_identity": "sts", "aws_xray": "xray",
    **dict.fromkeys(
        ("aws_vpc", "aws_subnet", "aws_route", "aws_security_group", "aws_default_security_group", "aws_eip",
         "aws_nat_gateway", "aws_internet_gateway", "aws_flow_log", "aws_launch_template", "aws_availability_zones"),
        "ec2",
    ),
}  # fmt: skip


def test_local_provider_reaches_only_the_emulator(synth: SynthResult) -> None:
    """Every API the local stack calls points at the profile's emulator: `cdktf deploy pipeline-local`
    (no tflocal, no AWS_ENDPOINT_URL) must never reach AWS."""
    config = synth.pipeline("local")
    endpoint = load_profile("local").emulator_endpoint.rstrip("/").replace("localhost", "127.0.0.1")
    (provider,) = config["provider"]["aws"]
    (endpoints,) = provider["endpoints"]
    assert set(endpoints.values()) == {endpoint}
    types = {*config["resource"], *config.get("data", {})}
    for type_ in sorted(types):
        prefix = max((p for p in ENDPOINT_OF_PREFIX if type_.startswith(p)), key=len, default=None)
        assert prefix, f"{type_}: add its endpoint key to ENDPOINT_OF_PREFIX and modules/provider.py"
        assert ENDPOINT_OF_PREFIX[prefix] in endpoints, f"{type_} calls {ENDPOINT_OF_PREFIX[prefix]}, not set"
    assert "sts" in endpoints and provider["skip_credentials_validation"] is True


def test_provider_pinned(synth: SynthResult) -> None:
    for stack in synth.stacks.values():
        assert stack["terraform"]["required_providers"]["aws"] == {"source": "aws", "version": "5.100.0"}
        # use_lockfile needs 1.10; checkov scans a copy without this key (tools/security_scan.py).
        assert stack["terraform"]["required_version"] == ">= 1.10.0, < 2.0.0"


def test_pipeline_key_rotates(synth: SynthResult) -> None:
    from cdktf import Testing as CdktfTesting
    from cdktf_cdktf_provider_aws.kms_key import KmsKey

    for env in (*CLOUD, "local"):
        assert CdktfTesting.to_have_resource_with_properties(
            synth.stack_json(f"pipeline-{env}"), KmsKey.TF_RESOURCE_TYPE, {"enable_key_rotation": True}
        )
    for key in synth.resources("prod", "aws_kms_key").values():  # the pipeline key and the replica key
        assert key["lifecycle"] == {"prevent_destroy": True}


def test_state_bootstrap_bucket(synth: SynthResult) -> None:
    from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy

    stack = synth.stack("state-bootstrap-333333333333")
    res = stack["resource"]
    buckets = {b["bucket"]: (address, b) for address, b in res["aws_s3_bucket"].items()}
    assert sorted(buckets) == ["odins-ravne-tfstate-333333333333", "odins-ravne-tfstate-333333333333-logs"]
    state_address, bucket = buckets["odins-ravne-tfstate-333333333333"]
    logs_address, logs = buckets["odins-ravne-tfstate-333333333333-logs"]
    assert bucket["lifecycle"] == logs["lifecycle"] == {"prevent_destroy": True}
    assert "force_destroy" not in bucket
    for pab in res["aws_s3_bucket_public_access_block"].values():
        assert all(
            pab[k] is True
            for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        )
    assert all(v["versioning_configuration"]["status"] == "Enabled" for v in res["aws_s3_bucket_versioning"].values())

    def of(type_: str, address: str) -> dict:
        (found,) = [r for r in res[type_].values() if r["bucket"] == f"${{aws_s3_bucket.{address}.id}}"]
        return found

    # State: SSE-KMS with the account's own rotated, undeletable key; access logged to the companion bucket.
    (key_address, key), (alias,) = next(iter(res["aws_kms_key"].items())), res["aws_kms_alias"].values()
    assert len(res["aws_kms_key"]) == 1 and key["enable_key_rotation"] is True
    assert key["lifecycle"] == {"prevent_destroy": True}
    assert alias["name"] == "alias/odins-ravne-tfstate-333333333333"
    default = of("aws_s3_bucket_server_side_encryption_configuration", state_address)["rule"][0]
    assert default["apply_server_side_encryption_by_default"] == {
        "sse_algorithm": "aws:kms",
        "kms_master_key_id": f"${{aws_kms_key.{key_address}.arn}}",
    }
    logging = of("aws_s3_bucket_logging", state_address)
    assert logging["target_bucket"] == f"${{aws_s3_bucket.{logs_address}.bucket}}"
    # Access logs cannot be delivered to SSE-KMS: the log bucket alone uses SSE-S3 and admits log delivery.
    log_default = of("aws_s3_bucket_server_side_encryption_configuration", logs_address)["rule"][0]
    assert log_default["apply_server_side_encryption_by_default"]["sse_algorithm"] == "AES256"
    log_policy = json.loads(of(S3BucketPolicy.TF_RESOURCE_TYPE, logs_address)["policy"])["Statement"]
    delivery = next(s for s in log_policy if s.get("Principal") == {"Service": "logging.s3.amazonaws.com"})
    assert delivery["Condition"]["ArnLike"] == {"aws:SourceArn": "arn:aws:s3:::odins-ravne-tfstate-333333333333"}
    # Uploads naming another key are refused; the backends' alias ARN is admitted beside the key ARN.
    policy = json.loads(of(S3BucketPolicy.TF_RESOURCE_TYPE, state_address)["policy"])["Statement"]
    other_key = next(s for s in policy if s["Sid"] == "DenyUploadsWithOtherKey")
    alias_arn = "arn:aws:kms:eu-north-1:333333333333:alias/odins-ravne-tfstate-333333333333"
    assert other_key["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"] == [
        f"${{aws_kms_key.{key_address}.arn}}",
        alias_arn,
    ]
    for env in ("dev", "staging", "prod"):  # each env's backend names its own account's state key
        backend = synth.pipeline(env)["terraform"]["backend"]["s3"]
        account = backend["bucket"].rsplit("-", 1)[1]
        assert backend["encrypt"] is True
        assert backend["kms_key_id"] == f"arn:aws:kms:eu-north-1:{account}:alias/{backend['bucket']}"
    # CI roles: the plan role may decrypt state, the deploy role encrypt it too; both on this key only.
    for name, role_policy in res["aws_iam_role_policy"].items():
        actions = {
            a
            for s in json.loads(role_policy["policy"])["Statement"]
            if f"${{aws_kms_key.{key_address}.arn}}" in s["Resource"]
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        if "plan" in name:
            assert actions == {"kms:Decrypt", "kms:DescribeKey"}, name
        elif "deploy" in name:
            assert {"kms:Encrypt", "kms:GenerateDataKey*", "kms:Decrypt"} <= actions, name
    assert "local" in stack["terraform"]["backend"]


@pytest.mark.terraform
def test_terraform_validate_every_stack(synth: SynthResult, tmp_path: Path) -> None:
    """Every stack validates; the stacks share one Terraform run, so an error is told by its stack
    (a broken copy of one, validated beside them, is the only one that fails)."""
    broken = tmp_path / "broken-local"
    broken.mkdir()
    config = json.loads(json.dumps(synth.pipeline("local")))
    config["resource"]["aws_sqs_queue_policy"] = {"orphan": {"queue_url": "https://example.invalid/q"}}
    (broken / "cdk.tf.json").write_text(json.dumps(config))
    dirs = [str(synth.outdir / "stacks" / name) for name in synth.stacks]
    proc = subprocess.run(
        [sys.executable, "-m", "tools.tf_validate", *dirs, str(broken)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"terraform validate: {len(dirs)} valid, 1 invalid" in proc.stdout
    [failed] = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert failed.split()[1] == "broken-local" and 'The argument "policy" is required' in failed, failed


@pytest.mark.terraform  # a whole synth or make in a subprocess: make test, not test-unit
def test_lean_loader_output_is_byte_identical(synth: SynthResult, tmp_path: Path) -> None:
    """The full binding import must synthesize exactly what the lean loader did (the session's synth:
    an environment synthesizes byte-identically alone or beside the others). Under ``make test``
    that synth ran cdktf.json's app command, ``python -O``; this one runs without it, with jsii's
    Python-side type checks: they change no byte either."""
    code = "import cdktf_cdktf_provider_aws; import runpy; runpy.run_path('main.py', run_name='__main__')"
    env = dict(os.environ, CDKTF_OUTDIR=str(tmp_path), SYNTH_ENVS="prod,local")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    full = {p.relative_to(tmp_path): p.read_bytes() for p in sorted(tmp_path.rglob("cdk.tf.json"))}
    bootstrap = f"state-bootstrap-{load_profile('prod').account_id}"
    assert {p.parts[1] for p in full} == {"pipeline-prod", "pipeline-local", bootstrap}
    for path, content in full.items():
        assert content == (synth.outdir / path).read_bytes(), path


@pytest.mark.terraform  # a whole synth or make in a subprocess: make test, not test-unit
def test_lean_loader_is_active_for_the_app() -> None:
    """The app, built as ``main.py`` builds it, loads a few dozen binding submodules, not ~2,100. Prod
    alone is enough (its pipeline and state-bootstrap stacks): every binding import is at the top of
    a module, so the other envs load nothing more (a synth costs ~2 CPU s per env)."""
    code = (
        "import sys, main; main.build_app(['prod']); "
        "print(sum(m.startswith('cdktf_cdktf_provider_aws.') for m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = int(proc.stdout.strip().splitlines()[-1])
    assert 1 < loaded < 150, f"{loaded} binding submodules loaded; the lean loader is bypassed"
    nested = [
        f"{path.relative_to(REPO)}:{number}"
        for path in [REPO / "main.py", *(REPO / "stacks").glob("*.py"), *(REPO / "modules").glob("*.py")]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.startswith((" ", "\t")) and line.lstrip().startswith(("from cdktf_cdktf_provider_aws", "import cdktf_"))
    ]
    assert nested == [], f"binding imports inside functions escape this prod-only check: {nested}"
