"""``make synth`` skips cdktf when no input changed, and redoes it for every input that can change the output."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools import synth


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A copy of the app's inputs, a site-packages with two distributions and the npm packages."""
    root = tmp_path / "repo"
    for name in synth.APP_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in synth.APP_FILES:
        if (REPO / name).exists():
            shutil.copyfile(REPO / name, root / name)
    site = tmp_path / "site"
    for dist in ("cdktf-0.21.0.dist-info", "pydantic-2.14.4.dist-info"):
        (site / dist).mkdir(parents=True)
    modules = root / "node_modules"
    for package in synth.NPM_PACKAGES:
        (modules / package).mkdir(parents=True)
        (modules / package / "package.json").write_text(json.dumps({"version": "0.21.0"}))
    return {"root": root, "site": site, "node_modules": modules}


def digest(tree: dict[str, Path], env: dict[str, str] | None = None) -> str:
    return synth.inputs_digest(tree["root"], env or {}, tree["site"], tree["node_modules"])


def test_same_inputs_same_hash_and_unrelated_files_do_not_count(tree) -> None:
    before = digest(tree)
    assert digest(tree) == before
    (tree["root"] / "README.md").write_text("docs change nothing")
    (tree["root"] / "modules" / "__pycache__").mkdir(exist_ok=True)
    (tree["root"] / "modules" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert digest(tree) == before


def test_changed_profile_value_resynthesizes(tree) -> None:
    before = digest(tree)
    profile = tree["root"] / "conf" / "profiles" / "dev.yaml"
    profile.write_text(profile.read_text().replace("egress: endpoints", "egress: nat"))
    assert digest(tree) != before


def test_changed_handler_file_resynthesizes(tree) -> None:
    before = digest(tree)
    handler = tree["root"] / "lambda_src" / "guard_budget" / "handler.py"
    handler.write_text(handler.read_text() + "\n# one more line\n")
    assert digest(tree) != before


def test_changed_package_version_resynthesizes(tree) -> None:
    before = digest(tree)
    (tree["site"] / "pydantic-2.14.4.dist-info").rename(tree["site"] / "pydantic-2.14.5.dist-info")
    assert digest(tree) != before
    after_python = digest(tree)
    (tree["node_modules"] / "cdktf-cli" / "package.json").write_text(json.dumps({"version": "0.21.1"}))
    assert digest(tree) != after_python


def test_environment_variables_that_matter(tree) -> None:
    before = digest(tree)
    assert digest(tree, {"SYNTH_ENVS": "local"}) != before
    assert digest(tree, {"CDKTF_CONTEXT_JSON": "{}"}) != before
    assert digest(tree, {"HOME": "/elsewhere", "CDKTF_OUTDIR": "x"}) == before
    other_profiles = tree["root"].parent / "profiles"
    shutil.copytree(tree["root"] / "conf" / "profiles", other_profiles)
    with_dir = digest(tree, {"ODINS_PROFILE_DIR": str(other_profiles)})
    (other_profiles / "local.yaml").write_text((other_profiles / "local.yaml").read_text() + "\n# edited\n")
    assert digest(tree, {"ODINS_PROFILE_DIR": str(other_profiles)}) != with_dir


def run_synth(output: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SYNTH_ENVS="local", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "tools.synth", "--output", str(output), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.terraform  # a whole synth or make in a subprocess: make test, not test-unit
def test_real_synth_is_skipped_when_nothing_changed_and_redone_when_output_was_touched(tmp_path: Path) -> None:
    output = tmp_path / "cdktf.out"
    # The app runs as `python -O`, whose bytecode pip does not write: the synth lets the app write it
    # (even where PYTHONDONTWRITEBYTECODE is set), or each synth recompiles what it imports.
    optimized = Path(importlib.util.cache_from_source(str(REPO / "stacks" / "pipeline_stack.py"), optimization=1))
    optimized.unlink(missing_ok=True)
    first = run_synth(output)
    assert first.returncode == 0, first.stdout + first.stderr
    assert optimized.is_file(), f"the -O app wrote no {optimized.name}"
    stack = output / "stacks" / "pipeline-local" / "cdk.tf.json"
    written = stack.stat().st_mtime_ns
    second = run_synth(output)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stdout
    assert stack.stat().st_mtime_ns == written, "a no-change synth must not rewrite the output"
    assert run_synth(output, "--check").returncode == 0
    stack.write_text(stack.read_text().replace('"odins-ravne-local', '"edited-by-hand', 1))
    assert run_synth(output, "--check").returncode == 1, "a hand-edited output must be synthesized again"
