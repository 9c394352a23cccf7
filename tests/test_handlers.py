"""Handlers of lambda_src/: pure logic without AWS, and their AWS calls against moto (in-process).

A workflow Lambda gets the event its state sends (tests/events.py): the synthesized state machine's
Payload for that state resolved with the documented context object
(https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html), as the Lambda
invoke integration passes it (https://docs.aws.amazon.com/step-functions/latest/dg/connect-lambda.html).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from conf.pipeline import LIST_MISSING_MODE, PIPELINE, answer_problems
from local import moto_fills
from pipeline_ops import weather_server
from tests.conftest import SynthResult
from tests.events import event_for
from tests.test_pipeline_spec import FAN_OUT, planner

SRC = Path(__file__).resolve().parent.parent / "lambda_src"
sys.path.insert(0, str(SRC / "_shared"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"handler_{name}", SRC / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


guard = load("guard_budget")
weather = load("weather_enrichment")
parquet = load("write_parquet")
shutdown = load("budget_shutdown")
metrics = load("batch_metrics")
REGION = "eu-north-1"
MANIFEST = "s3://raw/manifests/m.json"


def guard_event(synth: SynthResult, execution: str, estimated_usd: float | None = None) -> dict:
    """GuardBudget's event: PlanFanOut's plan of a ten-image manifest (its estimate replaced when given)."""
    plan = planner.plan(10, FAN_OUT, 10, elapsed=0)
    if estimated_usd is not None:
        plan = {**plan, "estimated_usd": estimated_usd}
    return event_for(synth, "GuardBudget", {"manifest": MANIFEST, "plan": plan}, execution=execution)


def sharded_event(synth: SynthResult, state_name: str, execution: str, shard_count: int) -> dict:
    """The event of a state after the fan-out (WeatherEnrichment, WriteParquet): ReadShards' summary."""
    state = {"manifest": MANIFEST, "shards": {"summary": {"count": shard_count}}}
    return event_for(synth, state_name, state, execution=execution)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process mock gets the same fills as the emulator: here, not at import, since every
    # xdist worker imports this module to collect it (~2.3 CPU s each).
    moto_fills.apply_all()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


# --- guard_budget -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "kill", "allowed", "reason"),
    [
        (10.0, "off", True, "below 50.00"),
        (50.0, "off", False, "reached 100% of the 50.00 USD limit"),
        (10.0, "on", False, "kill switch is 'on'"),
        (10.0, " STOP ", False, "kill switch"),
    ],
)
def test_guard_decision(spent: float, kill: str, allowed: bool, reason: str) -> None:
    decision = guard.decide(limit=50, spent=spent, forecast=60, threshold_pct=100, kill_switch=kill)
    assert decision.allowed is allowed and reason in decision.reason
    assert (decision.limit, decision.spent, decision.forecast) == (50, spent, 60)


def test_only_the_estimate_pushes_the_execution_over_the_threshold() -> None:
    """Spend alone is below the guard's 90 % of 50 USD; this execution's estimate would pass it."""
    common = {"limit": 50, "spent": 40.0, "forecast": 48, "threshold_pct": 90, "kill_switch": "off"}
    assert guard.decide(**common, estimate=4.99).allowed is True
    refused = guard.decide(**common, estimate=5.01)
    assert refused.allowed is False and refused.estimate == 5.01
    assert refused.reason == (
        "this execution's estimated 5.01 USD plus the actual spend 40.00 USD would pass 45.00 USD "
        "(90% of the 50.00 USD limit); split the manifest or wait for the next budget period"
    )
    assert guard.decide(**common).allowed is True  # no plan, no estimate


@pytest.mark.parametrize(
    ("event", "estimate"),
    [
        ({"plan": {"estimated_usd": 3.5}}, 3.5),
        ({}, 0.0),
        ({"plan": None}, 0.0),
        ({"plan": {"estimated_usd": "x"}}, 0.0),
    ],
)
def test_the_estimate_comes_from_the_plan(event: dict, estimate: float) -> None:
    assert guard.estimate_of(event) == estimate


def test_guard_mentions_forecast_over_limit() -> None:
    assert (
        "forecast 70.00 USD exceeds"
        in guard.decide(limit=50, spent=1, forecast=70, threshold_pct=100, kill_switch="off").reason
    )


# A 50 USD daily budget named ``b``.
BUDGET_B = {
    "BudgetName": "b",
    "BudgetLimit": {"Amount": "50", "Unit": "USD"},
    "TimeUnit": "DAILY",
    "BudgetType": "COST",
}


def create_budget(budgets, *, spent: str) -> None:
    """Budget ``b`` with ``spent`` USD so far."""
    spend = {"CalculatedSpend": {"ActualSpend": {"Amount": spent, "Unit": "USD"}}}
    budgets.create_budget(AccountId="123456789012", Budget={**BUDGET_B, **spend})


def ledger_table(region: str = REGION) -> str:
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(
        TableName="ledger",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "budget_updated", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "budget_updated", "AttributeType": "S"}],
    )
    return "ledger"


