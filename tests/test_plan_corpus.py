"""The plan review against a corpus: real Terraform 1.11 plans made against the emulator
(tests/plans/real, by tests/plans/generate.py) and hand-made hostile and broken ones where no
emulator run produces them (tests/plans/hand, by tests/plans/hostile.py). What the review must
say of each (verdict, counts, findings, or the one-line refusal) is written by hand in
tests/plans/expected.json. Every fixture also goes through the command line: no secret of any
fixture may reach a file it writes, and no fixture that is not a complete, applyable plan may
come out "ok"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from tests.plans import generate, hostile
from tools import plan_review

PLANS = Path(__file__).resolve().parent / "plans"
EXPECTED = json.loads((PLANS / "expected.json").read_text())
PRICES = json.loads(plan_review.DEFAULT_PRICES.read_text())
FIXTURES = {p.stem: p for folder in ("real", "hand") for p in sorted((PLANS / folder).glob("*.json"))}
SECRETS = (*generate.SECRETS.values(), *hostile.SECRETS)


def reviewed(name: str) -> plan_review.Review:
    return plan_review.review(json.loads(FIXTURES[name].read_text()), title=name, prices=PRICES)


def run_cli(name: str, tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stderr, every file written joined) of the command line on one fixture."""
    code = plan_review.main(
        [
            str(FIXTURES[name]),
            "--title",
            name,
            "--markdown",
            str(tmp_path / "review.md"),
            "--json",
            str(tmp_path / "review.json"),
            *args,
        ]
    )
    captured = capsys.readouterr()
    written = "".join(p.read_text() for p in sorted(tmp_path.iterdir()))
    return code, captured.err, written + captured.out


