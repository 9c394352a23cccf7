"""Runbooks and docs name only make targets that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
DOCS = [
    *sorted((REPO / "docs" / "runbooks").glob("*.md")),
    *(REPO / "docs" / name for name in ("reference.md", "benchmarks.md", "troubleshooting.md")),
    REPO / "README.md",
    REPO / "CONTRIBUTING.md",
]
RUNBOOKS = {"first-deploy", "deploy-and-rollback", "alert-response", "troubleshooting", "maintenance"}


def test_every_runbook_exists() -> None:
    assert {p.stem for p in (REPO / "docs" / "runbooks").glob("*.md")} >= RUNBOOKS
    assert "MIT License" in (REPO / "LICENSE").read_text()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_named_make_targets_exist(doc: Path) -> None:
    # A command: `make x ...` in backticks, or a line of a code block that starts with make.
    named = set(re.findall(r"(?:`|^\s*)make ([a-z][a-z0-9-]*)", doc.read_text(), re.MULTILINE))
    assert named, f"{doc.name} names no make target"
    assert named <= TARGETS, f"{doc.name} names targets the Makefile lacks: {sorted(named - TARGETS)}"


DIAGRAMS = REPO / "docs" / "diagrams"
NAMES = ("overview", "architecture", "dataflow", "security-iam", "security-encryption", "security-network", "cost")


def test_diagrams_are_drawn_from_the_synthesized_config(synth) -> None:
    """`make docs` output is current: each committed DOT source is what prod's synthesized config
    gives now, and each committed SVG was rendered from exactly that source."""
    import json

    from pipeline_ops import diagrams

    sources = diagrams.diagrams(json.loads((synth.outdir / "stacks" / "pipeline-prod" / "cdk.tf.json").read_text()))
    assert set(sources) == set(NAMES)
    for name, source in sources.items():
        committed = DIAGRAMS / f"{name}.dot"
        assert committed.exists() and committed.read_text() == source, f"docs/diagrams/{name} is stale: run `make docs`"
        stamp = f"<!-- source sha256: {diagrams.source_hash(source)} -->"
        assert stamp in (DIAGRAMS / f"{name}.svg").read_text(), f"{name}.svg was not rendered from {name}.dot"
        assert (DIAGRAMS / f"{name}.png").stat().st_size > 1000
    # What each diagram must show, not just that it exists.
    assert "odins-ravne-prod-stage1" in sources["dataflow"] and '"stage0/"' in sources["dataflow"]
    assert "assumed by states.amazonaws.com" in sources["security-iam"] and "encrypts" in sources["security-encryption"]
    assert "runs in" in sources["security-network"]
    for name, source in sources.items():
        assert "subgraph cluster_legend" in source and "label=Legend" in source, f"{name} has no legend"
    overview_boxes = [ln for ln in sources["overview"].splitlines() if "[label=" in ln and "legend_" not in ln]
    assert 10 <= len(overview_boxes) <= 16, f"the overview has {len(overview_boxes)} boxes; about a dozen read well"
    assert "per 1,000 images" in sources["cost"] and "USD/month" in sources["cost"]
    assert "odins-ravne-prod-pipeline" in sources["architecture"]


def test_readme_embeds_the_overview_and_links_the_diagrams() -> None:
    readme = (REPO / "README.md").read_text()
    assert "![" in readme and "(docs/diagrams/overview.svg)" in readme
    for name in NAMES:
        assert f"docs/diagrams/{name}.svg" in readme


def test_no_stale_diagram_files() -> None:
    """A diagram that is no longer drawn (e.g. the old single security view) is not left behind."""
    drawn = {f"{name}.{ext}" for name in NAMES for ext in ("dot", "svg", "png")}
    assert {p.name for p in DIAGRAMS.iterdir()} == drawn


def test_readme_figures_and_tables_are_what_the_code_gives(synth) -> None:
    """Every generated block of the README (figures, daily targets, functions) is current: `make docs`."""
    from pipeline_ops import readme

    configs = {env: synth.pipeline(env) for env in readme.ENVS}
    text = (REPO / "README.md").read_text()
    assert {m.group(2) for m in readme.BLOCK.finditer(text)} == {"figures", "daily", "functions"}
    assert readme.render(text, readme.blocks(configs)) == text, "README's generated blocks are stale: run `make docs`"


def test_readme_layout_lists_every_top_level_folder() -> None:
    """The layout table names each tracked top-level folder, and only folders that exist."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    folders = {path.split("/")[0] for path in tracked.splitlines() if "/" in path}
    text = (REPO / "README.md").read_text()
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`/]+)/`", layout, re.M))
    assert listed == folders, f"missing: {sorted(folders - listed)}, gone: {sorted(listed - folders)}"
    assert len(text.splitlines()) < 250, "the README is a front door: under 250 lines"


def test_lambda_readme_lists_every_function() -> None:
    """lambda_src/README.md's table names every handler folder (it once left batch_metrics out)."""
    text = (REPO / "lambda_src" / "README.md").read_text()
    for handler in sorted((REPO / "lambda_src").glob("*/handler.py")):
        assert f"| `{handler.parent.name}` |" in text, handler.parent.name


def test_readme_prerequisites_are_the_pins() -> None:
    """The README's versions are .tool-versions' (the one place they are pinned)."""
    from tools import toolchain

    pins = toolchain.pins()
    prerequisites = (REPO / "README.md").read_text().split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    assert f"| Python | {pins['python']} |" in prerequisites
    assert f"| Terraform | {pins['terraform']} |" in prerequisites
    assert f"({pins['nodejs']})" in prerequisites and f"| Node.js | {pins['nodejs'].split('.')[0]} LTS" in prerequisites


def test_reference_repeats_none_of_the_generated_figures() -> None:
    """Figures the code derives live only in the README's generated block, which a test keeps
    current; a copy in reference.md went stale unseen (review #11: 275,000 vs 200,000 images)."""
    text = (REPO / "docs" / "reference.md").read_text()
    derived = {
        "a monthly cost": r"\d[\d,.]* USD/month",
        "the largest execution's size": r"largest (?:execution|manifest)[^.]{0,40}?\d[\d,]* images",
        "a resource count": r"\d+ (?:Terraform )?resources (?:per|in) (?:env|prod|dev|staging)",
    }
    for what, pattern in derived.items():
        found = re.search(pattern, text)
        assert not found, f"reference.md states {what} ({found.group(0)!r}): point to the README's generated figures"
