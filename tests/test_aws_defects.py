"""Issue 26, round two: defects moto accepts and AWS does not, checked on the synthesized stacks.

Each test names the AWS (or provider) rule it enforces; docs/aws-contract.md, "Defects fixed
(issue 26 round two)", lists them with their documentation pages.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import SynthResult

CLOUD = ("dev", "staging", "prod")
ENVS = ("local", *CLOUD)


def dashboard_widgets(synth: SynthResult, env: str) -> list[dict]:
    dashboard = next(iter(synth.resources(env, "aws_cloudwatch_dashboard").values()))
    return json.loads(dashboard["dashboard_body"])["widgets"]


@pytest.mark.parametrize("env", ENVS)
def test_dashboard_metrics_entries_are_arrays(synth: SynthResult, env: str) -> None:
    """Dashboard body structure: every entry of a widget's ``metrics`` is an array, a math expression
    too (``[{"expression": ..., "id": ...}]``); PutDashboard rejects a bare object.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
    """
    bare = [
        (widget["properties"].get("title"), entry)
        for widget in dashboard_widgets(synth, env)
        if widget["type"] == "metric"
        for entry in widget["properties"].get("metrics", [])
        if not isinstance(entry, list)
    ]
    assert bare == []
    expressions = [
        entry[0]
        for widget in dashboard_widgets(synth, env)
        for entry in widget["properties"].get("metrics", [])
        if isinstance(entry[0], dict)
    ]
    assert expressions and all({"expression", "id"} <= set(e) for e in expressions)


@pytest.mark.parametrize("env", ENVS)
def test_compute_environments_wait_for_their_roles(synth: SynthResult, env: str) -> None:
    """A compute environment created before its instance role holds its policy comes up INVALID; the
    stack must order it after the attachments (Terraform sees no reference to them otherwise)."""
    attachments = synth.resources(env, "aws_iam_role_policy_attachment")
    instance = [
        f"aws_iam_role_policy_attachment.{name}"
        for name, a in attachments.items()
        if "AmazonEC2ContainerServiceforEC2Role" in a["policy_arn"]
    ]
    assert instance
    for name, ce in synth.resources(env, "aws_batch_compute_environment").items():
        depends = ce.get("depends_on", [])
        assert set(instance) <= set(depends), f"{name} depends on {depends}"
        assert any(d.startswith("aws_iam_instance_profile.") for d in depends)


@pytest.mark.parametrize("env", ENVS)
def test_compute_environments_use_the_batch_service_linked_role(synth: SynthResult, env: str) -> None:
    """Infrastructure updates (instance types, bid, tags, launch template) happen in place only with
    AWSServiceRoleForBatch and an updatable allocation strategy; provider 5.100 replaces the
    environment otherwise (isUpdatableComputeEnvironment: BEST_FIT_PROGRESSIVE, SPOT_CAPACITY_OPTIMIZED).
    https://docs.aws.amazon.com/batch/latest/userguide/infrastructure-updates.html
    """
    for name, ce in synth.resources(env, "aws_batch_compute_environment").items():
        assert ce["service_role"].endswith(":role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"), name
        strategy = ce["compute_resources"]["allocation_strategy"]
        assert strategy in {"BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED"}, (name, strategy)
    roles = synth.resources(env, "aws_iam_role").values()
    assert not [r["name"] for r in roles if "batch.amazonaws.com" in r["assume_role_policy"]]


def test_the_batch_service_linked_role_exists_once_per_account(synth: SynthResult) -> None:
    """The cloud envs' role comes from their account's bootstrap stack, the emulator's from its own."""
    for name, stack in synth.stacks.items():
        linked = stack.get("resource", {}).get("aws_iam_service_linked_role", {}).values()
        batch = [r for r in linked if r["aws_service_name"] == "batch.amazonaws.com"]
        expected = 1 if name.startswith("state-bootstrap-") or name == "pipeline-local" else 0
        assert len(batch) == expected, name


@pytest.mark.parametrize("env", CLOUD)
def test_no_function_reserves_concurrency_by_default(synth: SynthResult, env: str) -> None:
    """Lambda keeps 100 of an account's concurrency unreserved; new accounts often have a limit of
    10 or 50, so any reservation fails PutFunctionConcurrency there.
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html
    """
    reserved = {
        f["function_name"]: f["reserved_concurrent_executions"]
        for f in synth.resources(env, "aws_lambda_function").values()
        if f.get("reserved_concurrent_executions", -1) != -1
    }
    assert reserved == {}


