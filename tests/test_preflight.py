"""Cloud preflight (tools/preflight.py): every env passes, and each check sees the defect it exists for.

Each red test takes a synthesized stack of the session, breaks one thing the emulator cannot see
(routing, tagging, alert delivery, placement, images) and expects the finding.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SynthResult
from tools import preflight


def run(config: dict, tmp_path: Path, images: Path | None = None) -> list[preflight.Finding]:
    """Preflight's findings on ``config``."""
    folder = tmp_path / "stack"
    folder.mkdir(exist_ok=True)
    (folder / "cdk.tf.json").write_text(json.dumps(config))
    stack = preflight.Stack(folder)
    if images is None:
        found = preflight.findings(stack)
    else:
        found = [f for check, fn in preflight.CHECKS.items() if check != "images" for f in fn(stack)]
        found += preflight.check_images(stack, images)
    return found


def lines(found: list[preflight.Finding]) -> str:
    return "\n".join(f.line() for f in found)


def named(config: dict, type_: str, fragment: str) -> str:
    return next(n for n in config["resource"][type_] if fragment in n)


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_every_environment_passes(synth: SynthResult, env: str) -> None:
    stack = preflight.Stack(synth.outdir / "stacks" / f"pipeline-{env}")
    assert [f.line() for f in preflight.findings(stack)] == []


@pytest.mark.parametrize("stack", ["state-bootstrap-111111111111", "state-bootstrap-333333333333"])
def test_state_bootstrap_stacks_pass(synth: SynthResult, stack: str) -> None:
    assert [f.line() for f in preflight.findings(preflight.Stack(synth.outdir / "stacks" / stack))] == []


def test_prod_batch_reaches_the_ecs_agent_through_endpoints(synth: SynthResult) -> None:
    stack = preflight.Stack(synth.outdir / "stacks" / "pipeline-prod")
    (work, *_) = preflight.workloads(stack)
    assert {"ecs", "ecs-agent", "ecs-telemetry", "ecr.api", "ecr.dkr", "s3", "logs", "sts"} <= set(work.needs)
    assert not any(preflight.internet_route(stack, t) for s in work.subnets for t in preflight.route_tables(stack, s))


def test_endpoints_without_ecs_agent(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("prod"))
    del config["resource"]["aws_vpc_endpoint"][named(config, "aws_vpc_endpoint", "endpoint-ecs-agent")]
    found = run(config, tmp_path)
    assert {f.check for f in found} == {"reachability"} and len(found) == 2  # both compute environments
    assert all("cannot reach ecs-agent" in f.problem for f in found), lines(found)


def test_endpoint_security_group_without_https_from_batch(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("prod"))
    config["resource"].pop("aws_vpc_security_group_ingress_rule")
    found = run(config, tmp_path)
    assert found and all("does not admit HTTPS from the workload" in f.problem for f in found), lines(found)


def test_endpoint_without_private_dns(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("prod"))
    config["resource"]["aws_vpc_endpoint"][named(config, "aws_vpc_endpoint", "endpoint-logs")][
        "private_dns_enabled"
    ] = False
    assert "private DNS is off" in lines(run(config, tmp_path))


def test_nat_without_internet_gateway_route(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("local"))  # the one env with a NAT gateway
    del config["resource"]["aws_route"][named(config, "aws_route", "public-default")]
    found = run(config, tmp_path)
    assert any(f.check == "reachability" and "cannot reach ecs-agent" in f.problem for f in found), lines(found)


def test_untagged_launch_template_and_compute_environment(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("dev"))
    template = config["resource"]["aws_launch_template"][named(config, "aws_launch_template", "launch-template")]
    template.pop("tag_specifications")
    env = config["resource"]["aws_batch_compute_environment"][named(config, "aws_batch_compute_environment", "ce-gpu")]
    env["compute_resources"].pop("tags")
    found = run(config, tmp_path)
    text = lines(found)
    assert {f.check for f in found} == {"cost"}
    assert "instances it launches lack CostScope=odins-ravne-dev" in text
    for kind in ("instances", "volumes", "network-interfaces"):
        assert f"{kind} launched by" in text