@mock_aws
def test_guard_reads_budgets_and_ssm(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    budgets, ssm = boto3.client("budgets", region_name="us-east-1"), boto3.client("ssm", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_budget(budgets, spent="51")
    ssm.put_parameter(Name="/p/kill", Value="off", Type="String")
    monkeypatch.setenv("ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("BUDGET_NAME", "b")
    monkeypatch.setenv("KILL_SWITCH_PARAMETER", "/p/kill")
    monkeypatch.setenv("LEDGER_TABLE", ledger_table())
    clients = {"budgets": budgets, "ssm": ssm, "dynamodb": dynamodb}
    result = guard.handler(guard_event(synth, "e1"), None, **clients)
    assert result["allowed"] is False and result["limit"] == 50 and result["spent"] == 51
    assert set(result) == {"allowed", "reason", "spent", "estimate", "forecast", "limit", "threshold_pct", "reserved"}
    ssm.delete_parameter(Name="/p/kill")  # a missing switch counts as off
    budgets.delete_budget(AccountId="123456789012", BudgetName="b")
    create_budget(budgets, spent="5")
    assert guard.handler(guard_event(synth, "e2"), None, **clients)["allowed"] is True
    priced = guard.handler(guard_event(synth, "e3", 46), None, **clients)
    assert priced["allowed"] is False and priced["estimate"] == 46 and "estimated 46.00 USD" in priced["reason"]


NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC).timestamp()


@mock_aws
def test_a_burst_of_manifests_cannot_pass_the_guard_together(
    synth: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Budgets still says 5 of 50 USD spent (its data lags by hours); each manifest is estimated at
    20 USD. Two fit (5 + 2 x 20 = 45), the third would make 65: refused on the ledger's estimates,
    although the budget itself has not moved. A retried invocation does not count twice. Nothing
    says when Budgets has the two executions' cost in its figure, so their reservations count for
    24 h: through a refresh (spend 25, LastUpdatedTime unchanged, as AWS refreshes) and through an
    UpdateBudget (which moves LastUpdatedTime and drops the spend to 0 until AWS has new data,
    https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_UpdateBudget.html);
    after 24 h they no longer count."""
    budgets, ssm = boto3.client("budgets", region_name="us-east-1"), boto3.client("ssm", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_budget(budgets, spent="5")
    for key, value in {"ACCOUNT_ID": ACCOUNT, "BUDGET_NAME": "b", "KILL_SWITCH_PARAMETER": "/p/kill"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LEDGER_TABLE", ledger_table())
    clients = {"budgets": budgets, "ssm": ssm, "dynamodb": dynamodb}

    def run(execution: str, hours: float = 0) -> dict:
        return guard.handler(guard_event(synth, execution, 20), None, **clients, now=NOW + hours * 3600)

    first, second, retried, third = run("m1"), run("m2"), run("m2"), run("m3")
    assert (first["allowed"], second["allowed"], retried["allowed"], third["allowed"]) == (True, True, True, False)
    assert (first["reserved"], second["reserved"], third["reserved"]) == (0, 20, 40)
    assert "plus 40.00 USD estimated for executions Budgets may not have seen yet" in third["reason"]
    refresh_spend(budgets, "25")  # Budgets has part of the two executions' cost now
    refreshed = run("m3", hours=8)
    assert (refreshed["allowed"], refreshed["spent"], refreshed["reserved"]) == (False, 25.0, 40.0)
    budgets.update_budget(AccountId=ACCOUNT, NewBudget=BUDGET_B)  # an apply changes the budget: spend 0
    changed = run("m3", hours=9)
    assert (changed["allowed"], changed["spent"], changed["reserved"]) == (False, 0.0, 40.0)
    refresh_spend(budgets, "25")
    later = run("m3", hours=24.5)
    assert (later["allowed"], later["spent"], later["reserved"]) == (True, 25.0, 0.0)


def test_the_ledger_refuses_the_loser_of_a_race() -> None:
    """Two guards read the same sum; the conditional update lets only one take the last room."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        ledger = guard.Ledger(dynamodb, ledger_table(), "2026-12-06", NOW)
        assert ledger.reserve("a", 20.0, room=25.0) is True  # reserved 0 <= 25
        assert ledger.reserve("b", 20.0, room=25.0) is True  # reserved 20 <= 25
        assert ledger.reserve("c", 20.0, room=25.0) is False  # reserved 40 > 25: the loser
        assert ledger.reserve("a", 20.0, room=100.0) is False  # in already
        assert ledger.read() == (40.0, {"a", "b"})


# --- batch_metrics -----------------------------------------------------------------------------

QUEUE = "arn:aws:batch:eu-north-1:111111111111:job-queue/odins-ravne-dev-normal"
METRICS_ENV = {
    "JOB_QUEUES": f"normal={QUEUE}",
    "COMPUTE_ENVIRONMENTS": "gpu=arn:aws:batch:eu-north-1:111111111111:compute-environment/odins-ravne-dev-gpu",
    "METRIC_NAMESPACE": "OdinsRavne/Pipeline",
    "PIPELINE_ENV": "dev",
}


# The events batch_metrics receives, as AWS documents them (the fields the handler reads and those
# around them): the Scheduled Event of an EventBridge schedule
# (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html), Batch's Job
# State Change (https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html) and EC2's
# Spot Instance Interruption Warning
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "111111111111",
    "time": "2026-06-01T04:15:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:111111111111:rule/odins-ravne-dev-batch-metrics"],
    "detail": {},
}


def batch_job_event(status: str, queue: str) -> dict:
    return {
        "version": "0",
        "id": "c8f9c4b5-76e5-d76a-f980-7011e206042b",
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": "111111111111",
        "time": "2026-06-01T04:12:00Z",
        "region": REGION,
        "resources": [f"arn:aws:batch:{REGION}:111111111111:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8"],
        "detail": {
            "jobArn": f"arn:aws:batch:{REGION}:111111111111:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
            "jobName": "stage1",
            "jobId": "4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
            "jobQueue": queue,
            "status": status,
            "attempts": [],
            "createdAt": 1780287000000,
            "retryStrategy": {"attempts": 3},
            "dependsOn": [],
            "jobDefinition": f"arn:aws:batch:{REGION}:111111111111:job-definition/odins-ravne-dev-stage1:1",
            "parameters": {"shard": "0"},
            "container": {"image": "odins-ravne-dev-stage1:0.1.0", "vcpus": 4, "memory": 15360},
        },
    }


SPOT_WARNING = {
    "version": "0",
    "id": "12345678-1234-1234-1234-123456789012",
    "detail-type": "EC2 Spot Instance Interruption Warning",
    "source": "aws.ec2",
    "account": "111111111111",
    "time": "2026-06-01T04:12:00Z",
    "region": REGION,
    "resources": [f"arn:aws:ec2:{REGION}a:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "instance-action": "terminate"},
}


def test_batch_metrics_count_each_state_and_the_oldest_runnable_job() -> None:
    """The Batch API's own model checks every call and answer (botocore's Stubber)."""
    from botocore.stub import Stubber

    batch = boto3.client("batch", region_name=REGION)
    now = 1_800_000_000_000
    listed = {"SUBMITTED": 1, "PENDING": 0, "RUNNABLE": 3, "STARTING": 0, "RUNNING": 2}
    with Stubber(batch) as stub:
        for status, count in listed.items():
            jobs = [
                {"jobId": f"{status}-{i}", "jobName": "stage1", "createdAt": now - 1000 * (600 + 900 * i)}
                for i in range(count)
            ]
            stub.add_response("list_jobs", {"jobSummaryList": jobs}, {"jobQueue": QUEUE, "jobStatus": status})
        stub.add_response(
            "describe_compute_environments",
            {
                "computeEnvironments": [
                    {
                        "computeEnvironmentName": "odins-ravne-dev-gpu",
                        "computeEnvironmentArn": METRICS_ENV["COMPUTE_ENVIRONMENTS"].split("=", 1)[1],
                        "ecsClusterArn": "arn:aws:ecs:eu-north-1:111111111111:cluster/x",
                        "computeResources": {
                            "type": "SPOT",
                            "maxvCpus": 100,
                            "desiredvCpus": 12,
                            "subnets": ["subnet-1"],
                            "instanceRole": "role",
                        },
                    }
                ]
            },
        )
        queue, compute = metrics.records(batch, METRICS_ENV, now)
    assert queue["Queue"] == "normal" and queue["Environment"] == "dev"
    assert [queue[f"Jobs{s.capitalize()}"] for s in listed] == [1, 0, 3, 0, 2]
    assert queue["OldestRunnableSeconds"] == 600 + 900 * 2  # the third RUNNABLE job waits longest
    [declared] = queue["_aws"]["CloudWatchMetrics"]
    assert declared["Namespace"] == "OdinsRavne/Pipeline" and declared["Dimensions"] == [["Environment", "Queue"]]
    assert {"Name": "OldestRunnableSeconds", "Unit": "Seconds"} in declared["Metrics"]
    assert (compute["ComputeEnvironment"], compute["DesiredVcpus"], compute["MaxVcpus"]) == ("gpu", 12, 100)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            batch_job_event("FAILED", QUEUE),
            ({"Environment": "dev", "Queue": "normal", "Status": "FAILED"}, "JobsFinished"),
        ),
        (
            batch_job_event("SUCCEEDED", "elsewhere"),
            ({"Environment": "dev", "Queue": "other", "Status": "SUCCEEDED"}, "JobsFinished"),
        ),
        (SPOT_WARNING, ({"Environment": "dev"}, "SpotInterruptionWarnings")),
        (batch_job_event("RUNNING", QUEUE), None),
    ],
)
def test_batch_events_count_finished_jobs_and_spot_warnings(event: dict, expected: tuple | None, capsys) -> None:
    found = metrics.from_event(event, METRICS_ENV, 1)
    if expected is None:
        assert found == []
        return
    dimensions, metric = expected
    [record] = found
    assert {k: record[k] for k in dimensions} == dimensions and record[metric] == 1
    assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [sorted(dimensions)]


def test_batch_metrics_handler_prints_one_emf_line_per_record(monkeypatch, capsys) -> None:
    for key, value in METRICS_ENV.items():
        monkeypatch.setenv(key, value)
    assert metrics.handler(batch_job_event("FAILED", QUEUE), None) == {"records": 1}
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert line["JobsFinished"] == 1 and line["Status"] == "FAILED"


def test_the_scheduled_event_reads_every_queue_and_environment(monkeypatch, capsys) -> None:
    """The minute's Scheduled Event: one record per queue and per compute environment."""
    from botocore.stub import Stubber

    for key, value in METRICS_ENV.items():
        monkeypatch.setenv(key, value)
    batch = boto3.client("batch", region_name=REGION)
    with Stubber(batch) as stub:
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"):
            stub.add_response("list_jobs", {"jobSummaryList": []}, {"jobQueue": QUEUE, "jobStatus": status})
        stub.add_response("describe_compute_environments", {"computeEnvironments": []})
        assert metrics.handler(SCHEDULED_EVENT, None, batch=batch) == {"records": 2}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [line.get("Queue") or line.get("ComputeEnvironment") for line in lines] == ["normal", "gpu"]


# --- weather_enrichment -------------------------------------------------------------------------

RECORD = {"key": "images/a.jpg", "site_id": "s1", "lat": 62.4691, "lon": 10.3921, "captured_at": "2026-06-01T04:12:00Z"}


@pytest.fixture
def loopback_weather():
    servers = []

    def start(failures: int = 0, failure_status: int = 503, **faults):
        server = weather_server.start(0, failures=failures, failure_status=failure_status, **faults)
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/v1/archive"

    yield start
    for server in servers:
        weather_server.stop(server)


def test_a_stopped_weather_server_frees_its_port() -> None:
    """The next run on the same port gets a server of its own, in its own process, that answers
    (a run's weather lookups hung for minutes when the previous run's stopped server still held
    the port); stopped, that one frees the port too."""
    first = weather_server.start(0)
    port = first.server_address[1]
    weather_server.stop(first)
    assert not weather_server.listening(port)
    second = weather_server.spawn(port)
    try:
        url = f"http://127.0.0.1:{port}/v1/archive?latitude=60&longitude=10&start_date=2026-06-01&end_date=2026-06-01"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        weather_server.stop(second)
    assert not weather_server.listening(port)


def free_loopback_port() -> int:
    probe = weather_server.start(0)
    port = probe.server_address[1]
    weather_server.stop(probe)
    return port


def wait_until(condition, seconds: float = 15) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.2)
    return condition()


def test_a_run_keeps_its_weather_server_up(tmp_path, monkeypatch, capsys) -> None:
    """If the run's weather server process exits mid-run, the run says so and starts it again."""
    from pipeline_ops import run as run_local

    monkeypatch.setattr(run_local, "WEATHER_LOG", tmp_path / "weather.log")
    port = free_loopback_port()
    keeper = run_local.Keeper(port)
    try:
        first = keeper.server
        first.kill()
        assert wait_until(lambda: keeper.server not in (None, first) and weather_server.listening(port))
        assert keeper.server.poll() is None
    finally:
        keeper.stop()
    assert not weather_server.listening(port)
    assert "the loopback weather server exited (-9); starting it again" in capsys.readouterr().out


def test_a_run_outlives_the_server_it_found(tmp_path, monkeypatch, capsys) -> None:
    """The flake in make test: a run found another run's server on the port, used it, and that run
    stopped it mid-way (lookups refused). Now the run starts its own when the port goes quiet, and
    leaves a server it did not start alone."""
    from pipeline_ops import run as run_local

    monkeypatch.setattr(run_local, "WEATHER_LOG", tmp_path / "weather.log")
    port = free_loopback_port()
    other = weather_server.spawn(port)
    keeper = run_local.Keeper(port)
    try:
        assert keeper.server is None, "a server already answers: nothing of its own yet"
        weather_server.stop(other)
        assert wait_until(lambda: keeper.server is not None and weather_server.listening(port))
        url = f"http://127.0.0.1:{port}/v1/archive?latitude=60&longitude=10&start_date=2026-06-01&end_date=2026-06-01"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        keeper.stop()
    assert not weather_server.listening(port)
    assert f"nothing answers on weather port {port} any more; starting a server of its own" in capsys.readouterr().out


