"""The toolchain is pinned in one place (.tool-versions) and checked by `make setup` in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO
from tools import toolchain


def test_one_place_pins_every_tool() -> None:
    pins = toolchain.pins()
    assert set(pins) == {"python", "nodejs", "terraform"}
    assert int(pins["nodejs"].split(".")[0]) in (22, 24), "Node must be an LTS line jsii supports"
    steps = yaml.safe_load((REPO / ".github" / "actions" / "setup" / "action.yml").read_text())["runs"]["steps"]
    withs = [step.get("with", {}) for step in steps]
    assert {"python-version-file": ".tool-versions"} in withs and {"node-version-file": ".tool-versions"} in withs
    assert any(w.get("terraform_version") == pins["terraform"] for w in withs)


def test_no_jsii_warning_is_silenced() -> None:
    """The pinned Node is supported: nothing may hide jsii's end-of-life or deprecation warnings."""
    for path in (REPO / "Makefile", REPO / ".github" / "actions" / "setup" / "action.yml", REPO / ".ci" / "run"):
        assert "JSII_SILENCE" not in path.read_text(), path


def test_wrong_terraform_is_one_line(tmp_path: Path) -> None:
    """A machine whose terraform is another minor: one line naming the pin, before anything installs."""
    fake = tmp_path / "terraform"
    fake.write_text('#!/bin/sh\necho \'{"terraform_version": "1.5.7"}\'\n')
    fake.chmod(0o755)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.toolchain"],
        cwd=REPO,
        env=dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}"),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: terraform is 1.5.7; install Terraform {toolchain.pins()['terraform']} (.tool-versions)"
    )


def test_versions_match_at_the_pins_precision() -> None:
    assert toolchain.matches("1.11.4", "1.11") and toolchain.matches("22.23.3", "22")
    assert not toolchain.matches("20.20.2", "22") and not toolchain.matches("1.1.4", "1.11")
