"""Every alarm links to a runbook that exists; every runbook names only make targets that exist;
the dashboard shows every alarm's state and links the runbooks."""

from __future__ import annotations

import json
import re

import pytest

from conf.profile import load_profile
from tests.conftest import REPO, SynthResult
from tools import make_help

RUNBOOKS = REPO / "docs" / "runbooks"
ENVS = ("local", "dev", "staging", "prod")
# Absolute (review #12): the CloudWatch console resolves a relative link against its own URL.
LINK = re.compile(r"Runbook: (https://\S+/)(docs/runbooks/[a-z0-9-]+\.md) \(ENV=([a-z]+)\)$")
# `make <target>` in prose or code; the target is the first word after make (flags skipped).
MAKE_CALL = re.compile(r"\bmake (?:-[a-zA-Z-]+ )*([a-z][a-z0-9-]*)")
SECTIONS = ("## Symptom", "## Check", "## Fix")


# The VAR=value words after a make call's target (`make plan ENV=$ENV FAIL_ON=review`).
MAKE_VARS = re.compile(r"\bmake (?:-[a-zA-Z-]+ )*[a-z][a-z0-9-]*((?: +[A-Z][A-Z0-9_]*=[^ `]*)+)")


def make_variables() -> set[str]:
    """Every variable the Makefile reads (``$(VAR)``, ``${VAR}``, ``ifdef VAR``) or sets."""
    text = (REPO / "Makefile").read_text()
    read = re.findall(r"\$[({]([A-Z][A-Z0-9_]*)[)}]|^\s*ifn?def +([A-Z][A-Z0-9_]*)", text, re.M)
    assigned = re.findall(r"^(?:export +|override +)?([A-Z][A-Z0-9_]*) *[?:+]?=", text, re.M)
    return {name for pair in read for name in pair if name} | set(assigned)


def names_of_make_variables(text: str) -> list[str]:
    return [name for words in MAKE_VARS.findall(text) for name in re.findall(r"([A-Z][A-Z0-9_]*)=", words)]


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))


@pytest.mark.parametrize("env", ENVS)
def test_every_alarm_links_to_a_runbook_that_exists(synth: SynthResult, env: str) -> None:
    alarms = synth.resources(env, "aws_cloudwatch_metric_alarm")
    assert alarms
    for alarm in alarms.values():
        match = LINK.search(alarm["alarm_description"])
        assert match, f"{alarm['alarm_name']}: no runbook link in {alarm['alarm_description']!r}"
        assert match.group(1) == load_profile(env).monitoring.runbook_base_url
        assert (REPO / match.group(2)).is_file(), f"{alarm['alarm_name']} -> {match.group(2)} missing"
        assert match.group(3) == env
        assert len(alarm["alarm_description"]) <= 1024  # PutMetricAlarm's AlarmDescription limit


def test_every_runbook_names_only_make_targets_that_exist() -> None:
    targets = make_targets()
    pages = sorted(RUNBOOKS.glob("*.md"))
    assert pages
    for page in pages:
        for target in MAKE_CALL.findall(page.read_text()):
            assert target in targets, f"{page.name}: make {target} is not a Makefile target"


def test_every_runbook_sets_only_variables_the_makefile_reads() -> None:
    """A VAR=value on a make line that the Makefile never reads is silently ignored (review #3:
    ALLOW_DESTROY, replaced by plan-approvals.yaml, was still advised)."""
    variables = make_variables()
    assert {"ENV", "CONFIRM", "FAIL_ON"} <= variables
    assert names_of_make_variables("`make plan ENV=$ENV ALLOW_DESTROY=x` then make cost IMAGES=9") == [
        "ENV",
        "ALLOW_DESTROY",
        "IMAGES",
    ]
    pages = [*sorted(RUNBOOKS.glob("*.md")), REPO / ".github" / "pull_request_template.md"]
    for page in pages:
        for name in names_of_make_variables(page.read_text()):
            assert name in variables, f"{page.name}: make ... {name}=... is not a variable the Makefile reads"


def test_alarm_runbooks_say_symptom_check_fix_and_resume() -> None:
    from modules.monitoring import RUNBOOK_OF_ALARM

    for slug in {slug for _, slug in RUNBOOK_OF_ALARM} | {"budget-exceeded", "plan-blocking", "destroy-refused"}:
        text = (RUNBOOKS / f"{slug}.md").read_text()
        for section in SECTIONS:
            assert section in text, f"{slug}.md lacks {section}"
        assert "## Resume" in text or "## Roll back" in text, f"{slug}.md says nothing of roll back / resume"
        assert f"({slug}.md)" in (RUNBOOKS / "README.md").read_text(), f"{slug}.md not in the runbook index"


def test_the_make_target_pattern_finds_targets() -> None:
    """The check above would pass vacuously if the pattern found nothing."""
    found = MAKE_CALL.findall("run `make plan ENV=$ENV ALLOW_DESTROY=x`, then make --no-print-directory health")
    assert found == ["plan", "health"]
    assert "plan" in make_help.parse(REPO / "Makefile")[0]


def test_dashboard_shows_every_alarm_and_links_the_runbooks(synth: SynthResult) -> None:
    """Widget types "alarm" (1-100 alarm ARNs) and "text" (markdown), as the Dashboard Body Structure
    defines them: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html"""
    body = json.loads(synth.only("dev", "aws_cloudwatch_dashboard")["dashboard_body"])
    alarm_widget = next(w for w in body["widgets"] if w["type"] == "alarm")
    alarms = synth.resources("dev", "aws_cloudwatch_metric_alarm")
    expected = {f"${{aws_cloudwatch_metric_alarm.{name}.arn}}" for name in alarms}
    assert set(alarm_widget["properties"]["alarms"]) == expected and 1 <= len(expected) <= 100
    text = next(w for w in body["widgets"] if w["type"] == "text")["properties"]["markdown"]
    linked = set(re.findall(r"\((https://\S+/docs/runbooks/[a-z0-9-]+\.md)\)", text))
    described = {"".join(LINK.search(a["alarm_description"]).group(1, 2)) for a in alarms.values()}
    assert linked == described
    tops = [w for w in body["widgets"] if w["y"] == 0]
    assert {w["type"] for w in tops} == {"alarm", "text"}, "the alarm row is the dashboard's first"