def test_weather_one_request_for_several_sites_and_days(loopback_weather) -> None:
    """Sites with the same range of missing days share a request; every site-day is asked once."""
    server, url = loopback_weather()
    client = weather.WeatherClient(url, sleep=lambda _: None)
    records = [dict(RECORD), dict(RECORD, captured_at="2026-06-03T22:59:00Z"), dict(RECORD, lat=61.0)]
    records.append(dict(RECORD, lat=61.0, captured_at="2026-06-03T01:00:00Z"))
    counts = weather.enrich(records, client)
    assert counts == {"records": 4, "enriched": 4, "failed": 0}
    assert client.requests == server.requests == 1  # two sites, 2026-06-01..03, one request
    assert set(records[0]["weather"]) == {"temperature_2m", "precipitation", "wind_speed_10m", "cloud_cover"}
    assert records[0]["weather"] != records[1]["weather"]  # different hours of the same answer
    answer = weather_server.hourly(
        61.0, 10.39, datetime(2026, 6, 3).date(), datetime(2026, 6, 3).date(), list(weather.HOURLY)
    )
    assert records[3]["weather"] == {k: float(answer[k][1]) for k in weather.HOURLY}


def test_weather_range_chunks_are_calendar_months(loopback_weather) -> None:
    """Fifty days of two sites: one request per month (the cache's chunk), both sites in each."""
    server, url = loopback_weather()
    client = weather.WeatherClient(url, sleep=lambda _: None)
    first = datetime(2026, 5, 1, 12, tzinfo=UTC).toordinal()
    days = [datetime.fromordinal(first + d).strftime("%Y-%m-%dT12:00:00Z") for d in range(50)]
    records = [dict(RECORD, lat=lat, captured_at=day) for lat in (60.0, 61.0) for day in days]
    assert weather.enrich(records, client)["enriched"] == 100
    assert client.requests == server.requests == 2


def test_sparse_days_still_batch_sites(loopback_weather) -> None:
    """120 sites with one image each on scattered days of June: their days differ, yet the month
    is ceil(120 / sites_per_request) requests, and only the asked days are kept (float32)."""
    server, url = loopback_weather()
    client = weather.WeatherClient(url, sites_per_request=50, sleep=lambda _: None)
    records = [
        dict(RECORD, lat=60 + i / 10, captured_at=f"2026-06-{1 + (i * 7) % 30:02d}T12:00:00Z") for i in range(120)
    ]
    assert weather.enrich(records, client)["enriched"] == 120
    assert client.requests == server.requests == 3
    assert len(client.days) == 120 and {v.typecode for v in client.days.values()} == {"f"}


def cache_bucket() -> object:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def cached_object(s3: object, cache: object, site: tuple[float, float], month: str) -> dict:
    return json.loads(s3.get_object(Bucket="proc", Key=cache.key(weather.site_group(site), month))["Body"].read())


def same_group_sites(count: int) -> list[tuple[float, float]]:
    """Sites whose cache entries share one object (the first site's group)."""
    first = (62.47, 10.39)
    others = (weather.site_of(60 + i / 100, 11.0) for i in range(10_000))
    return [first, *[s for s in others if weather.site_group(s) == weather.site_group(first)][: count - 1]]


def test_sites_of_a_request_have_close_days(loopback_weather) -> None:
    """A request's range spans its sites' missing days, so a month's sites are put in requests in
    order of their first missing day: four sites, two early in June and two late, are two requests
    of two days each, not two of nearly the month (sparse data: ~20 % fewer location-days, what
    Open-Meteo bills by and both sides parse)."""
    server, url = loopback_weather()
    client = weather.WeatherClient(url, sites_per_request=2, sleep=lambda _: None)
    records = [
        dict(RECORD, lat=lat, captured_at=f"2026-06-{day:02d}T12:00:00Z")
        for lat, day in ((50, 1), (51, 29), (52, 2), (53, 30))
    ]
    assert weather.enrich(records, client)["enriched"] == 4
    assert server.requests == 2 and server.location_days == 2 * 2 + 2 * 2


@mock_aws
def test_the_cache_loads_only_the_days_needed_and_keeps_the_rest(loopback_weather) -> None:
    """A site's 29 days of June cached, one record: one day read into memory; a fetch of day 30
    adds it to the month's object without losing the 29 (stored as float32, read back exactly)."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    cache = weather.SiteDayCache(s3, "proc", "wc")
    warm = weather.WeatherClient(url, sleep=lambda _: None)
    site = (62.47, 10.39)
    month = [(site, f"2026-06-{d:02d}") for d in range(1, 30)]
    warm.fetch(month)
    cache.store(month, warm)
    client = weather.WeatherClient(url, sleep=lambda _: None)
    assert cache.load({(site, "2026-06-05")}, client) == 1 and list(client.days) == [month[4]]
    assert client.days[month[4]] == warm.days[month[4]]
    client.fetch([(site, "2026-06-30")])
    cache.store([(site, "2026-06-30")], client)
    days = cached_object(s3, cache, site, "2026-06")["sites"]["62.47,10.39"]
    assert len(days) == 30 and weather.decode_day(days["2026-06-05"]) == warm.days[month[4]]


@mock_aws
def test_the_cache_keeps_a_month_of_many_sites_in_a_few_objects(loopback_weather) -> None:
    """Sparse data (thousands of sites, a few images each) made one cache object per site and
    month: ~60,000 GETs and PUTs for the largest execution. Now one object per month and group of
    sites (a stable hash of the site): 300 sites' days of June land in at most ``CACHE_GROUPS``
    objects under the month, and a fresh invocation reads every one of them back."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    cache = weather.SiteDayCache(s3, "proc", "wc")
    client = weather.WeatherClient(url, sites_per_request=100, sleep=lambda _: None)
    wanted = {(weather.site_of(55 + i / 37, 5 + i / 13), f"2026-06-{1 + i % 30:02d}") for i in range(300)}
    client.fetch(wanted)
    cache.store(wanted, client)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="proc", Prefix="wc/")["Contents"]]
    groups = {weather.site_group(site) for site, _ in wanted}
    assert sorted(keys) == sorted(cache.key(g, "2026-06") for g in groups)
    assert len(keys) <= weather.CACHE_GROUPS < len(wanted) and all(k.startswith("wc/2026-06/") for k in keys)
    fresh = weather.WeatherClient(url, sleep=lambda _: None)
    assert cache.load(wanted, fresh) == 300 and all(fresh.days[k] == client.days[k] for k in wanted)


def test_only_the_hours_records_need_are_kept(loopback_weather) -> None:
    """After a month is fetched and cached the handler keeps of each site-day only the hours its
    records need (a day is 96 float32; sparse data holds ~250,000 site-days): same answers, no
    full day held, no new request."""
    server, url = loopback_weather()
    client = weather.WeatherClient(url, sleep=lambda _: None)
    records = [dict(RECORD, captured_at=f"2026-06-0{d}T{h:02d}:30:00Z") for d in (1, 2) for h in (0, 7, 23)]
    hours = weather.needed_hours(records)
    client.fetch(hours)
    expected = [client.hour(float(r["lat"]), float(r["lon"]), weather.parse_time(r["captured_at"])) for r in records]
    client.keep_only(hours)
    assert not client.days and len(client.kept) == 2
    assert weather.enrich(records, client)["enriched"] == 6 and [r["weather"] for r in records] == expected
    assert client.requests == server.requests == 1


def test_weather_honours_retry_after(loopback_weather) -> None:
    """A 429 waits what its Retry-After says (RFC 9110 10.2.3), capped, not the client's back-off."""
    _, url = loopback_weather(failures=2, failure_status=429, retry_after=7)
    pauses: list[float] = []
    client = weather.WeatherClient(url, max_retries=3, max_retry_after=5, sleep=pauses.append)
    assert weather.enrich([dict(RECORD)], client)["enriched"] == 1
    assert pauses == [5, 5] and client.requests == 3
    assert weather.retry_after("3", 60) == 3 and weather.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 60) == 0
    assert weather.retry_after(None, 60) == weather.retry_after("soon", 60) == 0


def test_no_lookup_starts_past_the_deadline(loopback_weather) -> None:
    """Near the function's time-out the lookups stop: records are marked, the shards still written."""
    server, url = loopback_weather()
    client = weather.WeatherClient(url, deadline=0.0, sleep=lambda _: None)
    records = [dict(RECORD), dict(RECORD, lat=50.0)]
    assert weather.enrich(records, client) == {"records": 2, "enriched": 0, "failed": 2}
    assert client.requests == server.requests == 0
    assert records[0]["weather_status"] == "failed: no time left in the invocation to ask the provider"


def test_the_loopback_server_throttles_with_retry_after(loopback_weather) -> None:
    """Injected 429s carry Retry-After; the seeded share is repeatable."""
    server, url = loopback_weather(throttle_rate=1.0, retry_after=3)
    query = "latitude=60&longitude=10&start_date=2026-06-01&end_date=2026-06-01"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}?{query}", timeout=5)
    assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "3"
    assert server.throttled == 1 and server.requests == 0


def test_the_loopback_server_answers_several_locations_as_a_list(loopback_weather) -> None:
    """Open-Meteo's multi-location shape: a list, one object per location, in the order asked."""
    _, url = loopback_weather()
    query = "latitude=60,61.5&longitude=10,11&start_date=2026-06-01&end_date=2026-06-02&hourly=temperature_2m"
    with urllib.request.urlopen(f"{url}?{query}", timeout=5) as answer:
        body = json.loads(answer.read())
    assert [(b["latitude"], b["longitude"]) for b in body] == [(60.0, 10.0), (61.5, 11.0)]
    assert len(body[1]["hourly"]["time"]) == len(body[1]["hourly"]["temperature_2m"]) == 48


