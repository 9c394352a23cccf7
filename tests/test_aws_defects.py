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
    environment otherwise (isUpdatableComputeEnvironment: BEST_FIT_PROGRESSIVE, SPOT_CAPACITY_OPTIMIZED;
    isServiceLinkedRole("") is true). No service_role: Batch uses the account's AWSServiceRoleForBatch
    and creates it when missing.
    https://docs.aws.amazon.com/batch/latest/userguide/infrastructure-updates.html
    https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateComputeEnvironment.html
    """
    for name, ce in synth.resources(env, "aws_batch_compute_environment").items():
        assert not ce.get("service_role"), name
        strategy = ce["compute_resources"]["allocation_strategy"]
        assert strategy in {"BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED"}, (name, strategy)
    roles = synth.resources(env, "aws_iam_role").values()
    assert not [r["name"] for r in roles if "batch.amazonaws.com" in r["assume_role_policy"]]


def test_no_stack_creates_the_batch_service_linked_role(synth: SynthResult) -> None:
    """An account that ever used Batch already has AWSServiceRoleForBatch: CreateServiceLinkedRole
    fails there (InvalidInput: role name has been taken), so no stack creates it; Batch does.
    https://docs.aws.amazon.com/batch/latest/userguide/using-service-linked-roles.html
    """
    for name, stack in synth.stacks.items():
        assert not stack.get("resource", {}).get("aws_iam_service_linked_role"), name


@pytest.mark.parametrize("env", CLOUD)
def test_deploy_role_may_have_batch_create_its_service_linked_role(synth: SynthResult, env: str) -> None:
    """Batch creates AWSServiceRoleForBatch as the caller of CreateComputeEnvironment: that caller
    needs iam:CreateServiceLinkedRole for batch.amazonaws.com (no iam:PassRole: no role is passed).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/using-service-linked-roles.html#service-linked-role-permissions
    """
    accounts = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
    stack = synth.stack(f"state-bootstrap-{accounts[env]}")["resource"]
    role = next(n for n, r in stack["aws_iam_role"].items() if r["name"] == f"odins-ravne-{env}-ci-deploy")
    statements = [
        s
        for p in stack["aws_iam_role_policy"].values()
        if p["role"] == f"${{aws_iam_role.{role}.name}}"
        for s in json.loads(p["policy"])["Statement"]
        if "iam:CreateServiceLinkedRole" in s["Action"]
    ]
    (linked,) = statements
    assert "batch.amazonaws.com" in linked["Condition"]["StringLike"]["iam:AWSServiceName"]


@pytest.mark.parametrize("env", ENVS)
def test_compute_environments_pin_their_launch_template_version(synth: SynthResult, env: str) -> None:
    """``$Latest`` is resolved only at an infrastructure update, and a new template version changes
    nothing Terraform compares: the environment would keep the old one. The template's
    latest_version makes a new version an in-place update.
    https://docs.aws.amazon.com/batch/latest/APIReference/API_LaunchTemplateSpecification.html
    """
    templates = synth.resources(env, "aws_launch_template")
    for name, ce in synth.resources(env, "aws_batch_compute_environment").items():
        spec = ce["compute_resources"]["launch_template"]
        template = spec["launch_template_id"].removeprefix("${aws_launch_template.").removesuffix(".id}")
        assert template in templates, name
        assert spec["version"] == f"${{aws_launch_template.{template}.latest_version}}", name


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


def plan_role_statements(synth: SynthResult, env: str) -> tuple[str, list[dict]]:
    accounts = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
    account = accounts[env]
    stack = synth.stack(f"state-bootstrap-{account}")["resource"]
    role = next(n for n, r in stack["aws_iam_role"].items() if r["name"] == f"odins-ravne-{env}-ci-plan")
    policy = next(p for p in stack["aws_iam_role_policy"].values() if p["role"] == f"${{aws_iam_role.{role}.name}}")
    return account, json.loads(policy["policy"])["Statement"]


@pytest.mark.parametrize("env", CLOUD)
def test_plan_role_decrypts_with_the_pipeline_key_only_through_states_and_lambda(synth: SynthResult, env: str) -> None:
    """A refresh describes the CMK-encrypted state machine and reads the functions' CMK-encrypted
    environments (ReadOnlyAccess has no kms:Decrypt); scoped by alias, service and encryption context.
    Pull requests assume this role, so it must never decrypt an SSM parameter (the weather API key).
    https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
    https://docs.aws.amazon.com/step-functions/latest/dg/encryption-at-rest.html
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html
    """
    account, statements = plan_role_statements(synth, env)
    decrypt = [s for s in statements if "kms:Decrypt" in s["Action"] or "kms:*" in s["Action"]]
    any_key = [f"arn:aws:kms:eu-north-1:{account}:key/*"]  # the state key's grant names its own ARN
    via = sorted(s["Condition"]["StringEquals"]["kms:ViaService"] for s in decrypt if s["Resource"] == any_key)
    assert via == ["lambda.eu-north-1.amazonaws.com", "states.eu-north-1.amazonaws.com"]
    for s in decrypt:
        condition = s.get("Condition", {})
        assert not condition.get("StringEquals", {}).get("kms:ViaService", "").startswith("ssm."), s
    for s in decrypt:
        if s["Resource"] == any_key:
            assert s["Action"] == ["kms:Decrypt"]
            assert s["Condition"]["ForAnyValue:StringEquals"] == {
                "kms:ResourceAliases": f"alias/odins-ravne-{env}-pipeline"
            }
            (context,) = s["Condition"]["StringLike"].values()
            assert f":{account}:" in context and f"odins-ravne-{env}-" in context
    aliases = [a["name"] for a in synth.resources(env, "aws_kms_alias").values()]
    assert f"alias/odins-ravne-{env}-pipeline" in aliases


@pytest.mark.parametrize("env", ENVS)
def test_no_secure_string_is_in_the_configuration(synth: SynthResult, env: str) -> None:
    """Terraform never holds a SecureString: ``value`` lands in state, and ``value_wo`` breaks every
    later update (provider 5.100 resourceParameterUpdate sends the empty ``value``). The weather API
    key is set with ``make weather-key``; the weather function gets its name and may read only it.
    https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-securestring.html
    """
    params = synth.resources(env, "aws_ssm_parameter").values()
    assert params and not [p["name"] for p in params if p["type"] == "SecureString" or "value_wo" in p]
    functions = synth.resources(env, "aws_lambda_function").values()
    (weather,) = [f for f in functions if f["function_name"].endswith("weather-enrichment")]
    name = weather["environment"]["variables"]["WEATHER_API_KEY_PARAMETER"]
    assert name == f"/odins-ravne/{env}/secrets/weather-api-key"
    grants = json.dumps(synth.resources(env, "aws_iam_role_policy"))
    assert f"parameter{name}" in grants


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
def test_nothing_is_archived_where_get_object_needs_a_restore(synth: SynthResult, env: str) -> None:
    """An object in GLACIER or DEEP_ARCHIVE cannot be read without a restore (GetObject:
    InvalidObjectState); a re-run of an old manifest reads it and its images. images/ goes to
    GLACIER_IR (read at once, 128 KB minimum billable size, 90 days minimum duration); manifests
    stay where they are.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-class-intro.html
    """
    buckets = synth.resources(env, "aws_s3_bucket").values()
    for suffix in {b["bucket"].split("odins-ravne-" + env, 1)[1] for b in buckets if "-raw-" in b["bucket"]}:
        for rule in lifecycle(synth, env, suffix):
            classes = {t.get("storage_class") for t in rule.get("transition", [])}
            assert not classes & {"GLACIER", "DEEP_ARCHIVE"}, rule
            if "GLACIER_IR" in classes:
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


# ----------------------------------------------------------------------------------------------
# Item 5: a cloud env never deploys the example profiles' account ids or reserved alert addresses.

RESERVED = [
    "a@example.org",
    "a@example.com",
    "a@example.net",
    "a@alerts.example.org",
    "a@team.invalid",
    "a@ci.test",
    "a@corp.example",
    "a@localhost",
]


@pytest.mark.parametrize("address", RESERVED)
def test_reserved_alert_addresses_are_placeholders(address: str) -> None:
    """RFC 2606 reserves example.org/.com/.net, .example, .invalid, .test and localhost: mail to
    them is never delivered, so nobody hears the alerts."""
    from tools import preflight

    assert preflight.reserved_address(address)


@pytest.mark.parametrize("address", ["a@odins-ravne.no", "a@example-lab.org", "a@examples.com", "a@testing.io"])
def test_real_looking_addresses_are_not_placeholders(address: str) -> None:
    from tools import preflight

    assert not preflight.reserved_address(address)


def stack_copy(synth: SynthResult, env: str, tmp_path, edit=None):
    from tools import preflight

    config = json.loads(json.dumps(synth.pipeline(env)))
    if edit:
        edit(config)
    folder = tmp_path / f"pipeline-{env}"
    folder.mkdir()
    (folder / "cdk.tf.json").write_text(json.dumps(config))
    return preflight.Stack(folder)


def test_example_profiles_are_placeholders_and_real_values_are_not(synth: SynthResult, tmp_path) -> None:
    from tools import preflight

    for env, account in {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}.items():
        found = preflight.placeholders(preflight.Stack(synth.outdir / "stacks" / f"pipeline-{env}"))
        assert found == [f"account id {account}", f"alert address odins-ravne-{env}-alerts@example.org"]
    assert preflight.placeholders(preflight.Stack(synth.outdir / "stacks" / "pipeline-local")) == []

    def real(config: dict) -> None:
        for provider in config["provider"]["aws"]:
            provider["allowed_account_ids"] = ["210987654321"]
        text = json.dumps(config["resource"]).replace("odins-ravne-dev-alerts@example.org", "ops@odins-ravne.no")
        config["resource"] = json.loads(text)

    filled = stack_copy(synth, "dev", tmp_path, real)
    assert preflight.placeholders(filled) == [] and list(preflight.check_placeholders(filled)) == []


@pytest.mark.terraform  # a whole synth or make in a subprocess: make test, not test-unit
def test_deploy_aws_refuses_placeholders_in_one_line_before_anything_else(synth: SynthResult, tmp_path) -> None:
    """``make deploy-aws ENV=dev`` on the example profile stops at preflight, before it asks for
    credentials, plans or pushes, with one line naming the values and where to set real ones."""
    from tests.test_one_line_errors import make

    stacks = synth.outdir / "stacks"
    # SYNTH=true: the session's synth is the stack under test (no second synth of dev).
    proc = make("deploy-aws", "ENV=dev", "SYNTH=true", f"STACKS_OUT={stacks}", tmp=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output, output
    (line,) = [ln for ln in output.splitlines() if "FAIL" in ln]
    assert line.startswith("pipeline-dev: FAIL placeholders")
    assert "account id 111111111111" in line and "odins-ravne-dev-alerts@example.org" in line
    assert "set account_id and budget.subscribers in conf/profiles/dev.yaml" in line
    assert "credentials" not in output and "tools.plan" not in output and "pipeline_ops.images" not in output, output
    # Only that line and make's own trailer (review of issue 26, item 18): no synth output, no recipe echo.
    assert [ln for ln in output.splitlines() if ln != line and not ln.startswith("make")] == [], output
    assert len(output.splitlines()) <= 3, output
    every = make("preflight", "SYNTH=true", f"STACKS_OUT={stacks}", tmp=tmp_path)
    assert every.returncode == 0, every.stdout + every.stderr  # all envs at once: the examples are notes
    assert "pipeline-dev: NOTE placeholders: account id 111111111111" in every.stdout


@pytest.mark.parametrize("env", CLOUD)
def test_batch_instances_reach_no_internet_in_any_cloud_env(synth: SynthResult, env: str) -> None:
    """Through a NAT gateway a compromised stage image reaches any HTTPS host and any bucket of any
    account (the S3 gateway endpoint's policy covers only the routes to S3 of this region). Every
    cloud env uses interface endpoints: dev and staging pay ~78 USD/month more each than one NAT
    gateway (conf/prices: 7 endpoints x 2 AZs x 0.011 USD/h against 0.046 USD/h).
    https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html
    """
    assert not synth.resources(env, "aws_nat_gateway")
    rules = synth.resources(env, "aws_vpc_security_group_egress_rule").values()
    assert rules and not [r for r in rules if r.get("cidr_ipv4") == "0.0.0.0/0"]
