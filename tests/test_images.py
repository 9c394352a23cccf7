"""The stage images follow the rules of images/README.md, checked with a real Dockerfile parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

IMAGES = Path(__file__).resolve().parent.parent / "images"
STAGES = ("stage0", "stage1", "stage2")
DOCKERFILES = {"stage0": IMAGES / "stage0" / "Dockerfile", "gpu": IMAGES / "gpu.Dockerfile"}


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, DockerfileParser]:
    parser = DockerfileParser(path=str(DOCKERFILES[request.param]))
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
    entry = "${STAGE}/stage.py" if stage == "gpu" else f"{stage}/stage.py"
    assert entry in copies and "runtime/stage_runtime.py" in copies


def test_every_stage_has_an_image() -> None:
    from pipeline_ops.images import dockerfile_args

    for stage in STAGES:
        args = dockerfile_args(stage)
        assert Path(args[1]).exists() and (IMAGES / stage / "stage.py").exists()
        if "gpu.Dockerfile" in args[1]:
            assert args[2:] == ["--build-arg", f"STAGE={stage}"]


def test_requirements_pinned() -> None:
    for file in (IMAGES / "stage0" / "requirements.txt", IMAGES / "runtime" / "requirements-gpu.txt"):
        for line in file.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert "==" in line, f"{file.name}: {line} is not pinned"