def test_the_loopback_servers_answer_is_the_json_of_its_series() -> None:
    """The answer text, built from one encoded day repeated, is exactly ``json.dumps`` of the
    place's series over the range (a month across a year's end, a single day, a repeated and an
    unknown variable)."""
    for lat, lon, start, end, fields in (
        (62.4691, 10.3921, "2026-12-17", "2027-01-16", list(weather.HOURLY)),
        (58.0, 5.5, "2026-06-01", "2026-06-01", ["temperature_2m", "temperature_2m", "snow_depth"]),
    ):
        first, last = datetime.fromisoformat(start).date(), datetime.fromisoformat(end).date()
        answer = {"latitude": lat, "longitude": lon, "timezone": "UTC"}
        expected = json.dumps({**answer, "hourly": weather_server.hourly(lat, lon, first, last, fields)})
        assert weather_server.answer_text(lat, lon, first, last, fields) == expected


def test_weather_retries_with_backoff_then_succeeds(loopback_weather) -> None:
    _, url = loopback_weather(failures=2)
    pauses: list[float] = []
    client = weather.WeatherClient(url, max_retries=3, backoff_base=0.1, sleep=pauses.append)
    assert weather.enrich([dict(RECORD)], client)["enriched"] == 1
    assert len(pauses) == 2 and pauses[1] > pauses[0] * 1.0 - 1e-9 and all(0.1 <= p <= 0.4 for p in pauses)


def test_weather_failure_marks_record_never_drops_it(loopback_weather) -> None:
    _, url = loopback_weather(failures=10)
    client = weather.WeatherClient(url, max_retries=1, sleep=lambda _: None)
    records = [dict(RECORD), {"key": "b", "lat": "north", "lon": 1, "captured_at": "2026-06-01T00:00:00Z"}]
    assert weather.enrich(records, client) == {"records": 2, "enriched": 0, "failed": 2}
    assert records[0]["weather"] is None and records[0]["weather_status"] == "failed: HTTP 503"
    assert records[1]["weather_status"].startswith("failed:")


def test_a_failed_site_day_is_asked_once_and_an_outage_is_given_up(loopback_weather) -> None:
    """A provider that stops answering costs a few lookups, not retries for every record: a failed
    site-day is remembered, and after ``give_up_after`` failed in a row the rest is marked at once.
    Each failed attempt is logged with its error and duration."""
    _, url = loopback_weather(failures=1_000)
    logged: list[tuple[str, dict]] = []
    client = weather.WeatherClient(
        url,
        max_retries=1,
        give_up_after=2,
        max_in_flight=1,
        sites_per_request=1,
        sleep=lambda _: None,
        log=lambda m, **f: logged.append((m, f)),
    )
    same_day = [dict(RECORD, captured_at=f"2026-06-01T{h:02d}:00:00Z") for h in range(5)]
    other_sites = [dict(RECORD, lat=50 + i, captured_at="2026-06-02T10:00:00Z") for i in range(6)]
    counts = weather.enrich(same_day + other_sites, client)
    assert counts == {"records": 11, "enriched": 0, "failed": 11}
    assert client.requests == 4, "two requests, two attempts each; then the provider is taken as down"
    # the month's sites in order of their first day: same_day's site (June 1), then the first other
    failed_first = same_day + other_sites[:1]
    assert all(r["weather_status"] == "failed: HTTP 503" for r in failed_first)
    down = "failed: provider taken as down after 2 requests"
    assert all(r["weather_status"].startswith(down) for r in other_sites[1:])
    assert [f["attempt"] for _, f in logged] == [1, 2, 1, 2]
    assert logged[0][0] == "weather lookup failed" and logged[0][1]["error"] == "HTTP 503"
    assert logged[0][1]["seconds"] >= 0 and logged[0][1]["day"] == "2026-06-01"


def test_refusals_are_not_an_outage(loopback_weather) -> None:
    """A 4xx is the provider answering: the site-day fails, the rest is still asked."""
    _, url = loopback_weather(failures=4, failure_status=400)
    client = weather.WeatherClient(
        url, max_retries=3, give_up_after=2, max_in_flight=1, sites_per_request=1, sleep=lambda _: None
    )
    records = [dict(RECORD, lat=50 + i) for i in range(6)]
    counts = weather.enrich(records, client)
    assert counts == {"records": 6, "enriched": 2, "failed": 4} and client.requests == 6
    assert records[0]["weather_status"] == "failed: HTTP 400"


def test_a_success_resets_the_outage_count(loopback_weather) -> None:
    _, url = loopback_weather(failures=2)
    client = weather.WeatherClient(
        url, max_retries=0, give_up_after=3, max_in_flight=1, sites_per_request=1, sleep=lambda _: None
    )
    records = [dict(RECORD, lat=50 + i) for i in range(6)]
    counts = weather.enrich(records, client)
    assert counts == {"records": 6, "enriched": 4, "failed": 2} and client.failed_in_a_row == 0


def test_a_silent_weather_server_times_out_each_attempt() -> None:
    """A server that accepts and never answers: each attempt ends in the read time-out (a
    ``TimeoutError``, not a refusal), is retried, and the record is marked, never dropped. Bounded
    by the time-outs themselves; nothing here measures how long it took."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/archive"
        client = weather.WeatherClient(url, read_timeout=0.2, max_retries=1, sleep=lambda _: None)
        records = [dict(RECORD)]
        assert weather.enrich(records, client)["failed"] == 1
    assert client.requests == 2 and records[0]["weather_status"].startswith("failed: TimeoutError")


@mock_aws
def test_weather_handler_reads_and_writes_shards(
    synth: SynthResult, loopback_weather, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = loopback_weather()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": [RECORD]}))
    monkeypatch.setenv("PROCESSED_BUCKET", "proc")
    monkeypatch.setenv("INPUT_PREFIX", "stage2")
    monkeypatch.setenv("OUTPUT_PREFIX", "weather")
    monkeypatch.setenv("WEATHER_BASE_URL", url)
    result = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 3), None, s3=s3)
    assert result["shards"] == 1 and result["enriched"] == 1
    written = json.loads(s3.get_object(Bucket="proc", Key="weather/ex1/shard-0.json")["Body"].read())
    assert written["records"][0]["weather_status"] == "ok"


@mock_aws
def test_after_a_failed_fan_out_the_weather_function_names_the_shards_without_output(
    synth: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the tolerated failures the Map fails and ListFailedShards sends the weather function
    its event with ``"mode": "list_missing"``: it answers which of the five shards stage2 wrote
    nothing for, from a listing only (a shard's body is never read, the weather provider never
    asked: no WEATHER_BASE_URL), in the answer its step declares; another execution's shards and
    files that are no shard do not count."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    for key in ("shard-0.json", "shard-2.json", "shard-4.json", "shard-7.json", "summary.json"):
        s3.put_object(Bucket="proc", Key=f"stage2/ex1/{key}", Body=b"not read")
    s3.put_object(Bucket="proc", Key="stage2/ex10/shard-1.json", Body=b"another execution")
    for key, value in {"PROCESSED_BUCKET": "proc", "INPUT_PREFIX": "stage2", "OUTPUT_PREFIX": "weather"}.items():
        monkeypatch.setenv(key, value)
    state = {"manifest": MANIFEST, "shards": {"summary": {"count": 5}}}
    event = event_for(synth, "ListFailedShards", state, execution="ex1")
    assert event["mode"] == weather.LIST_MISSING == LIST_MISSING_MODE
    answer = weather.handler(event, None, s3=s3)
    assert (answer["shards"], answer["missing"], answer["records"], answer["requests"]) == (3, "1, 3", 0, 0)
    assert answer_problems(PIPELINE.shard_counter.answer, answer) == []
    assert "weather" not in {o["Key"].split("/")[0] for o in s3.list_objects_v2(Bucket="proc").get("Contents", [])}


def weather_env(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> None:
    """The environment WeatherEnrichment gets (conf/pipeline.py), the loopback server's URL."""
    for key, value in {
        "PROCESSED_BUCKET": "proc",
        "INPUT_PREFIX": "stage2",
        "OUTPUT_PREFIX": "weather",
        "WEATHER_BASE_URL": url,
        **extra,
    }.items():
        monkeypatch.setenv(key, value)


@mock_aws
def test_weather_site_day_cache_makes_a_warm_rerun_ask_nothing(
    synth: SynthResult, loopback_weather, monkeypatch
) -> None:
    """Retries and overlapping manifests read what an earlier invocation fetched; only days the
    cache lacks are asked, and an answer-less record stays, marked."""
    server, url = loopback_weather()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    first = [dict(RECORD, key=f"k{d}", captured_at=f"2026-06-{d:02d}T05:00:00Z") for d in range(1, 11)]
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": first}))
    later = [*first, dict(RECORD, key="k30", captured_at="2026-06-30T05:00:00Z"), {"key": "no-place"}]
    s3.put_object(Bucket="proc", Key="stage2/ex2/shard-0.json", Body=json.dumps({"records": later}))
    weather_env(monkeypatch, url, CACHE_PREFIX="weather-cache")
    cold = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3)
    warm = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3)
    assert (cold["requests"], cold["site_days"], cold["from_cache"]) == (1, 10, 0)
    assert (warm["requests"], warm["from_cache"], warm["enriched"]) == (0, 10, 10)
    overlapping = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex2", 1), None, s3=s3)
    assert (overlapping["requests"], overlapping["from_cache"], overlapping["failed"]) == (1, 10, 1)
    assert server.requests == 2
    cache = weather.SiteDayCache(s3, "proc", "weather-cache")
    cached = cached_object(s3, cache, (62.47, 10.39), "2026-06")["sites"]["62.47,10.39"]
    assert sorted(cached) == [f"2026-06-{d:02d}" for d in (*range(1, 11), 30)]
    written = json.loads(s3.get_object(Bucket="proc", Key="weather/ex2/shard-0.json")["Body"].read())["records"]
    assert len(written) == 12 and written[-1]["weather_status"].startswith("failed:")


