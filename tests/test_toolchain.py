"""The toolchain is pinned in one place (.tool-versions) and checked by `make setup` in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tools import toolchain


def test_one_place_pins_every_tool(tmp_path: Path) -> None:
    pins = toolchain.pins()
    assert set(pins) == {"python", "nodejs", "terraform"}
    assert int(pins["nodejs"].split(".")[0]) in (22, 24), "Node must be an LTS line jsii supports"
    steps = yaml.safe_load((REPO / ".github" / "actions" / "setup" / "action.yml").read_text())["runs"]["steps"]
    withs = [step.get("with", {}) for step in steps]
    assert {"python-version-file": ".tool-versions"} in withs and {"node-version-file": ".tool-versions"} in withs
    # Terraform's pin reaches setup-terraform through a step that reads .tool-versions (review #15).
    assert any(w.get("terraform_version") == "${{ steps.pins.outputs.terraform }}" for w in withs)
    reader = next(step for step in steps if step.get("id") == "pins")
    env = dict(os.environ, GITHUB_OUTPUT=str(tmp_path / "output"))
    subprocess.run(["bash", "-c", reader["run"]], cwd=REPO, env=env, check=True)
    assert (tmp_path / "output").read_text() == f"terraform={pins['terraform']}\n"


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


def npm_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """npm with its own cache (nothing served from the shared one) and no retries."""
    return dict(os.environ, npm_config_cache=str(tmp_path / "npm-cache"), npm_config_fetch_retries="0", **extra)


def install_node_in_a_child(tmp_path: Path, env: dict[str, str], before: str = "pass") -> subprocess.CompletedProcess:
    prefix = str(tmp_path / "node")
    install = f"toolchain.install_node('22.23.3', Path({prefix!r}))"
    code = f"from pathlib import Path; from tools import toolchain; {before}; {install}"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300
    )


@pytest.mark.terraform  # npm, an external tool (and the registry): not in make test-unit
def test_unreachable_registry_is_named_in_one_line(tmp_path: Path) -> None:
    """review #7: no silent minute and no unnamed error when the registry cannot be reached."""
    proc = install_node_in_a_child(tmp_path, npm_env(tmp_path, npm_config_registry="http://127.0.0.1:9/"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot reach http://127.0.0.1:9/ (ECONNREFUSED) to download node-{toolchain.platform()}@22.23.3; "
        "retry when online"
    ]
    assert not (tmp_path / "node").exists()


@pytest.mark.terraform  # npm, an external tool (and the registry): not in make test-unit
def test_a_download_that_hashes_otherwise_is_refused(tmp_path: Path) -> None:
    """The real package from the registry, checked against a wrong recorded sha512: refused in one
    line naming both digests, nothing unpacked. The digest it reports is the one recorded in
    tools/toolchain.py, so the recorded value is the registry's."""
    key = ("22.23.3", toolchain.platform())
    before = f"toolchain.NODE_INTEGRITY[{key!r}] = 'sha512-wrong'"
    proc = install_node_in_a_child(tmp_path, dict(os.environ, npm_config_fetch_retries="0"), before=before)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: integrity mismatch for node-{key[1]}@22.23.3: downloaded {toolchain.NODE_INTEGRITY[key]}, "
        "tools/toolchain.py records sha512-wrong"
    ]
    assert not (tmp_path / "node").exists()


def test_node_is_the_platform_package_checked_against_its_recorded_sha512() -> None:
    """No install script fetches the binary (ignore-scripts leaves none): the platform package holds
    it, and every platform we run on has its sha512 recorded."""
    assert ("22.23.3", "linux-x64") in toolchain.NODE_INTEGRITY
    assert ("22.23.3", "linux-arm64") in toolchain.NODE_INTEGRITY
    assert toolchain.pins()["nodejs"] == "22.23.3", "a new pin needs its NODE_INTEGRITY lines"
    assert toolchain.platform() in {"linux-x64", "linux-arm64"}
