"""The stage images follow the rules of images/README.md, checked with a real Dockerfile parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

IMAGES = Path(__file__).resolve().parent.parent / "images"
STAGES = ("stage0", "stage1", "stage2")


@pytest.fixture(params=STAGES)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, DockerfileParser]:
    parser = DockerfileParser(path=str(IMAGES / request.param / "Dockerfile"))
    return request.param, parser


def test_base_image_pinned_by_tag_and_digest(dockerfile: tuple[str, DockerfileParser]) -> None:
    _, parser = dockerfile
    for base in parser.parent_images:
        name, _, digest = base.partition("@")
        assert ":" in name and not name.endswith(":latest"), base
        assert digest.startswith("sha256:") and len(digest) == 71, base


def test_runs_as_non_root_numeric_user(dockerfile: tuple[str, DockerfileParser]) -> None:
    _, parser = dockerfile
    instructions = [i["instruction"] for i in parser.structure]
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert instructions.index("ENTRYPOINT") > max(i for i, v in enumerate(instructions) if v == "USER")


def test_exec_form_entrypoint_and_no_remote_add(dockerfile: tuple[str, DockerfileParser]) -> None:
    stage, parser = dockerfile
    (entrypoint,) = [i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT"]
    assert entrypoint.startswith("["), "exec form, so signals reach the stage"
    assert not [i for i in parser.structure if i["instruction"] == "ADD"]
    copies = " ".join(i["value"] for i in parser.structure if i["instruction"] == "COPY")
    assert f"{stage}/stage.py" in copies and "runtime/stage_runtime.py" in copies


def test_requirements_pinned() -> None:
    for stage in STAGES:
        for line in (IMAGES / stage / "requirements.txt").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert "==" in line, f"{stage}: {line} is not pinned"
