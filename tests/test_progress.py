"""Long commands show Terraform's own progress, keep a full log, and print plain text when piped."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools import progress

pytestmark = pytest.mark.terraform

ESC = "\x1b"


def terraform_data_config(folder: Path, count: int) -> None:
    """``terraform_data`` is built into Terraform: a real apply with no provider and no network."""
    folder.mkdir(parents=True, exist_ok=True)
    resources = {f"r{i}": {"input": i} for i in range(count)}
    (folder / "main.tf.json").write_text(json.dumps({"resource": {"terraform_data": resources}}))
    subprocess.run(["terraform", "init", "-no-color"], cwd=folder, capture_output=True, check=True)


def test_apply_counts_terraforms_own_lines_and_logs_everything(tmp_path: Path, capfd) -> None:
    stack = tmp_path / "stack"
    terraform_data_config(stack, 4)
    log = tmp_path / "apply.log"
    proc = progress.run(
        ["terraform", "apply", "-auto-approve", "-no-color"], cwd=stack, env=dict(os.environ), label="demo", log=log
    )
    assert proc.returncode == 0 and "Apply complete! Resources: 4 added" in proc.stdout
    shown = capfd.readouterr().err
    assert "demo: 4/4 done" in shown  # the total from Terraform's "Plan: 4 to add" line
    assert ESC not in shown  # stderr is not a terminal here: no redraws
    assert "Apply complete!" in log.read_text() and "$ terraform apply" in log.read_text()


def test_failure_prints_the_log_path(tmp_path: Path, capfd) -> None:
    stack = tmp_path / "broken"
    terraform_data_config(stack, 1)
    (stack / "main.tf.json").write_text(json.dumps({"resource": {"terraform_data": {"x": {"nope": 1}}}}))
    proc = progress.run(["terraform", "plan", "-no-color"], cwd=stack, env=dict(os.environ), label="broken plan")
    assert proc.returncode == 1 and "Extraneous JSON object property" in proc.stderr
    line = next(ln for ln in capfd.readouterr().err.splitlines() if "failed" in ln)
    logged = Path(line.split("full log: ", 1)[1])
    assert logged.parent == progress.LOGS and "Extraneous JSON object property" in logged.read_text()


def test_cost_piped_prints_no_escape_codes() -> None:
    """`make cost ENV=prod | cat`: the synth's spinner stays in the log, the answer is plain text."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "cost", "ENV=prod", "FORCE_SYNTH=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ESC not in proc.stdout and ESC not in proc.stderr
    assert "per 1,000 images" in proc.stdout


def test_detailed_exitcode_changes_are_not_a_failure(tmp_path: Path, capfd) -> None:
    """``plan -detailed-exitcode`` exits 2 when the plan has changes (Terraform's documented exit
    codes: https://developer.hashicorp.com/terraform/cli/commands/plan#detailed-exitcode): no "failed"."""
    stack = tmp_path / "stack"
    terraform_data_config(stack, 2)
    cmd = ["terraform", "plan", "-detailed-exitcode", "-no-color", "-input=false"]
    proc = progress.run(cmd, cwd=stack, env=dict(os.environ), label="changes", ok=(0, 2))
    assert proc.returncode == 2 and "Plan: 2 to add" in proc.stdout
    shown = capfd.readouterr().err
    assert "failed" not in shown and "changes: 0/2 done" in shown