def test_corpus_is_complete() -> None:
    assert len(FIXTURES) >= 40 and set(FIXTURES) == set(EXPECTED)
    real = [n for n, p in FIXTURES.items() if p.parent.name == "real"]
    assert len(real) >= 40, "most fixtures are real Terraform plans"
    for case in (
        "moved-topic",
        "import-queue",
        "forget-key",
        "tainted-bucket",
        "sensitive-variables",
        "errored-precondition",
        "state-not-plan",
    ):
        assert FIXTURES[case].parent.name == "real"
    assert json.loads(FIXTURES["errored-precondition"].read_text())["errored"] is True
    assert json.loads(FIXTURES["forget-key"].read_text())["resource_changes"][0]["change"]["actions"] == ["forget"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_review_says_what_the_case_expects(name: str, tmp_path: Path, capsys) -> None:
    expected = EXPECTED[name]
    code, err, written = run_cli(name, tmp_path, capsys)
    for secret in SECRETS:
        assert secret not in written and secret not in err, f"{name} leaks {secret!r}"
    if "refused" in expected:
        assert code == 1 and err.count("\n") == 1 and err.startswith("error: ")
        assert expected["refused"] in err
        assert not (tmp_path / "review.json").exists()
        return
    summary = json.loads((tmp_path / "review.json").read_text())
    assert summary["verdict"] == expected["verdict"]
    assert code == {"BLOCKING": 2}.get(expected["verdict"], 0)
    assert {k: v for k, v in summary["counts"].items() if v} == expected["counts"]
    assert sorted((f["rule"], f["address"]) for f in summary["findings"]) == sorted(map(tuple, expected["findings"]))
    reasons = {c["address"]: c.get("reason") for c in summary["changes"]}
    for address, reason in expected.get("reasons", {}).items():
        assert reasons[address] == reason


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_nothing_but_a_complete_applyable_plan_is_ok(name: str) -> None:
    body = json.loads(FIXTURES[name].read_text())
    if not isinstance(body, dict) or body.get("errored") or body.get("complete") is False or "values" in body:
        assert EXPECTED[name].get("verdict") in (None, "BLOCKING")  # refused, or blocking
    if isinstance(body, dict) and body.get("applyable") is False:
        assert EXPECTED[name].get("verdict") in (None, "BLOCKING", "NO CHANGES")


def test_real_plans_show_every_section() -> None:
    assert reviewed("moved-bucket").moves == [{"from": "aws_s3_bucket.data", "to": "aws_s3_bucket.lake"}]
    assert reviewed("import-queue").imports[0]["address"] == "aws_sqs_queue.adopted"
    outputs = {o["name"]: o for o in reviewed("outputs-changed").outputs}
    assert outputs["token"]["before"] == outputs["token"]["after"] == "(sensitive)"
    assert outputs["region"]["after"] == "eu-north-1"
    assert reviewed("data-read-deferred").deferred_reads[0]["address"] == "data.aws_iam_policy_document.send"
    assert any(d["address"] == "aws_sqs_queue.jobs" for d in reviewed("drift-queue").drift)
    assert reviewed("incomplete-deferred-db-destroy").deferred[0]["address"] == "aws_db_instance.main"


def test_sensitive_marks_inside_attributes_are_honoured_everywhere() -> None:
    """Terraform marks a jsonencode()d document whole (assume_role_policy: true), list items
    ([true]) and nested output parts: each shows as (sensitive), nothing else of it."""
    plan = json.loads(FIXTURES["sensitive-variables"].read_text())
    role = next(r for r in plan["resource_changes"] if r["address"] == "aws_iam_role.partner")
    assert role["change"]["after_sensitive"]["assume_role_policy"] is True  # what Terraform 1.11 wrote
    result = reviewed("sensitive-variables")
    assert [p["note"] for p in result.policies] == ["the document is sensitive: its statements are not shown"]
    assert result.network[0]["added"] == ["ingress tcp 22-22 (sensitive)"]
    hand = reviewed("sensitive-inside-attributes")
    assert hand.outputs == [
        {
            "name": "nested",
            "action": "change",
            "before": {"a": ["x", "(sensitive)"]},
            "after": {"a": ["x", "(sensitive)"]},
        }
    ]
    cleaned = plan_review.sanitized(json.loads(FIXTURES["sensitive-inside-attributes"].read_text()))
    assert not any(secret in json.dumps(cleaned) for secret in hostile.SECRETS)


HEADINGS = re.compile(r"^### (.+?)(?: \(continued\))?$", re.MULTILINE)
# GitHub links @user / @org/team and #123 in text outside code (a zero-width space after the sign stops it).
LIVE_MENTION = re.compile(r"(?<![\w`])[@#][A-Za-z0-9]")


def rendered(markdown: str) -> str:
    """HTML as GitHub renders a comment: GFM with tables, strikethrough, autolinks and the tag filter;
    raw HTML passed through (unsafe) so any that slipped into the Markdown would show here."""
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def text_of(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize("name", ["injection-pr-text", "long-values", "sensitive-inside-attributes"])
def test_rendered_comment_shows_every_section_and_the_full_change_table(name: str) -> None:
    result = reviewed(name)
    parts = plan_review.render(result)
    html = "".join(rendered(p) for p in parts)
    _, sections = plan_review.sections(result)
    shown = [text_of(h) for h in re.findall(r"<h3>(.*?)</h3>", html)]
    for section in sections:  # every section heading visible as a heading
        assert text_of(rendered(section.heading)).strip() in shown
    assert len(shown) == sum(len(HEADINGS.findall(p)) for p in parts) >= len(sections)
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", html, re.DOTALL)
    assert len(rows) == len(result.changes), "one table row per change: no key broke the table"
    assert [a for _, a in rows] == [c["action"] for c in result.changes]
    for tag in ("<details", "<summary", "<!--", "<img", "</table>\n<p>", "<pre"):
        assert tag not in html
    assert "<a " not in html, "no link from plan text (URL, www., GH-n, SHA) and the review adds none"
    visible = text_of(html)
    assert not LIVE_MENTION.search(visible), LIVE_MENTION.search(visible)
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", "".join(parts)), "bidi controls are shown as escapes"
    for part in parts:  # the same text printed to the Actions log runs no workflow command
        assert not any(line.lstrip().startswith("::") for line in part.splitlines())
    if name == "long-values":
        assert "(100,000 chars)" in visible and len("".join(parts)) < 5_000


def test_twenty_thousand_changes_fit_five_parts_with_every_blocking_item_in_part_1() -> None:
    plan = hostile.big_plan(20_000)
    result = plan_review.review(plan_review.check_plan(plan, "big"), title="pipeline-prod", prices=PRICES)
    parts = plan_review.render(result)
    assert len(parts) == plan_review.MAX_PARTS and all(len(p) <= 65_536 for p in parts)
    first = rendered(parts[0])
    blocking = [f for f in result.findings() if f["severity"] == "blocking"]
    review = [f for f in result.findings() if f["severity"] == "review"]
    assert len(blocking) == 12 and len(review) == 30
    for finding in blocking + review:
        assert text_of(rendered(plan_review.esc(finding["address"]))).strip() in text_of(first)
    assert "Verdict: BLOCKING" in text_of(first) and "20000" not in first
    assert "Review cut after part 5" in parts[-1] and "review.md" in parts[-1]
    for part in parts[1:]:  # every later part re-opens its section and table header
        body = part.split("\n\n", 1)[1]
        assert body.startswith("### ")
        if "(continued)" in body.splitlines()[0]:
            assert body.splitlines()[2] == "| address | action | why |"
    full = plan_review.markdown(result)
    assert full.count("\n| ") == 20_000 + 1  # the whole table in review.md (header + rows)


def test_thousands_of_blocking_items_are_counted_per_module_in_part_1() -> None:
    """Too many items to list one by one: part 1 still accounts for every one, per module and rule."""
    plan = hostile.big_plan(6_000, blocking=3_000, review=0)
    result = plan_review.review(plan_review.check_plan(plan, "big"), title="pipeline-prod", prices=PRICES)
    parts = plan_review.render(result)
    assert len(parts) <= plan_review.MAX_PARTS and all(len(p) <= 65_536 for p in parts)
    first = text_of(rendered(parts[0]))
    assert "BLOCKING: 3000 item(s)" in first
    counted = [int(n) for n in re.findall(r"^(\d+) x stateful-destroy", first, re.MULTILINE)]
    assert len(counted) == 40 and sum(counted) == 3_000, "every module's blocking items counted in part 1"


def test_cost_section_appended_to_the_review_is_inert(tmp_path: Path, capsys) -> None:
    """``make plan`` appends ``pipeline_ops.cost``'s section to review.md: its price date, step names
    and throughput sources come from the plan's FAN_OUT, so they are escaped like the review's own text."""
    from pipeline_ops import cost

    review = tmp_path / "review.md"
    assert plan_review.main([str(FIXTURES["cost-fan-out-injection"]), "--title", "x", "--markdown", str(review)]) == 0
    assert cost.main([str(FIXTURES["cost-fan-out-injection"]), "--append", str(review)]) == 0
    err = capsys.readouterr().err
    assert not any(line.lstrip().startswith("::") for line in err.splitlines())
    parts = sorted(tmp_path.glob("review.part-*.md"))
    for text in [review.read_text(), *(p.read_text() for p in parts)]:
        html = rendered(text)
        assert "Cost per 1,000 images" in html
        for tag in ("<details", "<summary", "<!--", "<a "):
            assert tag not in html
        assert not LIVE_MENTION.search(text_of(html)), LIVE_MENTION.search(text_of(html))
        assert not any(line.lstrip().startswith("::") for line in text.splitlines())


def test_thousands_of_module_instances_with_a_blocking_item_each_are_all_counted_in_part_1() -> None:
    """3,000 for_each instances of one module call, one bucket destroy each: part 1 counts them per
    module call (instance keys together), not one heading per instance cut after part 5."""
    changes = []
    for i in range(3_000):
        module = f'module.site["camera-trap-{i:05d}"]'
        changes.append(hostile.rc(f"{module}.aws_s3_bucket.data", ["delete"], {"bucket": f"b{i}"}, None))
        changes[-1].update(module_address=module, type="aws_s3_bucket", name="data")
    result = plan_review.review(hostile.plan(*changes), title="pipeline-prod", prices=PRICES)
    parts = plan_review.render(result)
    first = text_of(rendered(parts[0]))
    assert "BLOCKING: 3000 item(s)" in first
    counted = [int(n) for n in re.findall(r"^(\d+) x stateful-destroy", first, re.MULTILINE)]
    assert counted == [3_000], "every blocking item counted in part 1"
    assert "module.site[*]: 3000 item(s)" in first and "all in review.json" in first


def test_the_job_summary_copy_of_a_big_review_is_cut_on_a_line_under_one_mebibyte(tmp_path: Path) -> None:
    """GitHub refuses a step summary over 1 MiB: review.summary.md (what the workflows append to it)
    is review.md cut at the last whole line under 1,000,000 UTF-8 bytes, saying where the rest is."""
    result = plan_review.review(hostile.big_plan(20_000), title="pipeline-prod", prices=PRICES)
    report = plan_review.markdown(result) + "\n" + "ä€ " * 400_000
    plan_review.write_review(tmp_path / "review.md", report, "pipeline-prod")
    summary = (tmp_path / "review.summary.md").read_text()
    size = len(summary.encode())
    assert len(report.encode()) > 2_000_000 and size <= plan_review.SUMMARY_LIMIT
    body, note = summary.split("\n\n**Review cut here", 1)
    assert report.startswith(body) and body.endswith("\n"), "cut after a whole line"
    assert "the full review.md is in the plan artifact" in note
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["review.md", "review.part-1.md"]
