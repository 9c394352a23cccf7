"""Every expected failure of a make target is one line that says what to run, never a traceback.

Drives the real Makefile (``make --no-print-directory <target>``) with the emulator down (a port
nothing listens on), with no AWS credentials, with no Docker engine, with a bad ENV, and with a
missing synthesized stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.emulator import free_port
from tests.conftest import REPO
from tools import plan as plan_tool

pytestmark = pytest.mark.terraform

NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def make(target: str, *args: str, env: dict[str, str] | None = None, tmp: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in NO_CREDENTIALS}
    base.update(
        # No credentials from files either, and nothing that could answer at the emulator's port.
        AWS_CONFIG_FILE=str(tmp / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        EMULATOR_STATE_DIR=str(tmp / "emulator"),
        **(env or {}),
    )
    return subprocess.run(
        ["make", "--no-print-directory", target, *args],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_one_line(proc: subprocess.CompletedProcess, *expected: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    for fragment in expected:
        assert fragment in errors[0], errors[0]


DOWN = ["plan-local", "run-local", "status-local", "leftovers-local", "health", "budget-resume", "plan", "drift"]


@pytest.mark.parametrize("target", DOWN)
def test_emulator_down(target: str, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    # The Makefile reads the local endpoint from the profile; a profile copy points it at a dead port.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for source in (REPO / "conf" / "profiles").glob("*.yaml"):
        text = source.read_text()
        if source.name == "local.yaml":
            text = "\n".join(
                f"emulator_endpoint: {down}" if ln.startswith("emulator_endpoint:") else ln for ln in text.splitlines()
            )
        (profiles / source.name).write_text(text + "\n")
    proc = make(target, "ENV=local", env={"ODINS_PROFILE_DIR": str(profiles)}, tmp=tmp_path)
    assert_one_line(proc, "emulator is not running", down, "make up-localstack")


@pytest.mark.parametrize(
    "target",
    [
        "plan",
        "drift",
        "apply-plan",
        "health",
        "integration",
        "budget-resume",
        "diff",
        "quotas",
        "emergency-stop",
        "cost-tags",
    ],
)
def test_no_credentials(target: str, tmp_path: Path) -> None:
    assert_one_line(make(target, "ENV=dev", tmp=tmp_path), "ENV=dev needs AWS credentials", "AWS_PROFILE")


@pytest.mark.parametrize("target", ["plan", "health", "images", "budget-resume", "apply-plan"])
def test_bad_env(target: str, tmp_path: Path) -> None:
    assert_one_line(make(target, "ENV=prdo", tmp=tmp_path), "unknown environment 'prdo'", "conf/profiles/prdo.yaml")


def test_no_docker_engine(tmp_path: Path) -> None:
    # An empty PATH entry first, holding a `docker` that fails like a client without an engine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    proc = make("images", "ENV=dev", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, tmp=tmp_path)
    assert_one_line(proc, "no Docker engine")


@pytest.mark.parametrize("target", ["apply-plan", "budget-resume"])
def test_missing_synth_output(target: str, tmp_path: Path) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example"}
    missing = tmp_path / "cdktf.out" / "stacks" / "pipeline-dev"
    proc = make(target, "ENV=dev", f"STACK_DIR={missing}", env=credentials, tmp=tmp_path)
    assert_one_line(proc, f"{missing}/cdk.tf.json not found", "make synth")


def test_emergency_stop_asks_for_confirmation(synth, tmp_path: Path) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example"}
    dev = synth.outdir / "stacks" / "pipeline-dev"
    for confirm in ([], ["CONFIRM=prod"]):
        proc = make("emergency-stop", "ENV=dev", f"STACK_DIR={dev}", *confirm, env=credentials, tmp=tmp_path)
        assert_one_line(proc, "terminates every job and execution of dev", "re-run with CONFIRM=dev")


def test_cost_tags_on_the_emulator_env(tmp_path: Path) -> None:
    proc = make("cost-tags", "ENV=local", tmp=tmp_path)
    assert_one_line(proc, "local has no Cost Explorer")


def test_destroy_aws_refuses_prod_and_asks_for_confirmation(synth, tmp_path: Path) -> None:
    prod = synth.outdir / "stacks" / "pipeline-prod"
    refused = make("destroy-aws", "ENV=prod", "CONFIRM=prod", f"STACK_DIR={prod}", tmp=tmp_path)
    assert_one_line(refused, "protects", "prevent_destroy", "make destroy-aws refuses it")
    dev = synth.outdir / "stacks" / "pipeline-dev"
    unconfirmed = make("destroy-aws", "ENV=dev", f"STACK_DIR={dev}", tmp=tmp_path)
    assert_one_line(unconfirmed, "re-run with CONFIRM=dev")
    confirmed = make("destroy-aws", "ENV=dev", "CONFIRM=dev", f"STACK_DIR={dev}", tmp=tmp_path)
    assert_one_line(confirmed, "ENV=dev needs AWS credentials")  # confirmed: only then are credentials needed


def test_rerun_shards_names_the_execution_it_needs(tmp_path: Path) -> None:
    assert_one_line(make("rerun-shards", "ENV=dev", tmp=tmp_path), "EXECUTION is not set", "EXECUTION=<name>")


@pytest.mark.parametrize("target", ["deploy-aws", "status-aws", "destroy-aws"])
def test_cloud_targets_send_local_to_the_emulator_targets(target: str, tmp_path: Path) -> None:
    local = target.replace("-aws", "-local")
    assert_one_line(make(target, "ENV=local", tmp=tmp_path), "ENV=local runs on the emulator", f"use make {local}")


def test_quotas_of_local_say_the_emulator_has_none(tmp_path: Path) -> None:
    """Not "use make deploy-local" (review of issue 26, item 17): there is no local quotas target."""
    proc = make("quotas", "ENV=local", tmp=tmp_path)
    assert_one_line(proc, "the emulator has no Service Quotas", "make quotas ENV=dev|staging|prod")
    assert "deploy-local" not in proc.stderr


@pytest.mark.parametrize("command", ["drift", "apply", "destroy"])
def test_no_refresh_is_for_plan_only(command: str, tmp_path: Path) -> None:
    """``tools.plan --no-refresh`` (``make plan REFRESH=false``) would only make a drift check or an
    apply blind: refused before Terraform starts."""
    stack = tmp_path / "pipeline-local"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.plan", command, str(stack), "--no-refresh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line(proc, "--no-refresh is for plan only")
    assert proc.returncode == 2


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        (
            {
                "verdict": "BLOCKING",
                "blocking": [{"address": "aws_s3_bucket.raw", "action": "delete"}],
                "approvals_needed": [{"address": "aws_s3_bucket.raw", "digest": "sha256:0123"}],
            },
            ("is BLOCKING", "e.g. aws_s3_bucket.raw", "make apply-plan refuses it", "plan-approvals.yaml"),
        ),
        (None, ("review.json not found", "make plan ENV=dev")),
        # A PASS left over from an earlier plan (review #10): bound to other bytes, or to none.
        ({"verdict": "PASS", "plan_sha256": "0" * 64}, ("was written for another plan", "make plan ENV=dev")),
        ({"verdict": "PASS", "plan_sha256": None}, ("was written for another plan", "make plan ENV=dev")),
    ],
)
def test_apply_plan_refuses_an_unreviewed_or_blocking_plan(synth, review, expected, tmp_path: Path) -> None:
    """A BLOCKING plan (a stateful destroy nobody approved) is refused before Terraform starts, even
    with credentials: the plan file alone never says it was reviewed."""
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / "plan.tfplan").write_bytes(b"PK\x03\x04 not applied")
    if review is not None:
        bound = {"plan_sha256": plan_tool.sha256(plan_dir / "plan.tfplan")}
        (plan_dir / "review.json").write_text(json.dumps({"title": "pipeline-dev", **bound, **review}))
    dev = synth.outdir / "stacks" / "pipeline-dev"
    credentials = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example"}
    proc = make("apply-plan", "ENV=dev", f"STACK_DIR={dev}", f"PLAN_DIR={plan_dir}", env=credentials, tmp=tmp_path)
    assert_one_line(proc, *expected)
    assert proc.returncode == 2 and "Initializing" not in proc.stdout + proc.stderr  # no terraform init ran


def dry_run(target: str, *args: str) -> str:
    """What ``make -n <target>`` would run."""
    cmd = ["make", "-n", "--no-print-directory", target, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout


def test_deploy_of_a_cloud_env_is_deploy_aws(tmp_path: Path) -> None:
    """`make deploy ENV=prod` runs deploy-aws's checked path, never a bare `cdktf deploy`."""
    dry = dry_run("deploy", "ENV=prod")
    assert "cdktf deploy" not in dry and "cdktf-deploy-local" not in dry
    for step in ("preflight ENV=prod", "plan ENV=prod", "apply-plan ENV=prod", "health ENV=prod"):
        assert f"make --no-print-directory {step}" in dry, step


