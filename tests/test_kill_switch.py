"""The apply gate (pipeline_ops/kill_switch.py check): what `make apply-plan` and `make deploy-aws`
run first. The emulator test (tests/test_emulator.py) runs it on a shut-down stack."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from local.emulator import free_port
from pipeline_ops import kill_switch
from tests.conftest import SynthResult

REPO = Path(__file__).resolve().parent.parent


def test_the_gate_reads_the_switch_named_in_the_config(synth: SynthResult, capsys) -> None:
    dev = synth.outdir / "stacks" / "pipeline-dev"
    assert kill_switch.switch_name(dev) == "/odins-ravne/dev/kill-switch"
    with mock_aws():
        ssm = boto3.client("ssm", region_name="eu-north-1")
        assert kill_switch.check(dev, ssm) == 0, "first deploy: no switch yet, nothing to undo"
        ssm.put_parameter(Name="/odins-ravne/dev/kill-switch", Value="off", Type="String")
        assert kill_switch.check(dev, ssm) == 0
        ssm.put_parameter(Name="/odins-ravne/dev/kill-switch", Value="on", Type="String", Overwrite=True)
        assert kill_switch.check(dev, ssm) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: kill switch /odins-ravne/dev/kill-switch is 'on' (budget shutdown): an apply now would re-enable "
        "the job queues and compute environments; run `make budget-resume ENV=dev` first, then apply"
    )


def recipe(target: str, env: str, *assignments: str) -> list[str]:
    """The commands ``make <target>`` runs (``make -n``: printed, not run)."""
    run = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"ENV={env}", *assignments],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.replace("\\\n", " ").splitlines()  # a command continued over lines is one


def index_of(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


def test_apply_plan_runs_the_gate_before_terraform_apply(synth: SynthResult, tmp_path: Path) -> None:
    """The gate as make apply-plan wires it: its own recipe line, run against a moto server with the
    switch on, refuses (exit 1) before the line that applies the plan."""
    lines = recipe("apply-plan", "dev")
    gate = index_of(lines, "pipeline_ops.kill_switch check")
    apply = next(i for i, line in enumerate(lines) if "tools.plan apply" in line and "--check-only" not in line)
    assert gate < apply, "the kill switch is checked before the plan is applied"
    command = lines[gate].replace("cdktf.out", str(synth.outdir))
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": endpoint}
        ssm = boto3.client(
            "ssm",
            region_name="eu-north-1",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        ssm.put_parameter(Name="/odins-ravne/dev/kill-switch", Value="on", Type="String")
        run = subprocess.run(shlex.split(command), cwd=REPO, env={**os.environ, **aws}, capture_output=True, text=True)
    finally:
        server.stop()
    assert run.returncode == 1
    assert run.stderr.strip().startswith("error: kill switch /odins-ravne/dev/kill-switch is 'on' (budget shutdown)")


@pytest.mark.parametrize(
    ("target", "deploys"), [("deploy-local", "local.deploy apply"), ("deploy", "local.deploy apply")]
)
def test_local_deploys_run_the_gate_first(target: str, deploys: str) -> None:
    lines = recipe(target, "local")
    assert index_of(lines, "pipeline_ops.kill_switch check cdktf.out/stacks/pipeline-local") < index_of(lines, deploys)


def test_emergency_stop_needs_no_terraform_init(synth: SynthResult, tmp_path: Path) -> None:
    """The function's name comes from the synthesized config: a stack directory never ``terraform
    init``-ed reaches the Lambda call (here a moto server without the function: one line naming it)."""
    dev = synth.outdir / "stacks" / "pipeline-dev"
    assert not (dev / ".terraform").exists()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        aws = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }
        run = subprocess.run(
            [sys.executable, "-m", "pipeline_ops.kill_switch", "stop", str(dev), "--confirm", "dev"],
            cwd=REPO,
            env={**os.environ, **aws, "REASON": "it's a runaway"},
            capture_output=True,
            text=True,
        )
    finally:
        server.stop()
    assert (run.returncode, run.stderr.strip()) == (
        2,
        "error: function odins-ravne-dev-budget-shutdown not found; is dev deployed? (make deploy ENV=dev)",
    )


def test_a_reason_with_an_apostrophe_is_no_shell_error() -> None:
    """make passes REASON to the recipe's environment, not into its shell words."""
    lines = recipe("emergency-stop", "dev", "CONFIRM=dev", "REASON=it's a runaway manifest")
    line = lines[index_of(lines, "pipeline_ops.kill_switch stop")]
    assert subprocess.run(["sh", "-n", "-c", line], capture_output=True).returncode == 0, line