@mock_aws
def test_the_handler_keeps_no_full_day_after_the_lookups(synth: SynthResult, loopback_weather, monkeypatch) -> None:
    """Records over two months at one site: each month is cached and asked in its own turn, and
    when the shards are enriched the handler holds of every site-day only the hours its records
    need, none of the 96-value days."""
    server, url = loopback_weather()
    s3 = cache_bucket()
    records = [
        dict(RECORD, key=f"k{m}{d}", captured_at=f"2026-0{m}-{d:02d}T0{d % 3}:00:00Z")
        for m in (6, 7)
        for d in (1, 2, 3)
    ]
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": records}))
    weather_env(monkeypatch, url, CACHE_PREFIX="weather-cache")
    client = weather.WeatherClient(url, sleep=lambda _: None)
    result = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3, client=client)
    assert (result["enriched"], result["site_days"], result["requests"]) == (6, 6, 2) and server.requests == 2
    assert not client.days and {key: mask for key, (mask, _) in client.kept.items()} == {
        ((62.47, 10.39), f"2026-0{m}-{d:02d}"): 1 << d % 3 for m in (6, 7) for d in (1, 2, 3)
    }
    cached = s3.list_objects_v2(Bucket="proc", Prefix="weather-cache/")["Contents"]
    assert sorted(o["Key"].split("/")[1] for o in cached) == ["2026-06", "2026-07"]


@pytest.mark.parametrize("existing", [False, True], ids=["absent: If-None-Match", "present: If-Match"])
@mock_aws
def test_two_executions_writing_one_cache_object_keep_both_days(loopback_weather, existing: bool) -> None:
    """Two sites of one cache object (same month, same group). A reads the object, B writes
    site 1's day, A writes site 2's: A's conditional PUT fails (If-None-Match * when the object was
    absent, If-Match its ETag when it was there), it reads B's object and merges; every day stays."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    one, two, three = same_group_sites(3)
    first, second = weather.SiteDayCache(s3, "proc", "wc"), weather.SiteDayCache(s3, "proc", "wc")
    a, b = weather.WeatherClient(url, sleep=lambda _: None), weather.WeatherClient(url, sleep=lambda _: None)
    if existing:
        b.fetch([(three, "2026-06-03")])
        second.store([(three, "2026-06-03")], b)
    assert first.load({(two, "2026-06-02")}, a) == 0
    b.fetch([(one, "2026-06-01")])
    second.store([(one, "2026-06-01")], b)
    a.fetch([(two, "2026-06-02")])
    first.store([(two, "2026-06-02")], a)
    stored = cached_object(s3, first, one, "2026-06")["sites"]
    assert {site: sorted(days) for site, days in stored.items()} == {
        f"{one[0]:.2f},{one[1]:.2f}": ["2026-06-01"],
        f"{two[0]:.2f},{two[1]:.2f}": ["2026-06-02"],
        **({f"{three[0]:.2f},{three[1]:.2f}": ["2026-06-03"]} if existing else {}),
    }


class Interleaved:
    """The S3 client (moto's) with another execution's work landing between this one's read of a
    cache object and its conditional PUT: the race If-Match / If-None-Match guard against."""

    def __init__(self, s3: object, meanwhile: Callable[[], None]) -> None:
        self.s3, self.meanwhile, self.exceptions = s3, meanwhile, s3.exceptions

    def __getattr__(self, name: str) -> object:
        return getattr(self.s3, name)

    def put_object(self, **kwargs: object) -> dict:
        if self.meanwhile and ({"IfMatch", "IfNoneMatch"} & kwargs.keys()):
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return self.s3.put_object(**kwargs)


@mock_aws
def test_a_write_between_the_read_and_the_if_match_put_is_kept(loopback_weather) -> None:
    """The object is there (site three). A reads it; B writes site one's day; A's PUT carries the
    ETag it read (If-Match): 412, A reads B's object again and merges. Without the condition A
    would overwrite B's day (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    one, two, three = same_group_sites(3)
    a, b = weather.WeatherClient(url, sleep=lambda _: None), weather.WeatherClient(url, sleep=lambda _: None)
    second = weather.SiteDayCache(s3, "proc", "wc")
    b.fetch([(three, "2026-06-03"), (one, "2026-06-01")])
    second.store([(three, "2026-06-03")], b)
    first = weather.SiteDayCache(Interleaved(s3, lambda: second.store([(one, "2026-06-01")], b)), "proc", "wc")
    a.fetch([(two, "2026-06-02")])
    first.store([(two, "2026-06-02")], a)
    stored = cached_object(s3, first, one, "2026-06")["sites"]
    assert sorted(stored) == sorted(weather.site_name(s) for s in (one, two, three))


@mock_aws
def test_a_cache_object_deleted_before_the_if_match_put_is_written_again(loopback_weather) -> None:
    """Expiry (or a cleared cache) between the read and the PUT: If-Match on a missing object is a
    lost race too (404), the object is read again (absent) and written with If-None-Match."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    one, two = same_group_sites(2)
    client = weather.WeatherClient(url, sleep=lambda _: None)
    client.fetch([(one, "2026-06-01"), (two, "2026-06-02")])
    weather.SiteDayCache(s3, "proc", "wc").store([(one, "2026-06-01")], client)
    key = weather.SiteDayCache(s3, "proc", "wc").key(weather.site_group(one), "2026-06")
    racing = Interleaved(s3, lambda: s3.delete_object(Bucket="proc", Key=key))
    weather.SiteDayCache(racing, "proc", "wc").store([(two, "2026-06-02")], client)
    assert list(cached_object(s3, weather.SiteDayCache(s3, "proc", "wc"), two, "2026-06")["sites"]) == [
        weather.site_name(two)
    ]


@mock_aws
def test_a_cache_that_cannot_be_read_or_written_costs_requests_not_the_step(loopback_weather) -> None:
    """The cache only saves requests: an object S3 will not return (archived: InvalidObjectState,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html) is a miss, and a write S3
    refuses is logged and skipped; the days are there either way."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    (site,) = same_group_sites(1)
    cache = weather.SiteDayCache(s3, "proc", "wc")
    s3.put_object(Bucket="proc", Key=cache.key(weather.site_group(site), "2026-06"), Body=b"{}", StorageClass="GLACIER")
    told: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: told.append(record.getMessage())
    logging.getLogger("weather_enrichment").addHandler(handler)
    client = weather.WeatherClient(url, sleep=lambda _: None)
    assert cache.load({(site, "2026-06-01")}, client) == 0
    client.fetch([(site, "2026-06-01")])
    cache.store([(site, "2026-06-01")], client)  # GetObject refused again: no crash
    logging.getLogger("weather_enrichment").removeHandler(handler)
    assert (site, "2026-06-01") in client.days
    assert any("cache object unreadable" in t for t in told) and any("cache write failed" in t for t in told)


def test_minus_zero_is_the_same_site() -> None:
    assert weather.site_of(-0.001, 0.004) == weather.site_of(0.001, -0.004) == (0.0, 0.0)
    assert weather.site_name(weather.site_of(-0.001, -0.001)) == weather.site_name(weather.site_of(0.001, 0.001))


def cache_body(entry: object, **changes: object) -> bytes:
    """A cache object of RECORD's site and 2026-06-01 holding ``entry``, with top-level ``changes``."""
    body = {
        "layout": weather.CACHE_LAYOUT,
        "fields": list(weather.HOURLY),
        "sites": {"62.47,10.39": {"2026-06-01": entry}},
    }
    return json.dumps({**body, **changes}).encode()


def day_of(*values: float) -> str:
    return weather.encode_day(weather.array("f", values))


OLD_LAYOUT = json.dumps({"fields": list(weather.HOURLY), "days": {"2026-06-01": [1.0] * 96}}).encode()


@pytest.mark.parametrize(
    "body",
    [
        lambda: cache_body("AAAA")[:60],  # truncated
        lambda: cache_body(day_of(*[1.0] * 95)),  # a day short of 96 values
        lambda: cache_body(day_of(*[float("nan")] * 96)),  # a day with no values
        lambda: cache_body("!" * 512),  # not base64
        lambda: cache_body([1.0] * 96),  # not a string
        lambda: cache_body("", sites=["62.47,10.39"]),  # not an object
        lambda: cache_body(day_of(*[1.0] * 96), fields=["temperature_2m"]),  # other variables
        lambda: OLD_LAYOUT,  # the layout of one object per site and month, at the new key
    ],
    ids=["truncated", "short", "nan", "not-base64", "numbers", "list", "fields", "old-layout"],
)
@mock_aws
def test_a_corrupt_cache_entry_is_a_miss(synth: SynthResult, loopback_weather, monkeypatch, body) -> None:
    """A malformed cache entry or object is fetched again and overwritten, never an error for
    every execution touching that month."""
    _, url = loopback_weather()
    s3 = cache_bucket()
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": [RECORD]}))
    cache = weather.SiteDayCache(s3, "proc", "weather-cache")
    s3.put_object(Bucket="proc", Key=cache.key(weather.site_group((62.47, 10.39)), "2026-06"), Body=body())
    weather_env(monkeypatch, url, CACHE_PREFIX="weather-cache")
    result = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3)
    assert (result["enriched"], result["failed"], result["requests"]) == (1, 0, 1)
    cached = cached_object(s3, cache, (62.47, 10.39), "2026-06")
    assert cached["layout"] == weather.CACHE_LAYOUT and list(cached["sites"]["62.47,10.39"]) == ["2026-06-01"]
    assert len(weather.decode_day(cached["sites"]["62.47,10.39"]["2026-06-01"])) == 96


