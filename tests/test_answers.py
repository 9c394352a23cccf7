"""Every return path of every workflow Lambda carries the answer its step declares (conf/pipeline.py).

The state machine selects the declared keys from the answer (ResultSelector, then Choice): a key one
path lacks raises States.Runtime, which no Catch takes; a value that grows with the data ends in
States.DataLimitExceeded, likewise uncatchable
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). So each handler
runs here on cases that together reach every ``return`` of its ``handler`` (traced, not assumed),
with the event its state sends: built from the synthesized Payload template and the context object
Step Functions documents (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html:
``$$.Execution.StartTime`` is an ISO 8601 string, ``$$.Execution.Input`` the execution's input).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from conf.pipeline import PIPELINE, TEXT_BOUND, answer_problems, kind_bounds
from tests.conftest import SynthResult
from tests.events import EXECUTION, event_for
from tests.runs import s3_event
from tests.test_handlers import ENRICHED, REGION, create_budget, curated_buckets, guard, ledger_table, parquet, weather
from tests.test_pipeline_spec import FAN_OUT, planner
from tools.asl_contract import answer_bound


def returns_reached(handler: Callable, run_cases: Callable[[], list]) -> tuple[list, set[int], set[int]]:
    """Run the cases, tracing which ``return`` lines of ``handler`` ran; every one must have."""
    source, first = inspect.getsourcelines(handler)
    tree = ast.parse("".join(source))
    wanted = {first + node.lineno - 1 for node in ast.walk(tree) if isinstance(node, ast.Return)}
    code, ran = handler.__code__, set()

    def tracer(frame, event, arg):
        if frame.f_code is not code:
            return None

        def lines(frame, event, arg):
            if event == "line":
                ran.add(frame.f_lineno)
            return lines

        return lines

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        answers = run_cases()
    finally:
        sys.settrace(previous)
    return answers, wanted, ran


def assert_answers(step_name: str, answers: list, wanted: set[int], ran: set[int]) -> None:
    step = PIPELINE.step(step_name)
    assert wanted and wanted <= ran, f"{step_name}: return lines never reached: {sorted(wanted - ran)}"
    for answer in answers:
        assert answer_problems(step.answer, answer) == [], (step_name, answer)
        assert len(json.dumps(answer)) <= answer_bound(dict(step.answer), kind_bounds(step.answer))


@mock_aws
def test_every_plan_fan_out_return_carries_the_answer(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("raw", "proc"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    put = s3.put_object(Bucket="raw", Key="manifests/ok.json", Body=b'{"images": [{"key": "images/a.jpg"}]}')
    s3.put_object(Bucket="raw", Key="manifests/bad.json", Body=b'{"photos": []}')
    for key, value in {"FAN_OUT": json.dumps(FAN_OUT), "PROCESSED_BUCKET": "proc", "OUTPUT_PREFIX": "claims"}.items():
        monkeypatch.setenv(key, value)
    long_key = "manifests/" + "x" * 1000 + ".json"  # S3 keys go to 1,024 bytes; the reason quotes it
    triggered = {"event": s3_event("raw", "manifests/ok.json", put["ETag"].strip('"'))}
    gone = {"event": s3_event("raw", "manifests/ok.json", put["ETag"].strip('"'), version_id="x" * 32)}

    def cases() -> list:
        out = []
        for manifest, execution_input in (
            ("s3://raw/manifests/ok.json", {"manifest": "s3://raw/manifests/ok.json"}),  # allowed, by hand
            ("s3://raw/manifests/ok.json", triggered),  # allowed: the trigger claims this version
            ("s3://raw/manifests/ok.json", triggered),  # this execution's retried invocation: its own claim
            ("s3://raw/manifests/ok.json", triggered),  # the same event delivered again: refused
            ("s3://raw/manifests/ok.json", {"images_per_shard": 0}),  # bad shard size
            ("raw/manifests/ok.json", {}),  # not an s3 URI
            (f"s3://raw/{long_key}", {}),  # no such key, a long one
            ("s3://raw/manifests/bad.json", {}),  # no images list
            ("s3://raw/manifests/ok.json", gone),  # the version the event names is gone
        ):
            state = {"manifest": manifest, "route": {"priority": "normal"}}
            # The duplicate delivery starts an execution of its own (another name).
            execution = "second-delivery" if len(out) == 3 else EXECUTION
            event = event_for(synth, "PlanFanOut", state, execution_input, execution=execution)
            out.append(planner.handler(event, None, s3=s3))
        return out

    answers, wanted, ran = returns_reached(planner.handler, cases)
    assert [a["allowed"] for a in answers] == [True, True, True] + [False] * 6
    assert [a["duplicate"] for a in answers] == [False, False, False, True] + [False] * 5
    # Keyed by the content's SHA-256, not by the ETag (no digest of the content under SSE-KMS).
    assert (
        answers[3]["reason"].startswith("manifest s3://raw/manifests/ok.json with this content (sha256 ")
        and "one run per manifest key and content" in (answers[3]["reason"])
    )
    assert_answers("plan_fan_out", answers, wanted, ran)


@mock_aws
def test_every_guard_budget_return_carries_the_answer(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    budgets, ssm = boto3.client("budgets", region_name="us-east-1"), boto3.client("ssm", region_name=REGION)
    create_budget(budgets, spent="5")
    ssm.put_parameter(Name="/p/kill", Value="off", Type="String")
    for key, value in {"ACCOUNT_ID": "123456789012", "BUDGET_NAME": "b", "KILL_SWITCH_PARAMETER": "/p/kill"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LEDGER_TABLE", ledger_table())
    clients = {"budgets": budgets, "ssm": ssm, "dynamodb": boto3.client("dynamodb", region_name=REGION)}
    plan = planner.plan(1000, FAN_OUT, 1000, elapsed=0)

    def cases() -> list:
        event = event_for(synth, "GuardBudget", {"manifest": "s3://r/m.json", "plan": plan})
        allowed = guard.handler(event, None, **clients)
        ssm.put_parameter(Name="/p/kill", Value="on", Type="String", Overwrite=True)
        return [allowed, guard.handler(event, None, **clients)]

    answers, wanted, ran = returns_reached(guard.handler, cases)
    assert [a["allowed"] for a in answers] == [True, False]
    assert_answers("guard_budget", answers, wanted, ran)


@mock_aws
def test_every_weather_return_carries_a_bounded_answer(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three shards cut, one written (the others failed within the tolerance): the answer counts
    the shard written and names the missing ones, enriching them or, after a failed fan-out
    (ListFailedShards' ``list_missing`` mode), listing them; 10,000 missing shards still fit its
    bound."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="proc", Key=f"stage2/{EXECUTION}/shard-1.json", Body=json.dumps({"records": []}))
    for key, value in {"PROCESSED_BUCKET": "proc", "INPUT_PREFIX": "stage2", "OUTPUT_PREFIX": "weather"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WEATHER_BASE_URL", "http://127.0.0.1:9/v1/archive")  # no record asks it
    state = {"manifest": "s3://r/m.json", "shards": {"summary": {"count": 3}}}
    answers, wanted, ran = returns_reached(
        weather.handler,
        lambda: [
            weather.handler(event_for(synth, name, state), None, s3=s3)
            for name in ("WeatherEnrichment", "ListFailedShards")
        ],
    )
    assert [(a["shards"], a["missing"]) for a in answers] == [(1, "0, 2"), (1, "0, 2")]
    assert_answers("weather_enrichment", answers, wanted, ran)
    many = weather.missing(10_000, ())
    assert len(many) <= TEXT_BOUND and many.startswith("0, 1, 2") and many.endswith(" more")
    assert int(many.rsplit(" and ", 1)[1].split()[0]) + many.count(", ") + 1 == 10_000


@mock_aws
def test_the_parquet_answer_does_not_grow_with_the_partitions(
    synth: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two partitions or sixty (one object per date and site): the same answer but for its counts."""
    s3 = curated_buckets(monkeypatch)
    many = [dict(ENRICHED[1], key=f"images/{n}.jpg", site_id=f"s{n}") for n in range(60)]
    state = {"manifest": "s3://r/m.json", "shards": {"summary": {"count": 1}}}

    def cases() -> list:
        out = []
        for records in (ENRICHED, many):
            s3.put_object(Bucket="proc", Key=f"weather/{EXECUTION}/shard-0.json", Body=json.dumps({"records": records}))
            out.append(parquet.handler(event_for(synth, "WriteParquet", state), None, s3=s3))
        return out

    answers, wanted, ran = returns_reached(parquet.handler, cases)
    assert [a["objects"] for a in answers] == [1, 1]  # one month each: 2 and 60 sites
    shape = [re.sub(r"\d+", "N", json.dumps(dict(a, part_prefix=""))) for a in answers]
    assert shape[0] == shape[1]
    assert_answers("write_parquet", answers, wanted, ran)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"allowed": False, "reason": "manifest is gone"}, "lacks 'images'"),  # yesterday's refusal path
        ({"objects": ["detections/date=2026-06-01/site=s1/part-1.parquet"]}, "'objects' should be int, is list of 1"),
        ({"reason": "x" * (TEXT_BOUND + 1)}, "'reason' should be text (bounded), is str of 2049"),
        ({"allowed": 1}, "'allowed' should be bool, is 1"),
        ({"allowed": True, "surprise": 1}, "'surprise' is not declared"),
    ],
)
def test_an_answer_off_its_declaration_is_told(answer: dict, problem: str) -> None:
    declared = (("allowed", "bool"), ("reason", "text"), ("images", "int"), ("objects", "int"))
    assert problem in answer_problems(declared, answer)