@pytest.mark.parametrize("env", CLOUD)
def test_plan_role_decrypts_with_the_pipeline_key_only_through_ssm_and_states(synth: SynthResult, env: str) -> None:
    """A refresh reads the SecureString WithDecryption and describes the CMK-encrypted state machine,
    both kms:Decrypt (ReadOnlyAccess has none); scoped by alias, service and encryption context.
    https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
    """
    accounts = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
    account = accounts[env]
    stack = synth.stack(f"state-bootstrap-{account}")["resource"]
    role = next(n for n, r in stack["aws_iam_role"].items() if r["name"] == f"odins-ravne-{env}-ci-plan")
    policy = next(p for p in stack["aws_iam_role_policy"].values() if p["role"] == f"${{aws_iam_role.{role}.name}}")
    any_key = [f"arn:aws:kms:eu-north-1:{account}:key/*"]  # the state key's grant names its own ARN
    decrypt = [s for s in json.loads(policy["policy"])["Statement"] if s["Resource"] == any_key]
    via = sorted(s["Condition"]["StringEquals"]["kms:ViaService"] for s in decrypt)
    assert via == ["ssm.eu-north-1.amazonaws.com", "states.eu-north-1.amazonaws.com"]
    for s in decrypt:
        assert s["Action"] == ["kms:Decrypt"]
        assert s["Condition"]["ForAnyValue:StringEquals"] == {
            "kms:ResourceAliases": f"alias/odins-ravne-{env}-pipeline"
        }
        (context,) = s["Condition"]["StringLike"].values()
        assert f":{account}:" in context and (f"/odins-ravne/{env}/" in context or f"odins-ravne-{env}-" in context)
    aliases = [a["name"] for a in synth.resources(env, "aws_kms_alias").values()]
    assert f"alias/odins-ravne-{env}-pipeline" in aliases


@pytest.mark.parametrize("env", ENVS)
def test_secrets_never_reach_terraform_state(synth: SynthResult, env: str) -> None:
    """``value`` (even under ignore_changes) is stored in state and refreshed from AWS; the
    write-only ``value_wo`` (provider 5.100, Terraform 1.11) never is."""
    secrets = [p for p in synth.resources(env, "aws_ssm_parameter").values() if p["type"] == "SecureString"]
    assert secrets
    for secret in secrets:
        assert "value" not in secret and secret["value_wo"] and secret["value_wo_version"] >= 1


def lifecycle(synth: SynthResult, env: str, bucket_suffix: str) -> list[dict]:
    buckets = synth.resources(env, "aws_s3_bucket")
    (name,) = [n for n, b in buckets.items() if b["bucket"].endswith(bucket_suffix)]
    (config,) = [
        c
        for c in synth.resources(env, "aws_s3_bucket_lifecycle_configuration").values()
        if c["bucket"] == f"${{aws_s3_bucket.{name}.id}}"
    ]
    return config["rule"]


def noncurrent_days(rules: list[dict]) -> int:
    (days,) = [
        r["noncurrent_version_expiration"][0]["noncurrent_days"]
        for r in rules
        if r.get("noncurrent_version_expiration")
    ]
    return days


def test_replica_keeps_what_a_deletion_removes(synth: SynthResult) -> None:
    """A replica is a backup only if a deletion does not reach it: delete markers are not
    replicated, and the replica keeps old versions longer than the source.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/delete-marker-replication.html
    """
    configs = synth.resources("prod", "aws_s3_bucket_replication_configuration").values()
    assert configs
    for config in configs:
        for rule in config["rule"]:
            assert rule["delete_marker_replication"]["status"] == "Disabled"
    for name in ("raw", "curated"):
        source = noncurrent_days(lifecycle(synth, "prod", f"-{name}-333333333333"))
        replica = noncurrent_days(lifecycle(synth, "prod", f"-{name}-replica-333333333333"))
        assert replica > source, name


@pytest.mark.parametrize("env", ENVS)
def test_manifests_are_never_archived(synth: SynthResult, env: str) -> None:
    """An object in GLACIER cannot be read without a restore (GetObject: InvalidObjectState); a
    re-run reads its manifest, so only images/ goes there.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html
    """
    buckets = synth.resources(env, "aws_s3_bucket").values()
    for suffix in {b["bucket"].split("odins-ravne-" + env, 1)[1] for b in buckets if "-raw-" in b["bucket"]}:
        for rule in lifecycle(synth, env, suffix):
            if any(t.get("storage_class") in {"GLACIER", "DEEP_ARCHIVE"} for t in rule.get("transition", [])):
                assert rule["filter"][0]["prefix"] == "images/", rule


@pytest.mark.parametrize("env", ENVS)
def test_processed_expires(synth: SynthResult, env: str) -> None:
    """processed/ holds each run's intermediate outputs; without an expiration it grows forever."""
    buckets = synth.resources(env, "aws_s3_bucket").values()
    (suffix,) = [b["bucket"].split("odins-ravne-" + env, 1)[1] for b in buckets if "-processed-" in b["bucket"]]
    rules = lifecycle(synth, env, suffix)
    assert [r["expiration"][0]["days"] for r in rules if r.get("expiration")] == [30]


@pytest.mark.parametrize("env", ENVS)
def test_s3_gateway_endpoint_admits_only_this_accounts_buckets_and_ecr_layers(synth: SynthResult, env: str) -> None:
    """Without a policy the gateway endpoint reaches every bucket in the world. This account's
    buckets (aws:ResourceAccount) and ECR's layer bucket, which image pulls read through it.
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html
    """
    (endpoint,) = [e for e in synth.resources(env, "aws_vpc_endpoint").values() if e["service_name"].endswith(".s3")]
    statements = json.loads(endpoint["policy"])["Statement"]
    provider = synth.pipeline(env)["provider"]["aws"][0]
    region = provider["region"]
    accounts = provider.get("allowed_account_ids")
    for s in statements:
        assert s["Effect"] == "Allow"
        if s["Resource"] == "*":
            account = s["Condition"]["StringEquals"]["aws:ResourceAccount"]
            assert accounts is None or [account] == accounts
        else:
            assert s["Resource"] == f"arn:aws:s3:::prod-{region}-starport-layer-bucket/*"
            assert s["Action"] == "s3:GetObject"
    assert len(statements) == 2