@mock_aws
def test_an_old_layout_cache_object_is_a_miss(synth: SynthResult, loopback_weather, monkeypatch) -> None:
    """Objects of the earlier layout (``<lat>,<lon>/<YYYY-MM>.json``, one per site and month) are
    not read: their days are asked again and written in the new layout; the processed bucket's
    expiry removes the old objects."""
    server, url = loopback_weather()
    s3 = cache_bucket()
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": [RECORD]}))
    s3.put_object(Bucket="proc", Key="weather-cache/62.47,10.39/2026-06.json", Body=OLD_LAYOUT)
    weather_env(monkeypatch, url, CACHE_PREFIX="weather-cache")
    result = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3)
    assert (result["enriched"], result["from_cache"], result["requests"]) == (1, 0, 1) and server.requests == 1
    written = json.loads(s3.get_object(Bucket="proc", Key="weather/ex1/shard-0.json")["Body"].read())["records"]
    assert written[0]["weather"]["temperature_2m"] != 1.0


@pytest.mark.parametrize(("stored", "sent"), [("k-123", {"k-123"}), (None, {None})], ids=["key", "no-parameter"])
@mock_aws
def test_the_weather_api_key_is_read_once_and_sent(
    synth: SynthResult, loopback_weather, monkeypatch, stored, sent
) -> None:
    """WEATHER_API_KEY_ARN names a SecureString (make weather-key): its value goes out as
    ``apikey``; a parameter that does not exist means no key (the free endpoint)."""
    server, url = loopback_weather()
    s3 = boto3.client("s3", region_name=REGION)
    ssm = boto3.client("ssm", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": [RECORD]}))
    if stored:
        ssm.put_parameter(Name="/odins-ravne/dev/weather-api-key", Value=stored, Type="SecureString")
    for key, value in {
        "PROCESSED_BUCKET": "proc",
        "INPUT_PREFIX": "stage2",
        "OUTPUT_PREFIX": "weather",
        "WEATHER_BASE_URL": url,
        "WEATHER_API_KEY_ARN": f"arn:aws:ssm:{REGION}:123456789012:parameter/odins-ravne/dev/weather-api-key",
    }.items():
        monkeypatch.setenv(key, value)
    assert weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3, ssm=ssm)["enriched"] == 1
    assert server.api_keys == sent


@mock_aws
def test_a_429_storm_marks_records_and_ends(synth: SynthResult, loopback_weather, monkeypatch) -> None:
    """A quota exhausted (Open-Meteo's free tier: 600 calls a minute, 5,000 an hour, 10,000 a day)
    answers every request 429 with Retry-After: after ``give_up_after`` requests failed their
    retries the rest is marked at once; every record is written, marked; the waits are bounded
    by give_up_after x max_retries x Retry-After."""
    server, url = loopback_weather(failures=1_000, failure_status=429, retry_after=1)
    pauses: list[float] = []
    client = weather.WeatherClient(url, max_retries=3, give_up_after=5, sites_per_request=1, sleep=pauses.append)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    records = [dict(RECORD, key=f"k{i}", lat=50.0 + i) for i in range(10)]
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": records}))
    for key, value in {"PROCESSED_BUCKET": "proc", "INPUT_PREFIX": "stage2", "OUTPUT_PREFIX": "weather"}.items():
        monkeypatch.setenv(key, value)
    result = weather.handler(sharded_event(synth, "WeatherEnrichment", "ex1", 1), None, s3=s3, client=client)
    assert (result["records"], result["enriched"], result["failed"]) == (10, 0, 10)
    # Each request tried 1 + max_retries times; the ones in flight when the fifth failed end theirs.
    attempts = 1 + client.max_retries
    tried = result["requests"] // attempts
    assert result["requests"] == result["failed_attempts"] == tried * attempts and server.requests == 0
    assert client.give_up_after <= tried <= client.give_up_after + client.max_in_flight - 1
    assert pauses == [1.0] * (tried * client.max_retries)
    written = json.loads(s3.get_object(Bucket="proc", Key="weather/ex1/shard-0.json")["Body"].read())["records"]
    assert [r["key"] for r in written] == [f"k{i}" for i in range(10)]
    statuses = [r["weather_status"] for r in written]
    assert statuses.count("failed: HTTP 429") == tried
    assert sum(x.startswith("failed: provider taken as down after") for x in statuses) == 10 - tried


# --- write_parquet ------------------------------------------------------------------------------

ENRICHED = [
    dict(
        RECORD,
        weather={"temperature_2m": 9.5, "precipitation": 0.1, "wind_speed_10m": 8.0, "cloud_cover": 40},
        weather_status="ok",
        detections=[
            {
                "bbox": [0.1, 0.1, 0.9, 0.9],
                "score": 0.8,
                "category": "animal",
                "species": "red_fox",
                "species_score": 0.7,
            }
        ],
    ),
    dict(
        RECORD,
        key="images/b.jpg",
        site_id="s2",
        captured_at="2026-06-02T10:00:00+00:00",
        weather=None,
        weather_status="failed: HTTP 503",
        detections=[],
    ),
]


def curated_buckets(monkeypatch: pytest.MonkeyPatch):
    """moto's processed and curated buckets and the environment WriteParquet gets."""
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("proc", "cur"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for key, value in {
        "PROCESSED_BUCKET": "proc",
        "CURATED_BUCKET": "cur",
        "INPUT_PREFIX": "weather",
        "OUTPUT_PREFIX": "detections",
    }.items():
        monkeypatch.setenv(key, value)
    return s3


@mock_aws
def test_parquet_schema_compression_and_month_partitions(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = curated_buckets(monkeypatch)
    july = dict(ENRICHED[1], key="images/c.jpg", captured_at="2026-07-01T00:00:00Z")
    s3.put_object(Bucket="proc", Key="weather/ex1/shard-0.json", Body=json.dumps({"records": [*ENRICHED, july]}))
    result = parquet.handler(sharded_event(synth, "WriteParquet", "ex1", 1), None, s3=s3)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="cur")["Contents"])
    assert result["objects"] == 2 and [k.rsplit("/", 1)[0] for k in keys] == [
        "detections/month=2026-06",
        "detections/month=2026-07",
    ]
    file = pq.ParquetFile(io.BytesIO(s3.get_object(Bucket="cur", Key=keys[0])["Body"].read()))
    assert file.schema_arrow == parquet.SCHEMA
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    row, empty = file.read().to_pylist()
    assert row["species"] == "red_fox" and row["temperature_c"] == 9.5 and row["site_id"] == "s1"
    assert row["captured_at"] == datetime(2026, 6, 1, 4, 12, tzinfo=UTC)
    assert empty["detection_index"] is None and empty["weather_status"] == "failed: HTTP 503"


@mock_aws
def test_parquet_handler_is_idempotent(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = curated_buckets(monkeypatch)
    s3.put_object(Bucket="proc", Key="weather/ex1/shard-1.json", Body=json.dumps({"records": ENRICHED}))
    first = parquet.handler(sharded_event(synth, "WriteParquet", "ex1", 2), None, s3=s3)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="cur")["Contents"]]
    bodies = {k: s3.get_object(Bucket="cur", Key=k)["Body"].read() for k in keys}
    second = parquet.handler(sharded_event(synth, "WriteParquet", "ex1", 2), None, s3=s3)
    assert first == second and first["rows"] == 2 and first["objects"] == len(keys) == 1
    name = first["part_prefix"]
    assert all(k.startswith("detections/month=2026-06/") and k.rsplit("/", 1)[1].startswith(name) for k in keys)
    assert bodies == {k: s3.get_object(Bucket="cur", Key=k)["Body"].read() for k in keys}


@mock_aws
def test_parquet_streams_with_bounded_buffers_and_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Shards arrive one at a time; rows wait in at most ``buffer_rows``, a file closes at
    ``rows_per_file``, at most ``max_open_files`` are open; every row lands exactly once, each
    row group sorted by capture time."""
    s3 = curated_buckets(monkeypatch)
    writer = parquet.DatasetWriter(
        s3, "cur", "detections", "ex1", tmp_path, buffer_rows=7, rows_per_file=20, max_open_files=2
    )
    peak = 0
    for shard in range(10):
        records = [
            dict(ENRICHED[1], key=f"s{shard}-{i}", captured_at=f"2026-0{1 + (shard + i) % 3}-{28 - i:02d}T00:00:00Z")
            for i in range(6)
        ]
        writer.add(parquet.by_month(records, "ex1"))
        peak = max(peak, sum(writer._buffered.values()))
        assert len(writer._files) <= 2
    keys = writer.close()
    assert peak <= 7 and not list(tmp_path.iterdir())
    tables = [pq.ParquetFile(io.BytesIO(s3.get_object(Bucket="cur", Key=k)["Body"].read())) for k in keys]
    assert sorted(r["image_key"] for t in tables for r in t.read().to_pylist()) == sorted(
        f"s{shard}-{i}" for shard in range(10) for i in range(6)
    )
    assert all(t.metadata.num_rows <= 20 + 7 for t in tables) and len(keys) <= 3 + 60 // 20 + 3
    for t in tables:
        for g in range(t.num_row_groups):
            times = t.read_row_group(g).column("captured_at").to_pylist()
            assert times == sorted(times)


@mock_aws
def test_parquet_handler_counts_the_images_of_the_execution(
    synth: SynthResult, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The dashboard's images per execution: an EMF line with the execution's image count."""
    s3 = curated_buckets(monkeypatch)
    s3.put_object(Bucket="proc", Key="weather/ex2/shard-0.json", Body=json.dumps({"records": ENRICHED}))
    monkeypatch.setenv("METRIC_NAMESPACE", "OdinsRavne/Pipeline")
    monkeypatch.setenv("PIPELINE_ENV", "dev")
    result = parquet.handler(sharded_event(synth, "WriteParquet", "ex2", 1), None, s3=s3)
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert line["ImagesProcessed"] == result["images"] == len(ENRICHED) and line["Environment"] == "dev"
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OdinsRavne/Pipeline"