def test_every_workflow_lambda_declares_a_bounded_answer() -> None:
    """The spec refuses a kept key its answer lacks, and every answer is well inside 256 KiB."""
    for step in PIPELINE.lambda_steps:
        assert step.answer and set(step.outputs) <= dict(step.answer).keys(), step.name
        assert answer_bound(dict(step.answer), kind_bounds(step.answer)) < 256 * 1024 // 8, step.name


@mock_aws
def test_the_lost_shards_become_one_manifest_to_run_again() -> None:
    """Shard 1 of three failed within the tolerance (no stage2 output): ``make rerun-shards``
    gathers exactly its images into a new manifest; with nothing lost it writes none."""
    from pipeline_ops import rerun_shards

    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("proc", "raw"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    listing = [{"shard": n, "images": 1} for n in range(3)]
    s3.put_object(Bucket="proc", Key=f"stage0/{EXECUTION}/shards.json", Body=json.dumps(listing))
    for n in range(3):
        records = {"records": [dict(ENRICHED[0], key=f"images/{n}.jpg")]}
        s3.put_object(Bucket="proc", Key=f"stage0/{EXECUTION}/shard-{n}.json", Body=json.dumps(records))
    for n in (0, 2):
        s3.put_object(Bucket="proc", Key=f"stage2/{EXECUTION}/shard-{n}.json", Body=b'{"records": []}')
    manifest, shards = rerun_shards.rerun_manifest(s3, "proc", "raw", EXECUTION)
    assert manifest.startswith(f"s3://raw/manifests/rerun-{EXECUTION}-") and shards == [1]
    written = json.loads(s3.get_object(Bucket="raw", Key=manifest.removeprefix("s3://raw/"))["Body"].read())
    assert [r["key"] for r in written["images"]] == ["images/1.jpg"] and written["rerun_of"] == EXECUTION
    # Run twice (the rerun failed too): another key and content, so the trigger starts another run.
    again, _ = rerun_shards.rerun_manifest(s3, "proc", "raw", EXECUTION)
    assert again != manifest
    assert (
        s3.get_object(Bucket="raw", Key=again.removeprefix("s3://raw/"))["Body"].read() != json.dumps(written).encode()
    )
    s3.put_object(Bucket="proc", Key=f"stage2/{EXECUTION}/shard-1.json", Body=b'{"records": []}')
    assert rerun_shards.rerun_manifest(s3, "proc", "raw", EXECUTION) == ("", [])


def test_no_handler_test_invents_its_event() -> None:
    """Every test of a workflow Lambda gives it the event its state sends (tests/events.py), never a
    dict written by hand (such as ``{"execution_id": "e1"}`` or ``"started_at": None``, which no
    execution sends)."""
    invented = re.compile(r"\b(guard|weather|parquet|planner)\.handler\(\s*\{")
    tests = Path(__file__).resolve().parent
    found = [
        f"{path.name}:{number}"
        for path in sorted(tests.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if invented.search(line)
    ]
    assert found == []


def test_a_rerun_starts_one_execution_where_the_trigger_is_on(synth: SynthResult, tmp_path: Path) -> None:
    """The rerun manifest goes to manifests/, which the trigger watches (an S3 Object Created event
    starts a run, https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html): with the
    trigger, ``--start`` would start a second run of it; it starts one only without the trigger."""
    from pipeline_ops import rerun_shards

    for env in ("local", "dev", "prod"):
        folder = tmp_path / env
        folder.mkdir()
        (folder / "cdk.tf.json").write_text(json.dumps(synth.pipeline(env)))
        assert rerun_shards.has_trigger(folder), env
    config = synth.pipeline("dev")
    untriggered = {**config, "resource": {**config["resource"]}}
    rules = untriggered["resource"]["aws_cloudwatch_event_rule"]
    untriggered["resource"]["aws_cloudwatch_event_rule"] = {n: r for n, r in rules.items() if "on-manifest" not in n}
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "cdk.tf.json").write_text(json.dumps(untriggered))
    assert not rerun_shards.has_trigger(tmp_path / "off")