def test_topic_with_only_a_lambda_subscriber(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("staging"))
    subs = config["resource"]["aws_sns_topic_subscription"]
    for name in [n for n, s in subs.items() if s["protocol"] == "email"]:
        del subs[name]
    for budget in config["resource"]["aws_budgets_budget"].values():
        for notification in budget["notification"]:
            notification.pop("subscriber_email_addresses", None)
    found = run(config, tmp_path)
    assert {f.check for f in found} == {"alerts"}
    assert any("no person is subscribed" in f.problem for f in found)
    assert sum("notification reaches no person" in f.problem for f in found) == 3


def test_key_policy_without_cloudwatch(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("prod"))
    key = config["resource"]["aws_kms_key"][named(config, "aws_kms_key", "pipeline-key")]
    policy = json.loads(key["policy"])
    for statement in policy["Statement"]:
        services = statement.get("Principal", {}).get("Service")
        if isinstance(services, list) and "cloudwatch.amazonaws.com" in services:
            services.remove("cloudwatch.amazonaws.com")
    key["policy"] = json.dumps(policy)
    found = run(config, tmp_path)
    assert [f.check for f in found] == ["alerts"]
    assert "does not let cloudwatch.amazonaws.com use it" in found[0].problem


def test_emulator_stack_is_exempt_from_alert_delivery(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("local"))
    assert not config["resource"].get("aws_sns_topic_subscription", {}).keys() - {
        n for n, s in config["resource"]["aws_sns_topic_subscription"].items() if s["protocol"] == "lambda"
    }
    assert run(config, tmp_path) == []


def resubmitted(synth: SynthResult, from_queue: str, to_queue: str) -> dict:
    """The dev stack with every job the state machine sends to ``from_queue`` sent to ``to_queue``."""
    config = copy.deepcopy(synth.pipeline("dev"))
    machine = next(iter(config["resource"]["aws_sfn_state_machine"].values()))
    old, new = (named(config, "aws_batch_job_queue", f"queue-{q}") for q in (from_queue, to_queue))
    machine["definition"] = machine["definition"].replace(f"aws_batch_job_queue.{old}.", f"aws_batch_job_queue.{new}.")
    return config


def test_cpu_job_on_a_gpu_first_queue(synth: SynthResult, tmp_path: Path) -> None:
    found = run(resubmitted(synth, "cpu", "normal"), tmp_path)
    assert [f.check for f in found] == ["placement"] and "stage0" in found[0].address
    assert "a CPU job sent to queue" in found[0].problem and "can start GPU instances" in found[0].problem


def test_gpu_job_on_a_cpu_only_queue(synth: SynthResult, tmp_path: Path) -> None:
    found = run(resubmitted(synth, "normal", "cpu"), tmp_path)
    assert len(found) == 2 and all("a GPU job whose queue" in f.problem for f in found), lines(found)


def test_job_too_large_for_its_first_environment(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("dev"))
    definition = config["resource"]["aws_batch_job_definition"][named(config, "aws_batch_job_definition", "stage1")]
    container = json.loads(definition["container_properties"])
    for requirement in container["resourceRequirements"]:
        if requirement["type"] == "MEMORY":
            requirement["value"] = "65536"
    definition["container_properties"] = json.dumps(container)
    found = run(config, tmp_path)
    assert [f.check for f in found] == ["placement"] and "fits 4 vCPU, 65536 MiB, 1 GPU" in found[0].problem


def test_images_come_from_own_repositories_with_a_dockerfile(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("dev"))
    definitions = config["resource"]["aws_batch_job_definition"]
    for stage, image in (("stage1", "docker.io/library/python:3.11"), ("stage2", None)):
        definition = definitions[named(config, "aws_batch_job_definition", stage)]
        container = json.loads(definition["container_properties"])
        container["image"] = image or container["image"].rsplit(":", 1)[0] + ":latest"
        definition["container_properties"] = json.dumps(container)
    images = tmp_path / "images"
    (images / "stage2").mkdir(parents=True)
    (images / "gpu.Dockerfile").write_text("FROM scratch\nARG STAGE\n")
    found = [f for f in run(config, tmp_path, images) if f.check == "images"]
    problems = {re.search(r"jobdef-(stage\d)", f.address).group(1): f.problem for f in found}
    assert "not a repository this stack creates" in problems["stage1"]
    assert "is not a fixed release tag" in problems["stage2"]
    assert "no Dockerfile under images/ builds" in problems["stage0"]  # images/stage0/ is missing here


