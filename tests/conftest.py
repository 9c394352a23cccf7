"""One synthesized app per test session: synth is the slow part, every test reads its output."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import modules  # noqa: F401  (lean provider loader first)

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


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    from conf import known_environments
    from main import build_app

    outdir = tmp_path_factory.mktemp("cdktf.out")
    app = build_app(known_environments(), outdir=str(outdir))
    app.synth()
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
