"""One synthesized app per test session: synth is the slow part, every test reads its output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import modules  # noqa: F401  (lean provider loader first)
from local.emulator import free_port

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
# The same Terraform CLI config as the Makefile (provider mirror when the machine has one).
if (REPO / "build" / "terraformrc").exists():
    os.environ["TF_CLI_CONFIG_FILE"] = str(REPO / "build" / "terraformrc")


@dataclass
class SynthResult:
    outdir: Path
    stacks: dict[str, dict]

    def stack(self, name: str) -> dict:
        return self.stacks[name]

    def stack_json(self, name: str) -> str:
        """The stack as cdktf's ``Testing`` matchers expect it."""
        return json.dumps(self.stacks[name])

    def pipeline(self, env: str) -> dict:
        return self.stacks[f"pipeline-{env}"]

    def resources(self, env: str, type_: str) -> dict[str, dict]:
        return self.pipeline(env).get("resource", {}).get(type_, {})

    def only(self, env: str, type_: str) -> dict:
        found = self.resources(env, type_)
        assert len(found) == 1, f"expected one {type_} in {env}, found {sorted(found)}"
        return next(iter(found.values()))


def shared_synth() -> Path | None:
    """``ODINS_TEST_SYNTH=<dir>`` (set by ``make test``, which synthesizes first): the whole app is
    there, current for this checkout (tools.synth's input hash), so parallel workers share it."""
    folder = os.environ.get("ODINS_TEST_SYNTH")
    if not folder:
        return None
    from tools import synth

    env = {k: v for k, v in os.environ.items() if k != "SYNTH_ENVS"}
    if not synth.up_to_date(Path(folder), synth.inputs_digest(env=env)):
        raise pytest.UsageError(f"ODINS_TEST_SYNTH={folder} is not a current synth of every env; run `make synth`")
    return Path(folder)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    from conf import known_environments
    from main import build_app

    outdir = shared_synth()
    if outdir is None:
        outdir = tmp_path_factory.mktemp("cdktf.out")
        build_app(known_environments(), outdir=str(outdir)).synth()
    stacks = {
        d.name: json.loads((d / "cdk.tf.json").read_text())
        for d in sorted((outdir / "stacks").iterdir())
        if (d / "cdk.tf.json").exists()
    }
    return SynthResult(outdir=outdir, stacks=stacks)


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    """A writable copy of conf/profiles for tests that break a profile on purpose."""
    target = tmp_path / "profiles"
    shutil.copytree(REPO / "conf" / "profiles", target)
    return target


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``destroys_stack`` run after every other test (they tear the session's stack down).

    Under pytest-xdist (``make test``), every emulator test goes to one worker (``--dist loadgroup``):
    they share one emulator and one applied stack, the critical path that the other workers overlap.
    """
    items.sort(key=lambda item: item.get_closest_marker("destroys_stack") is not None)
    for item in items:
        if item.get_closest_marker("emulator"):
            item.add_marker(pytest.mark.xdist_group("emulator"))


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    """A moto server of our own, started and stopped through local.emulator (by PID)."""
    state = tmp_path_factory.mktemp("emulator")
    port = free_port()
    env = {
        "EMULATOR_STATE_DIR": str(state),
        "EMULATOR_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "eu-north-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    started = subprocess.run(
        [sys.executable, "-m", "local.emulator", "start", "--port", str(port)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    yield {"port": port, "state": state}
    subprocess.run([sys.executable, "-m", "local.emulator", "stop"], cwd=REPO, timeout=60, check=False)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def deployed(emulator, synth: SynthResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's synthesized local stack, copied with its state redirected, applied."""
    from local import deploy

    stack = tmp_path_factory.mktemp("stack") / "pipeline-local"
    shutil.copytree(
        synth.outdir / "stacks" / "pipeline-local", stack, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    config = json.loads((stack / "cdk.tf.json").read_text())
    config["terraform"]["backend"]["local"]["path"] = str(emulator["state"] / "terraform.tfstate")
    (stack / "cdk.tf.json").write_text(json.dumps(config))
    started = time.monotonic()
    assert deploy.apply(stack) == 0
    print(f"applied the local stack in {time.monotonic() - started:.1f}s")
    return stack


@pytest.fixture
def aws(deployed):
    from local.status import clients

    return clients()
