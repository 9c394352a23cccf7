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
from urllib.parse import urlsplit

import pytest

import modules  # noqa: F401  (lean provider loader first)
from local.emulator import free_port

REPO = Path(__file__).resolve().parent.parent
EMULATOR_SETUP = "pipeline_ops.models:ensure_emulator"  # as the Makefile's: the models the stages load
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
# The same Terraform CLI config as the Makefile (provider mirror when the machine has one).
if (REPO / "build" / "terraformrc").exists():
    os.environ["TF_CLI_CONFIG_FILE"] = str(REPO / "build" / "terraformrc")
# The same Node as the Makefile (the pinned LTS make setup installs when the machine's is older).
if (REPO / ".toolchain" / "node" / "node_modules" / ".bin" / "node").exists():
    os.environ["PATH"] = f"{REPO / '.toolchain' / 'node' / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"


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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each module's ``destroys_stack`` tests run after that module's other tests (they tear its
    stack down).

    Under pytest-xdist (``make test``, ``--dist loadgroup``) the tests of one module that use the
    applied stack are one group, on one worker: they share that module's emulator and stack, and
    the run tests their loopback weather server. ``tryfirst``: xdist reads the groups in its own hook
    of this name, so they must be set before it runs.
    """

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(module(item), index)
    items.sort(key=lambda item: (first_seen[module(item)], item.get_closest_marker("destroys_stack") is not None))
    for item in items:
        if "deployed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(f"stack-{module(item)}"))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    """A moto server of this module's own, started and stopped through local.emulator (by PID)."""
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
        [sys.executable, "-m", "local.emulator", "start", "--port", str(port), "--setup", EMULATOR_SETUP],
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


def claim_the_group(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fail when a module's stack tests run on two xdist workers. Found in make test: xdist 3.8 does
    not group on pytest 9.2 (pytest-xdist#1386), nor when the group mark comes after its own hook;
    each worker then deployed a stack of its own, and their runs shared the one loopback weather
    port, so one run's lookups were refused when another run stopped its server."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")  # one per session: a reused --basetemp keeps old claims
    claim = tmp_path_factory.getbasetemp().parent / f"stack-group-{run}-{request.module.__name__}"
    try:
        with claim.open("x") as handle:
            handle.write(worker)
    except FileExistsError:
        owner = claim.read_text()
        if owner != worker:
            pytest.fail(f"{request.module.__name__}: stack tests on {owner} and {worker}; xdist did not group them")


def isolated_weather_port(config: dict) -> None:
    """Point the weather function at a loopback port of this stack's own: a run serves the weather
    API on the deployed port, so stacks deployed side by side (or beside a developer's
    ``make run-local``) never share or stop each other's server."""
    from pipeline_ops.run import loopback_port

    port = free_port()
    for function in config.get("resource", {}).get("aws_lambda_function", {}).values():
        variables = function.get("environment", {}).get("variables", {})
        url = variables.get("WEATHER_BASE_URL", "")
        if loopback_port(url):
            parts = urlsplit(url)
            variables["WEATHER_BASE_URL"] = parts._replace(netloc=f"{parts.hostname}:{port}").geturl()


@pytest.fixture(scope="module")
def deployed(
    request: pytest.FixtureRequest, emulator, synth: SynthResult, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The synthesized local stack, copied with its state redirected and a weather port of its own,
    applied to this module's emulator."""
    from local import deploy

    claim_the_group(request, tmp_path_factory)
    stack = tmp_path_factory.mktemp("stack") / "pipeline-local"
    shutil.copytree(
        synth.outdir / "stacks" / "pipeline-local", stack, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    config = json.loads((stack / "cdk.tf.json").read_text())
    config["terraform"]["backend"]["local"]["path"] = str(emulator["state"] / "terraform.tfstate")
    isolated_weather_port(config)
    (stack / "cdk.tf.json").write_text(json.dumps(config))
    started = time.monotonic()
    assert deploy.apply(stack) == 0
    print(f"applied the local stack in {time.monotonic() - started:.1f}s")
    return stack


@pytest.fixture(scope="module")
def aws(deployed):
    """boto3 clients for this module's emulator, made once: each set costs ~1.3 CPU s (service models)."""
    from local.status import clients

    return clients()
