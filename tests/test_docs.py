"""Runbooks and docs name only make targets that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
DOCS = [*sorted((REPO / "docs" / "runbooks").glob("*.md")), REPO / "README.md", REPO / "CONTRIBUTING.md"]
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