@mock_aws
def test_a_bad_record_is_written_with_null_fields_never_lost(
    synth: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable capture time or a record without place or key is a row with those fields
    null and ``record_status`` naming them; the good records of the execution still land."""
    s3 = curated_buckets(monkeypatch)
    bad = [
        dict(ENRICHED[1], key="images/bad-date.jpg", captured_at="not a date"),
        {"site_id": "s3", "captured_at": "2026-06-05T10:00:00Z", "detections": []},
        dict(ENRICHED[1], key="images/no-place.jpg", lat=None, lon="x"),
        dict(ENRICHED[1], key="images/ahead.jpg", captured_at="2999-01-01T00:00:00Z"),
    ]
    s3.put_object(Bucket="proc", Key="weather/ex1/shard-0.json", Body=json.dumps({"records": [*ENRICHED, *bad]}))
    result = parquet.handler(sharded_event(synth, "WriteParquet", "ex1", 1), None, s3=s3)
    assert (result["images"], result["rows"]) == (6, 6)
    rows = {}
    for obj in s3.list_objects_v2(Bucket="cur")["Contents"]:
        body = s3.get_object(Bucket="cur", Key=obj["Key"])["Body"].read()
        for row in pq.ParquetFile(io.BytesIO(body)).read().to_pylist():
            rows[row["image_key"]] = (obj["Key"].split("/")[1], row)
    undated = f"month={parquet.UNDATED_MONTH}"
    assert rows["images/bad-date.jpg"][0] == undated and rows["images/bad-date.jpg"][1]["captured_at"] is None
    assert rows["images/bad-date.jpg"][1]["record_status"] == "invalid: captured_at missing or unreadable"
    assert rows[None][0] == "month=2026-06" and rows[None][1]["record_status"].startswith("invalid: key")
    no_place = rows["images/no-place.jpg"][1]
    assert (no_place["latitude"], no_place["longitude"]) == (None, None)
    assert no_place["record_status"] == "invalid: lat, lon missing or unreadable"
    assert rows["images/ahead.jpg"][0] == undated and "outside" in rows["images/ahead.jpg"][1]["record_status"]
    assert rows["images/a.jpg"][1]["record_status"] == "ok"


# --- budget_shutdown ----------------------------------------------------------------------------

ACCOUNT = "123456789012"
BUDGET_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:odins-ravne-dev-budget"
ALERT_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:odins-ravne-dev-alerts"


def budgets_text(threshold: str, actual: str) -> str:
    """A plain-text notification as AWS Budgets publishes it to an SNS topic, in the shape issue 27
    quotes. No AWS page documents this text (budgets-sns-policy.html covers only the topic policy), so
    the handler parses none of it: it reads the budget itself (DescribeBudget)."""
    return (
        "AWS Budget Notification December 06, 2026\nAWS Account 123456789012\n\nDear AWS Customer,\n\n"
        "You requested that we alert you when the ACTUAL Cost associated with your odins-ravne-dev-cost "
        f"budget is greater than ${threshold} for the current day. The ACTUAL Cost associated with this "
        f"budget is ${actual}. You can find additional details below and by accessing the AWS Budgets "
        "dashboard.\n\nBudget Name: odins-ravne-dev-cost\nBudget Type: Cost\nBudgeted Amount: $50.00\n"
        f"Alert Type: ACTUAL\nAlert Threshold: > ${threshold}\nACTUAL Amount: ${actual}\n"
    )


# CloudWatch alarm state change as SNS delivers it (JSON in Message):
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
ALARM_MESSAGE = json.dumps(
    {
        "AlarmName": "odins-ravne-dev-workflow-failed",
        "AlarmDescription": "An execution of the pipeline failed",
        "AWSAccountId": ACCOUNT,
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [1.0] was greater than or equal to the threshold (1.0).",
        "StateChangeTime": "2026-12-06T04:00:00.000+0000",
        "Region": "EU (Stockholm)",
        "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:odins-ravne-dev-workflow-failed",
        "OldStateValue": "OK",
        "Trigger": {"MetricName": "ExecutionsFailed", "Namespace": "AWS/States", "Statistic": "SUM"},
    }
)
# Cost Anomaly Detection to an SNS topic (IMMEDIATE subscriptions), fields of the Anomaly object:
# https://docs.aws.amazon.com/cost-management/latest/userguide/ad-SNS.html,
# https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_Anomaly.html
ANOMALY_MESSAGE = json.dumps(
    {
        "accountId": ACCOUNT,
        "anomalyDetailsLink": "https://console.aws.amazon.com/cost-management/home#/anomaly-detection/monitors/x",
        "anomalyEndDate": "2026-12-06T00:00:00Z",
        "anomalyId": "5ab4c0a1-0000-4000-8000-000000000000",
        "anomalyScore": {"currentScore": 0.9, "maxScore": 0.9},
        "anomalyStartDate": "2026-12-05T00:00:00Z",
        "dimensionalValue": "Amazon Elastic Compute Cloud - Compute",
        "impact": {"maxImpact": 120.0, "totalActualSpend": 170.0, "totalExpectedSpend": 50.0, "totalImpact": 120.0},
        "monitorArn": f"arn:aws:ce::{ACCOUNT}:anomalymonitor/x",
        "rootCauses": [{"region": REGION, "service": "Amazon Elastic Compute Cloud - Compute"}],
        "subscriptionId": "sub",
        "subscriptionName": "odins-ravne-dev-cost-anomalies",
    }
)


def sns_event(topic: str, message: str, subject: str | None = None) -> dict:
    """The event SNS hands a subscribed Lambda function
    (https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html)."""
    sns = {"Type": "Notification", "TopicArn": topic, "Subject": subject, "Message": message}
    return {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": sns}]}


def refresh_spend(budgets, actual: str) -> None:
    """What Budgets does several times a day from billing data: a new CalculatedSpend, no API call,
    LastUpdatedTime untouched (it is when someone last updated the budget,
    https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_Budget.html)."""
    from moto.budgets.models import budgets_backends

    backend = budgets_backends[ACCOUNT]["aws"]
    backend.budgets[ACCOUNT]["b"].budget["CalculatedSpend"] = {"ActualSpend": {"Amount": actual, "Unit": "USD"}}


def set_spend(budgets, actual: str) -> None:
    """What AWS computes from billing data, set through UpdateBudget (moto fill budgets_update_budget)."""
    spend = {"CalculatedSpend": {"ActualSpend": {"Amount": actual, "Unit": "USD"}}}
    budgets.update_budget(AccountId=ACCOUNT, NewBudget={**BUDGET_B, **spend})


@pytest.fixture
def pipeline_in_flight(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A budget, a compute environment, two queues with jobs in every unfinished state the emulator
    reaches, and a RUNNING execution of the state machine: what a spending pipeline looks like."""
    from local import runners

    monkeypatch.setattr(runners, "HOLDS_FILE", tmp_path / "holds.json")
    runners.HOLDS_FILE.write_text(json.dumps(["stage1"]))
    with mock_aws(config={"batch": {"use_docker": False}}):
        clients = {n: boto3.client(n, region_name=REGION) for n in ("batch", "ssm", "stepfunctions", "sns")}
        clients["budgets"] = boto3.client("budgets", region_name="us-east-1")
        iam, ec2, batch = boto3.client("iam"), boto3.client("ec2", region_name=REGION), clients["batch"]
        role = iam.create_role(RoleName="svc", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="b", Description="b", VpcId=vpc)["GroupId"]
        profile = iam.create_instance_profile(InstanceProfileName="ecs")["InstanceProfile"]["Arn"]
        resources = {"type": "SPOT", "minvCpus": 0, "maxvCpus": 100, "instanceTypes": ["g4dn.xlarge"]}
        resources |= {"subnets": [subnet], "securityGroupIds": [group], "instanceRole": profile}
        ce = batch.create_compute_environment(
            computeEnvironmentName="gpu", type="MANAGED", serviceRole=role, computeResources=resources
        )["computeEnvironmentArn"]
        order = [{"order": 1, "computeEnvironment": ce}]
        queues = [
            batch.create_job_queue(jobQueueName=n, state="ENABLED", priority=1, computeEnvironmentOrder=order)[
                "jobQueueArn"
            ]
            for n in ("high", "low")
        ]
        batch.register_job_definition(
            jobDefinitionName="stage1", type="container", containerProperties={"image": "x", "vcpus": 1, "memory": 512}
        )
        jobs = [
            batch.submit_job(jobName=f"j{i}", jobQueue=q, jobDefinition="stage1")["jobId"] for i, q in enumerate(queues)
        ]
        batch.describe_jobs(jobs=jobs[:1])  # one job moves on (SUBMITTED -> PENDING), as it would in AWS
        machine = clients["stepfunctions"].create_state_machine(
            name="odins-ravne-dev-pipeline",
            definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}),
            roleArn=role,
        )["stateMachineArn"]
        execution = clients["stepfunctions"].start_execution(stateMachineArn=machine)["executionArn"]
        clients["ssm"].put_parameter(Name="/p/kill", Value="off", Type="String")
        clients["ssm"].put_parameter(Name="/p/state", Value="{}", Type="String")
        create_budget(clients["budgets"], spent="0")
        topic = clients["sns"].create_topic(Name="odins-ravne-dev-alerts")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        environment = {
            "BUDGET_NAME": "b",
            "ACCOUNT_ID": ACCOUNT,
            "BUDGET_TOPIC_ARN": BUDGET_TOPIC,
            "ALERT_TOPIC_ARN": topic,
            "STATE_MACHINE_ARN": machine,
            "JOB_QUEUES": ",".join(queues),
            "COMPUTE_ENVIRONMENTS": ce,
            "KILL_SWITCH_PARAMETER": "/p/kill",
            "SHUTDOWN_STATE_PARAMETER": "/p/state",
        }
        for key, value in environment.items():
            monkeypatch.setenv(key, value)

        def inbox_messages() -> list[str]:
            got = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"])["Message"] for m in got]

        yield {"clients": clients, "jobs": jobs, "execution": execution, "inbox": inbox_messages}


