"""The repository files the field expects, and that they agree with the pins they mirror."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO


def test_pre_commit_runs_the_pinned_ruff() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    ruff = next(r for r in config["repos"] if r["repo"].endswith("/ruff-pre-commit"))
    pinned = re.search(r"^ruff==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.M).group(1)
    assert ruff["rev"] == f"v{pinned}"
    assert {h["id"] for h in ruff["hooks"]} == {"ruff-check", "ruff-format"}


def test_dependabot_updates_every_pinned_ecosystem() -> None:
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    assert {u["package-ecosystem"] for u in config["updates"]} == {"pip", "npm", "github-actions"}


def test_conventional_files_exist() -> None:
    for name in (".editorconfig", ".github/CODEOWNERS", ".github/pull_request_template.md", "CHANGELOG.md"):
        assert (REPO / name).is_file(), name
    assert "## Unreleased" in (REPO / "CHANGELOG.md").read_text()
