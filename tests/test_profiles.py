"""Profiles load into typed objects; every bad value is ONE line naming file, key, value, rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conf import CLOUDWATCH_RETENTION_DAYS, ProfileError, known_environments, load_profile

REPO = Path(__file__).resolve().parent.parent


def test_known_environments() -> None:
    assert known_environments() == ["dev", "local", "prod", "staging"]


def test_seed_numbers() -> None:
    dev, prod, local = load_profile("dev"), load_profile("prod"), load_profile("local")
    assert (dev.budget.amount_usd, dev.budget.period) == (50, "DAILY")
    assert (prod.budget.amount_usd, prod.budget.period) == (1000, "MONTHLY")
    assert dev.budget.alert_threshold_pct == prod.budget.alert_threshold_pct == 80
    assert (dev.logs.retention_days, prod.logs.retention_days) == (30, 90)
    assert prod.stack_name == "wildlife-production-stack"
    assert prod.region == dev.region == "eu-north-1"
    assert local.emulator_endpoint == "http://localhost:4566"
    assert local.minio_endpoint == "http://localhost:9000"
    for profile in (dev, prod, local):
        batch = profile.batch
        assert batch.gpu_instance_types == ("g4dn.xlarge", "g4dn.2xlarge")
        assert (batch.spot_bid_percentage, batch.max_vcpus, batch.min_vcpus, batch.desired_vcpus) == (70, 100, 0, 0)


def test_profiles_are_frozen() -> None:
    profile = load_profile("dev")
    with pytest.raises(Exception, match="frozen"):
        profile.region = "us-east-1"  # type: ignore[misc]


def _edit(profile_dir: Path, env: str, path: str, value: object) -> None:
    file = profile_dir / f"{env}.yaml"
    data = yaml.safe_load(file.read_text()) or {}
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    file.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("budget.amount_usd", -5, "dev.yaml: budget.amount_usd = -5: Input should be greater than 0"),
        ("budget.amount_usd", 0, "dev.yaml: budget.amount_usd = 0: Input should be greater than 0"),
        (
            "budget.alert_threshold_pct",
            120,
            "dev.yaml: budget.alert_threshold_pct = 120: Input should be less than or equal to 100",
        ),
        (
            "budget.alert_threshold_pct",
            0,
            "dev.yaml: budget.alert_threshold_pct = 0: Input should be greater than or equal to 1",
        ),
        (
            "logs.retention_days",
            42,
            "dev.yaml: logs.retention_days = 42: must be one of CloudWatch's values "
            + ", ".join(map(str, CLOUDWATCH_RETENTION_DAYS)),
        ),
        ("batch.min_vcpus", 200, "dev.yaml: batch.min_vcpus = 200: must be <= batch.max_vcpus (100)"),
        ("account_id", "12345", "dev.yaml: account_id = '12345': must be a 12-digit AWS account id in quotes"),
        ("budgte", {"amount_usd": 5}, "dev.yaml: unknown key 'budgte'; allowed keys here: account_id, batch, budget"),
        ("batch.max_vpcus", 5, "dev.yaml: unknown key 'batch.max_vpcus'; allowed keys here: cpu_instance_types"),
        ("network.egress", "vpn", "dev.yaml: network.egress = 'vpn': Input should be 'endpoints' or 'nat'"),
        (
            "ci.github_repository",
            "just-a-name",
            "dev.yaml: ci.github_repository = 'just-a-name': String should match pattern",
        ),
    ],
)
def test_bad_values_fail_with_one_line(profile_dir: Path, key: str, value: object, expected: str) -> None:
    _edit(profile_dir, "dev", key, value)
    with pytest.raises(ProfileError) as info:
        load_profile("dev", profile_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected.split(":")[0].replace("dev.yaml", str(profile_dir / "dev.yaml")))
    assert expected.split(": ", 1)[1] in message


def test_unknown_environment(profile_dir: Path) -> None:
    with pytest.raises(
        ProfileError,
        match=r"^unknown environment 'qa': known environments are dev, local, prod, "
        r"staging; create .*qa.yaml to add it$",
    ):
        load_profile("qa", profile_dir)


def test_missing_file(profile_dir: Path) -> None:
    from conf import load_profile_file

    with pytest.raises(ProfileError, match=r"qa.yaml: profile file is missing; create it"):
        load_profile_file(profile_dir / "qa.yaml")


def test_cloud_env_needs_account(profile_dir: Path) -> None:
    text = (profile_dir / "dev.yaml").read_text().replace('account_id: "111111111111"\n', "")
    (profile_dir / "dev.yaml").write_text(text)
    with pytest.raises(ProfileError, match=r"dev.yaml: account_id = None: required when provider is aws$"):
        load_profile("dev", profile_dir)


def test_gpu_stage_needs_gpu(profile_dir: Path) -> None:
    _edit(profile_dir, "prod", "batch.stages.stage1.gpus", 0)
    with pytest.raises(
        ProfileError, match=r"prod.yaml: batch.stages.stage1.gpus = 0: a gpu stage needs at least 1 gpu$"
    ):
        load_profile("prod", profile_dir)


def test_stage_overrides_name_a_step_of_the_spec(profile_dir: Path) -> None:
    _edit(profile_dir, "dev", "batch.stages.stage9.vcpus", 2)
    with pytest.raises(
        ProfileError,
        match=r"dev.yaml: batch.stages.stage9 = \{'vcpus': 2\}: no Batch step 'stage9' in "
        r"conf/pipeline.py; the steps are stage0, stage1, stage2$",
    ):
        load_profile("dev", profile_dir)
    _edit(profile_dir, "dev", "batch.stages", {"stage1": {"image_tag": "0.2.0", "images_per_second": 5.1}})
    with pytest.raises(
        ProfileError,
        match=r"dev.yaml: batch.stages.stage1.throughput_source = None: images_per_second and throughput_source "
        r"go together: say where the figure comes from",
    ):
        load_profile("dev", profile_dir)
    _edit(
        profile_dir,
        "dev",
        "batch.stages",
        {"stage1": {"image_tag": "0.2.0", "images_per_second": 5.1, "throughput_source": "bench on g4dn.xlarge"}},
    )
    resources = load_profile("dev", profile_dir).batch.resources()
    assert (resources["stage1"].image_tag, resources["stage1"].images_per_second, resources["stage1"].vcpus) == (
        "0.2.0",
        5.1,
        4,
    )
    assert resources["stage1"].throughput_source == "bench on g4dn.xlarge"
    assert resources["stage2"].image_tag == "0.1.0"


def test_concurrency_is_bounded_by_the_fleet(profile_dir: Path) -> None:
    _edit(profile_dir, "dev", "workflow.max_concurrency", 26)
    with pytest.raises(
        ProfileError,
        match=r"dev.yaml: workflow.max_concurrency = 26: the GPU fleet runs at most 25 stage1 jobs at once "
        r"\(batch.max_vcpus / 4 vCPUs\); lower it or raise batch.max_vcpus$",
    ):
        load_profile("dev", profile_dir)


def test_invalid_yaml(profile_dir: Path) -> None:
    (profile_dir / "dev.yaml").write_text("budget: [unclosed\n")
    with pytest.raises(ProfileError, match=r"dev.yaml: not valid YAML at line \d+"):
        load_profile("dev", profile_dir)


def test_main_prints_one_line_and_exits_2(profile_dir: Path) -> None:
    _edit(profile_dir, "staging", "budget.amount_usd", -1)
    env = dict(os.environ, ODINS_PROFILE_DIR=str(profile_dir), SYNTH_ENVS="staging")
    proc = subprocess.run([sys.executable, "main.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("b'")]
    assert lines == [f"error: {profile_dir / 'staging.yaml'}: budget.amount_usd = -1: Input should be greater than 0"]
    assert "Traceback" not in proc.stderr


def test_ci_role_arns_come_from_account_and_prefix() -> None:
    prod = load_profile("prod")
    assert prod.ci_plan_role_arn == "arn:aws:iam::333333333333:role/odins-ravne-prod-ci-plan"
    assert prod.ci_deploy_role_arn == "arn:aws:iam::333333333333:role/odins-ravne-prod-ci-deploy"
    assert load_profile("local").ci_plan_role_arn is None
    proc = subprocess.run(
        [sys.executable, "-m", "conf", "staging", "ci_plan_role_arn"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.stdout.strip() == "arn:aws:iam::222222222222:role/odins-ravne-staging-ci-plan"


def test_cloud_env_needs_a_person_for_its_alerts(profile_dir: Path) -> None:
    _edit(profile_dir, "prod", "budget.subscribers", [])
    with pytest.raises(ProfileError) as info:
        load_profile("prod", profile_dir)
    message = str(info.value)
    assert "\n" not in message and "prod.yaml: budget.subscribers = []" in message
    assert "needs at least one e-mail address that receives its alerts" in message
    _edit(profile_dir, "local", "budget.subscribers", [])  # the emulator delivers no mail: local is exempt
    assert load_profile("local", profile_dir).budget.subscribers == ()


def test_the_seeds_profile_layout_loads(profile_dir: Path) -> None:
    """The seed writes local.yaml as `infrastructure: {provider, localstack: {endpoint}, minio: {endpoint}}`."""
    text = (profile_dir / "local.yaml").read_text()
    for line in ("provider: local\n", "emulator_endpoint: http://localhost:4566\n"):
        text = text.replace(line, "")
    text = text.replace("minio_endpoint: http://localhost:9000   # optional alternative S3 target\n", "")
    seed = (
        'infrastructure:\n  provider: "local"\n  localstack:\n    endpoint: "http://localhost:4566"\n'
        '  minio:\n    endpoint: "http://localhost:9000"\n'
    )
    (profile_dir / "local.yaml").write_text(seed + text)
    seeded, native = load_profile("local", profile_dir), load_profile("local")
    assert seeded == native


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"provider": "aws", "cost_optimized": True},
            r"dev.yaml: infrastructure.cost_optimized = True: it has no single meaning here: the GPU environment "
            r"is always spot and both scale to zero; set batch.cpu_spot and batch.spot_bid_percentage instead$",
        ),
        ({"region": "eu-north-1"}, r"dev.yaml: infrastructure.region and region say the same thing; keep one$"),
        (
            {"flavour": "x"},
            r"dev.yaml: infrastructure.flavour is not a seed key this project knows \(infrastructure.provider, ",
        ),
    ],
)
def test_seed_keys_without_one_meaning_are_refused_by_name(profile_dir: Path, block: dict, message: str) -> None:
    data = yaml.safe_load((profile_dir / "dev.yaml").read_text()) or {}
    data.setdefault("region", "eu-north-1")
    data["infrastructure"] = block
    (profile_dir / "dev.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=message):
        load_profile("dev", profile_dir)


def test_shell_words_for_the_makefile(capsys) -> None:
    """``env $(python -m conf local --shell ...)``: several keys from one process, each one plain word."""
    from conf.__main__ import main

    assert main(["local", "--shell", "EMULATOR_ENDPOINT=emulator_endpoint", "AWS_DEFAULT_REGION=region"]) == 0
    local = load_profile("local")
    assert capsys.readouterr().out == f"EMULATOR_ENDPOINT={local.emulator_endpoint} AWS_DEFAULT_REGION={local.region}\n"
    for bad, message in (("X=workflow", "is not one plain word"), ("x", "NAME=key.path"), ("X=nope", "no key 'nope'")):
        assert main(["local", "--shell", bad]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err and captured.err.count("\n") == 1
    assert main(["local", "--shell"]) == 2 and "usage:" in capsys.readouterr().err


def _one_line_error(env: str, profile_dir: Path) -> str:
    with pytest.raises(ProfileError) as caught:
        load_profile(env, profile_dir)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_cross_field_error_names_the_file_that_set_the_value(profile_dir: Path) -> None:
    """workflow.max_concurrency (25) comes from defaults.yaml; dev.yaml only lowered max_vcpus."""
    _edit(profile_dir, "dev", "batch.max_vcpus", 8)
    message = _one_line_error("dev", profile_dir)
    assert message.startswith(f"{profile_dir / 'defaults.yaml'}: workflow.max_concurrency = 25:"), message


def test_an_error_in_defaults_names_defaults(profile_dir: Path) -> None:
    _edit(profile_dir, "defaults", "batch.runnable_timeout_seconds", 10)
    message = _one_line_error("local", profile_dir)
    assert message.startswith(f"{profile_dir / 'defaults.yaml'}: batch.runnable_timeout_seconds = 10:"), message


@pytest.mark.parametrize("key", ["batch.gpu_instance_types", "batch.cpu_instance_types"])
def test_instance_types_are_ones_ec2_knows(profile_dir: Path, key: str) -> None:
    _edit(profile_dir, "dev", key, ["g4dn.xlarge", "g4dn.bogus"])
    message = _one_line_error("dev", profile_dir)
    assert message.endswith(
        f"{key} = ['g4dn.xlarge', 'g4dn.bogus']: 'g4dn.bogus' is not an EC2 instance type "
        "(botocore's list: ec2_instance_types.txt)"
    ), message


def test_instance_type_list_is_botocores() -> None:
    """conf/ec2_instance_types.txt is exactly the InstanceType enum of the installed botocore."""
    from conf.profile import botocore_instance_types, known_instance_types

    assert sorted(known_instance_types()) == botocore_instance_types()


@pytest.mark.parametrize(
    ("key", "kind"),
    [("budget.amount_usd", "number"), ("batch.max_vcpus", "whole number"), ("region", "string")],
)
def test_a_boolean_is_not_a_number(profile_dir: Path, key: str, kind: str) -> None:
    """YAML `true` would otherwise pass as 1: `amount_usd: true` a 1.0 USD budget."""
    _edit(profile_dir, "dev", key, True)
    message = _one_line_error("dev", profile_dir)
    assert message.endswith(f"{key} = True: true is a boolean; this key takes a {kind}"), message


def test_a_key_given_twice_is_refused(profile_dir: Path) -> None:
    defaults = profile_dir / "defaults.yaml"
    text = defaults.read_text()
    defaults.write_text(text.replace("  max_vcpus: 100\n", "  max_vcpus: 100\n  max_vcpus: 8\n", 1))
    line = next(i for i, ln in enumerate(defaults.read_text().splitlines(), 1) if ln == "  max_vcpus: 100")
    message = _one_line_error("dev", profile_dir)
    assert message == f"{defaults}: key 'max_vcpus' appears twice (lines {line} and {line + 1}); keep one"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_conf_help_prints_usage(flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conf", flag], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m conf <env>")
    assert "--help.yaml" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("budget.amount_usd", "50", "'50' is a string; this key takes a number (write it unquoted)"),
        ("batch.max_vcpus", "64", "'64' is a string; this key takes a whole number (write it unquoted)"),
        ("region", 5, "5 is a number; this key takes a string (quote it)"),
    ],
)
def test_a_string_is_not_a_number_nor_a_number_a_string(
    profile_dir: Path, key: str, value: object, expected: str
) -> None:
    """Strict types (review #14): YAML `"50"` would pass as 50.0 and `5` as "5"; refused, naming the file."""
    _edit(profile_dir, "dev", key, value)
    message = _one_line_error("dev", profile_dir)
    assert message.startswith(str(profile_dir / "dev.yaml")) or "dev.yaml" in message.split(":")[0], message
    assert message.endswith(f"{key} = {value!r}: {expected}"), message