def job_states(clients: dict, jobs: list[str]) -> set[str]:
    return {job["status"] for job in clients["batch"].describe_jobs(jobs=jobs)["jobs"]}


def test_budget_notifications_shut_down_at_100_percent_only(pipeline_in_flight) -> None:
    clients, jobs = pipeline_in_flight["clients"], pipeline_in_flight["jobs"]
    set_spend(clients["budgets"], "40.10")
    at_80 = sns_event(
        BUDGET_TOPIC,
        budgets_text("40.00", "40.10"),
        "AWS Budgets: odins-ravne-dev-cost has exceeded your alert threshold",
    )
    assert shutdown.handler(at_80, None, clients=clients) == {
        "action": "none",
        "reason": "budget b: actual 40.10 USD of the 50.00 USD limit (80 %), below 100 %",
    }
    set_spend(clients["budgets"], "50.20")
    # Spend is over the limit now, and still an alarm or an anomaly alert (other topic) stops nothing.
    for message in (ALARM_MESSAGE, ANOMALY_MESSAGE):
        assert shutdown.handler(sns_event(ALERT_TOPIC, message), None, clients=clients)["action"] == "none"
    assert clients["ssm"].get_parameter(Name="/p/kill")["Parameter"]["Value"] == "off"
    assert job_states(clients, jobs) <= {"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"}
    at_100 = sns_event(BUDGET_TOPIC, budgets_text("50.00", "50.20"))
    first = shutdown.handler(at_100, None, clients=clients)
    assert first["action"] == "shutdown" and first["reason"] == (
        "budget b reached its limit: actual 50.20 USD of the 50.00 USD limit (100 %)"
    )
    assert (first["executions_stopped"], first["jobs_terminated"], first["queues_disabled"]) == (1, 2, 2)
    described = clients["batch"].describe_jobs(jobs=jobs)["jobs"]
    assert {(j["status"], j["statusReason"]) for j in described} == {("FAILED", first["reason"])}
    execution = clients["stepfunctions"].describe_execution(executionArn=pipeline_in_flight["execution"])
    assert execution["status"] == "ABORTED"
    assert {q["state"] for q in clients["batch"].describe_job_queues()["jobQueues"]} == {"DISABLED"}
    (ce,) = clients["batch"].describe_compute_environments()["computeEnvironments"]
    assert (ce["computeResources"]["minvCpus"], ce["computeResources"]["maxvCpus"]) == (0, 0)
    assert clients["ssm"].get_parameter(Name="/p/kill")["Parameter"]["Value"] == "on"
    (summary,) = pipeline_in_flight["inbox"]()
    assert first["reason"] in summary and "Stopped 1 execution(s), terminated 2 job(s)" in summary

    saved = clients["ssm"].get_parameter(Name="/p/state")["Parameter"]["Value"]
    second = shutdown.handler(at_100, None, clients=clients)  # idempotent: keeps the saved limits, stops nothing
    assert (second["executions_stopped"], second["jobs_terminated"]) == (0, 0)
    assert clients["ssm"].get_parameter(Name="/p/state")["Parameter"]["Value"] == saved
    assert pipeline_in_flight["inbox"]() == [], "nothing new stopped: no second summary"

    resumed = shutdown.handler({"action": "resume"}, None, clients=clients)
    assert resumed == {"action": "resume", "compute_environments_restored": 1}
    (ce,) = clients["batch"].describe_compute_environments()["computeEnvironments"]
    assert ce["computeResources"]["maxvCpus"] == 100
    assert {q["state"] for q in clients["batch"].describe_job_queues()["jobQueues"]} == {"ENABLED"}
    assert clients["ssm"].get_parameter(Name="/p/kill")["Parameter"]["Value"] == "off"


def test_emergency_stop_needs_no_budget_reading(pipeline_in_flight) -> None:
    clients = pipeline_in_flight["clients"]
    result = shutdown.handler({"action": "shutdown", "reason": "runaway manifest"}, None, clients=clients)
    assert result["reason"] == "emergency stop of budget b's pipeline: runaway manifest"
    assert (result["executions_stopped"], result["jobs_terminated"]) == (1, 2)
    assert job_states(clients, pipeline_in_flight["jobs"]) == {"FAILED"}


def only_compute_environment(clients: dict) -> dict:
    (ce,) = clients["batch"].describe_compute_environments()["computeEnvironments"]
    return ce


def test_instances_still_running_do_not_keep_the_work_running(pipeline_in_flight) -> None:
    """Batch has scaled out (desiredvCpus 4): AWS refuses maxvCpus 0 while those instances run
    (https://docs.aws.amazon.com/batch/latest/userguide/error-desired-vcpus-update.html; moto fill
    batch_update_compute_resources). The execution is stopped and the jobs terminated anyway, the
    environment is DISABLED (no scale-out), the refusal is in the summary and the invocation fails,
    so Lambda retries it once the instances are gone."""
    clients = pipeline_in_flight["clients"]
    ce = only_compute_environment(clients)["computeEnvironmentArn"]
    clients["batch"].update_compute_environment(computeEnvironment=ce, computeResources={"desiredvCpus": 4})
    with pytest.raises(shutdown.ShutdownIncomplete, match=r"to 0 vCPUs: .*Manually scaling down"):
        shutdown.handler({"action": "shutdown", "reason": "runaway manifest"}, None, clients=clients)
    assert job_states(clients, pipeline_in_flight["jobs"]) == {"FAILED"}
    execution = clients["stepfunctions"].describe_execution(executionArn=pipeline_in_flight["execution"])
    assert execution["status"] == "ABORTED"
    assert only_compute_environment(clients)["state"] == "DISABLED"
    (summary,) = pipeline_in_flight["inbox"]()
    assert "terminated 2 job(s)" in summary and "FAILED: " in summary and "Manually scaling down" in summary
    assert json.loads(clients["ssm"].get_parameter(Name="/p/state")["Parameter"]["Value"]) == {
        "compute_environments": {ce: {"minvCpus": 0, "maxvCpus": 100}}
    }


class ShutdownRunsBetween:
    """A batch client on which the first DescribeComputeEnvironments lets another shutdown run to its
    end first: the 80 % and 100 % notifications (or an emergency stop) arriving together."""

    def __init__(self, batch, other) -> None:
        self._batch, self._other = batch, other

    def __getattr__(self, name: str):
        return getattr(self._batch, name)

    def describe_compute_environments(self, **kwargs):
        if self._other is not None:
            other, self._other = self._other, None
            other()
        return self._batch.describe_compute_environments(**kwargs)


def test_two_shutdowns_at_once_keep_the_limits_to_restore(pipeline_in_flight) -> None:
    clients = pipeline_in_flight["clients"]

    def first() -> None:
        shutdown.handler({"action": "shutdown", "reason": "a"}, None, clients=clients)

    second = {**clients, "batch": ShutdownRunsBetween(clients["batch"], first)}
    shutdown.handler({"action": "shutdown", "reason": "b"}, None, clients=second)
    assert only_compute_environment(clients)["computeResources"]["maxvCpus"] == 0
    shutdown.handler({"action": "resume"}, None, clients=clients)
    resumed = only_compute_environment(clients)
    assert resumed["computeResources"]["maxvCpus"] == 100, "resume restores what the shutdowns saved, not 0"
    assert resumed["state"] == "ENABLED"


def test_a_switch_turned_off_by_hand_does_not_keep_stale_limits(pipeline_in_flight) -> None:
    """After a shutdown the operator turned the switch off and raised the environment to 200 vCPUs by
    hand instead of make budget-resume: the next shutdown saves 200, not the first shutdown's 100."""
    clients = pipeline_in_flight["clients"]
    batch, ssm = clients["batch"], clients["ssm"]
    shutdown.handler({"action": "shutdown", "reason": "a"}, None, clients=clients)
    ce = only_compute_environment(clients)["computeEnvironmentArn"]
    batch.update_compute_environment(computeEnvironment=ce, state="ENABLED", computeResources={"maxvCpus": 200})
    ssm.put_parameter(Name="/p/kill", Value="off", Overwrite=True)
    shutdown.handler({"action": "shutdown", "reason": "b"}, None, clients=clients)
    shutdown.handler({"action": "resume"}, None, clients=clients)
    assert only_compute_environment(clients)["computeResources"]["maxvCpus"] == 200


def test_a_budget_with_a_zero_limit_is_reported_not_divided_by() -> None:
    assert shutdown.Spend(actual=3.0, limit=0.0).text() == "actual 3.00 USD of the 0.00 USD limit (no positive limit)"