def test_command_line_one_line_per_finding_and_exit_code(synth: SynthResult, tmp_path: Path) -> None:
    config = copy.deepcopy(synth.pipeline("prod"))
    del config["resource"]["aws_vpc_endpoint"][named(config, "aws_vpc_endpoint", "endpoint-ecs-telemetry")]
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / "cdk.tf.json").write_text(json.dumps(config))
    good = synth.outdir / "stacks" / "state-bootstrap-111111111111"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.preflight", str(good), str(tmp_path / "prod" / "cdk.tf.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failures = [ln for ln in proc.stdout.splitlines() if " FAIL " in ln]
    assert len(failures) == 2 and all(
        "ecs-telemetry" in ln and ln.startswith("prod: FAIL reachability") for ln in failures
    )
    assert "preflight state-bootstrap-111111111111: 0 finding(s)" in proc.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "tools.preflight", str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr


def test_daily_budget_with_a_forecast_and_ored_tags(synth: SynthResult, tmp_path: Path) -> None:
    """dev's budget is DAILY: Budgets rejects a FORECASTED notification on it (the old dev budget could
    not be created), and two values of one TagKeyValue filter select either tag's spend."""
    config = copy.deepcopy(synth.pipeline("dev"))
    (budget,) = config["resource"]["aws_budgets_budget"].values()
    assert budget["time_unit"] == "DAILY"
    budget["notification"].append({**budget["notification"][0], "notification_type": "FORECASTED", "threshold": 100})
    budget["cost_filter"][0]["values"] = ["user:Project$odins-ravne", "user:Environment$dev"]
    found = run(config, tmp_path)
    assert {f.check for f in found} >= {"budgets"}, lines(found)
    budgets = [f for f in found if f.check == "budgets"]
    assert len(budgets) == 2, lines(found)
    assert "FORECASTED notification at 100 % on a DAILY budget" in budgets[0].problem
    assert "are ORed" in budgets[1].problem and "user:CostScope$" in budgets[1].fix


@pytest.mark.terraform  # a whole synth or make in a subprocess: make test, not test-unit
def test_make_preflight_checks_the_state_bootstrap_stacks(synth: SynthResult, tmp_path: Path) -> None:
    """The permissions boundary, CI roles, OIDC provider and state bucket policy live in the state-bootstrap
    stacks: `make preflight` checks each cloud env's with its pipeline stack (review of issue 26, item 8).
    A boundary policy in a Version IAM refuses fails it."""
    from tests.test_one_line_errors import make

    stacks = tmp_path / "stacks"
    shutil.copytree(synth.outdir / "stacks", stacks)
    every = make("preflight", "SYNTH=true", f"STACKS_OUT={stacks}", tmp=tmp_path)
    assert every.returncode == 0, every.stdout + every.stderr
    for account in ("111111111111", "222222222222", "333333333333"):
        assert f"preflight state-bootstrap-{account}: 0 finding(s)" in every.stdout
    bootstrap = stacks / "state-bootstrap-111111111111" / "cdk.tf.json"
    config = json.loads(bootstrap.read_text())
    boundary = config["resource"]["aws_iam_policy"][named(config, "aws_iam_policy", "boundary")]
    boundary["policy"] = json.dumps({**json.loads(boundary["policy"]), "Version": "2008-10-17"})
    bootstrap.write_text(json.dumps(config))
    broken = make("preflight", "SYNTH=true", f"STACKS_OUT={stacks}", tmp=tmp_path)
    assert broken.returncode != 0
    (line,) = [ln for ln in broken.stdout.splitlines() if " FAIL " in ln]
    assert line.startswith("state-bootstrap-111111111111: FAIL policy-shape aws_iam_policy.ci-dev_boundary"), line
