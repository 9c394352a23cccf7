"""The layering the README promises: ``tools/`` works on any Terraform JSON and imports nothing from
``pipeline_ops/`` or ``modules/``; ``local/`` (generic emulator tooling) imports nothing from
``pipeline_ops/`` (the pipeline's run and model set-up reach it as parameters)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {"tools": ("pipeline_ops", "modules"), "local": ("pipeline_ops",)}


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(package: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(package.parent)} imports {name}"
        for path in package.rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in forbidden
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    assert violations(REPO / package, FORBIDDEN[package]) == []


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    """A function-level import counts as much as a top-level one."""
    package = tmp_path / "tools"
    package.mkdir()
    (package / "x.py").write_text("def f():\n    from pipeline_ops.images import dockerfile_for\n")
    (package / "y.py").write_text("import modules.iam\n")
    assert violations(package, FORBIDDEN["tools"]) == [
        "tools/x.py imports pipeline_ops.images",
        "tools/y.py imports modules.iam",
    ]
