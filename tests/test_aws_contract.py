"""docs/aws-contract.md covers what the stacks synthesize, and what it says checks a rule exists.

Every resource type of every synthesized stack (each env's pipeline stack and each account's state
bootstrap stack) has its row in the resource-type table, every IAM role its section, every row an
AWS documentation page, and every checker a row names is real: a preflight rule
(``preflight:<rule>``), a tool file (``tools/x.py``) or a test (``tests/x.py::test_y``); a row with
none says "unproven".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO, SynthResult
from tools import preflight

CONTRACT = REPO / "docs" / "aws-contract.md"
PREFLIGHT = re.compile(r"`preflight:([a-z0-9-]+)`")
TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
TOOL = re.compile(r"`(tools/\w+\.py)`")
ENVS = r"(dev|staging|prod|local)"


def section(text: str, heading: str) -> str:
    """The body of a ``## heading`` up to the next ``## ``."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> dict[str, list[str]]:
    """Resource type -> its cells, from the resource-type table."""
    rows = {}
    for line in section(text, "Resource types").splitlines():
        match = re.match(r"\| `(aws_[a-z0-9_]+)` \|", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    return rows


def missing_checkers(text: str, repo: Path = REPO) -> list[str]:
    """Every checker the text names that does not exist."""
    missing = [f"preflight:{rule}" for rule in PREFLIGHT.findall(text) if rule not in preflight.CHECKS]
    for path, name in TEST.findall(text):
        file = repo / path
        if not file.is_file() or not re.search(rf"^def {name}\(", file.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    missing += [path for path in TOOL.findall(text) if not (repo / path).is_file()]
    return sorted(set(missing))


@pytest.fixture(scope="module")
def contract() -> str:
    return CONTRACT.read_text()


def test_every_synthesized_resource_type_has_a_row(synth: SynthResult, contract: str) -> None:
    synthesized = {type_ for stack in synth.stacks.values() for type_ in stack.get("resource", {})}
    rows = table_rows(contract)
    assert sorted(synthesized - rows.keys()) == [], "add a row to docs/aws-contract.md for each"
    assert sorted(rows.keys() - synthesized) == [], "no stack synthesizes these: remove their rows"


def test_every_row_names_its_checker_and_aws_page(contract: str) -> None:
    for type_, cells in table_rows(contract).items():
        assert len(cells) == 4, f"{type_}: want 4 cells, got {len(cells)}"
        _, rules, checked, docs = cells
        assert rules, type_
        named = PREFLIGHT.search(checked) or TEST.search(checked) or TOOL.search(checked)
        assert named or "unproven" in checked, f"{type_}: name a checker or say unproven"
        assert "https://docs.aws.amazon.com/" in docs or "https://registry.terraform.io/" in docs, type_


def test_every_named_checker_exists(contract: str) -> None:
    assert missing_checkers(contract) == []


def test_a_checker_that_does_not_exist_is_caught(contract: str) -> None:
    broken = contract.replace("`preflight:names`", "`preflight:no-such-rule`", 1)
    broken = broken.replace("::test_network`", "::test_no_such_test`", 1)
    assert missing_checkers(broken) == ["preflight:no-such-rule", "tests/test_data_compute.py::test_no_such_test"]


def test_every_preflight_rule_is_in_the_contract(contract: str) -> None:
    assert sorted(set(preflight.CHECKS) - set(PREFLIGHT.findall(contract))) == []


def test_every_role_has_a_section(synth: SynthResult, contract: str) -> None:
    headings = set(re.findall(r"^### (\S+)$", section(contract, "Roles"), re.MULTILINE))
    roles = {
        re.sub(rf"-{ENVS}-", "-<env>-", role["name"])
        for stack in synth.stacks.values()
        for role in stack.get("resource", {}).get("aws_iam_role", {}).values()
    }
    assert sorted(roles - headings) == [], "add a ### section under ## Roles for each"