def terraform_data_stack(folder: Path, body: dict) -> Path:
    """A stack of ``terraform_data`` (built into Terraform): a real plan, no network. It requires
    the AWS provider only because init runs against the committed, read-only lock file."""
    folder.mkdir(parents=True)
    providers = {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}}
    config = {"terraform": {"required_providers": providers}, "resource": {"terraform_data": body}}
    (folder / "cdk.tf.json").write_text(json.dumps(config))
    return folder


def plan_tool_run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tools.plan", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_the_review_is_bound_to_its_plan_file(tmp_path: Path) -> None:
    """review.json records the sha256 of the plan.tfplan it reviewed; once the plan file changes,
    apply-plan refuses the old review (review #10)."""
    stack = terraform_data_stack(tmp_path / "pipeline-dev", {"a": {"input": 1}})
    out = tmp_path / "out"
    proc = plan_tool_run("plan", str(stack), "--out", str(out), "--approvals", str(tmp_path / "none.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    review = json.loads((out / "review.json").read_text())
    assert review["plan_sha256"] == plan_tool.sha256(out / "plan.tfplan")
    assert plan_tool_run("apply", str(stack), "--out", str(out), "--check-only").returncode == 0
    with (out / "plan.tfplan").open("ab") as planfile:
        planfile.write(b"another plan")
    proc = plan_tool_run("apply", str(stack), "--out", str(out), "--check-only")
    assert_one_line(proc, "was written for another plan", "make plan ENV=dev")


def test_a_failed_plan_leaves_no_earlier_review(tmp_path: Path) -> None:
    """`make plan` deletes the previous review before it plans: a plan that fails cannot leave an
    older PASS next to a new plan file (review #10)."""
    stack = terraform_data_stack(tmp_path / "pipeline-dev", {"a": {"nope": 1}})
    out = tmp_path / "out"
    out.mkdir()
    (out / "review.json").write_text(json.dumps({"verdict": "PASS"}))
    (out / "review.md").write_text("PASS")
    proc = plan_tool_run("plan", str(stack), "--out", str(out), "--approvals", str(tmp_path / "none.yaml"))
    assert proc.returncode != 0 and "Extraneous JSON object property" in proc.stderr
    assert not (out / "review.json").exists() and not (out / "review.md").exists()


@pytest.mark.parametrize(("target", "command"), [("deploy", "local.deploy apply"), ("diff", "local.deploy plan")])
def test_deploy_and_diff_of_local_go_through_local_deploy(target: str, command: str) -> None:
    """`make deploy|diff ENV=local` run local.deploy (progress, a log in build/logs/, no TTY needed),
    never a raw `cdktf deploy|diff`, whose Ink UI dies without a terminal (review #5)."""
    dry = dry_run(target, "ENV=local")
    assert f"-m {command} " in dry, dry
    assert "cdktf deploy" not in dry and "cdktf diff" not in dry
