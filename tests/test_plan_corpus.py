"""The plan review against a corpus: real plans made against the emulator (tests/plans/real, by
tests/plans/generate.py) and hand-made ones only where the emulator cannot produce them
(tests/plans/hand). What the review must say of each is written by hand in tests/plans/expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import plan_review

PLANS = Path(__file__).resolve().parent / "plans"
EXPECTED = json.loads((PLANS / "expected.json").read_text())
PRICES = json.loads(plan_review.DEFAULT_PRICES.read_text())
FIXTURES = {p.stem: p for folder in ("real", "hand") for p in sorted((PLANS / folder).glob("*.json"))}


def test_corpus_is_complete() -> None:
    assert len(FIXTURES) >= 40 and set(FIXTURES) == set(EXPECTED)
    real = [n for n, p in FIXTURES.items() if p.parent.name == "real"]
    assert len(real) > len(FIXTURES) / 2, "most fixtures are real emulator plans"
    for case in (
        "moved-topic",
        "import-queue",
        "forget-key",
        "tainted-bucket",
        "replace-requested-queue",
        "outputs-changed",
    ):
        assert FIXTURES[case].parent.name == "real"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_review_says_what_the_case_expects(name: str) -> None:
    expected = EXPECTED[name]
    result = plan_review.review(json.loads(FIXTURES[name].read_text()), title=name, approvals=[], prices=PRICES)
    assert result.verdict == expected["verdict"]
    assert {k: v for k, v in result.counts.items() if v} == expected["counts"]
    assert sorted((f["rule"], f["address"]) for f in result.findings()) == sorted(map(tuple, expected["findings"]))
    reasons = {c["address"]: c.get("reason") for c in result.changes}
    for address, reason in expected.get("reasons", {}).items():
        assert reasons[address] == reason


def test_real_plans_show_every_section() -> None:
    def reviewed(name: str) -> plan_review.Review:
        return plan_review.review(
            json.loads(FIXTURES[name].read_text()), title=name, approvals=[], prices=PRICES
        )

    assert reviewed("moved-bucket").moves == [{"from": "aws_s3_bucket.data", "to": "aws_s3_bucket.lake"}]
    assert reviewed("import-queue").imports[0]["address"] == "aws_sqs_queue.adopted"
    outputs = {o["name"]: o for o in reviewed("outputs-changed").outputs}
    assert outputs["token"]["before"] == outputs["token"]["after"] == "(sensitive)"
    assert outputs["region"]["after"] == "eu-north-1"
    assert reviewed("data-read-deferred").deferred_reads[0]["address"] == "data.aws_iam_policy_document.send"
    assert any(d["address"] == "aws_sqs_queue.jobs" for d in reviewed("drift-queue").drift)
