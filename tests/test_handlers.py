"""Handlers of lambda_src/: pure logic without AWS, and their AWS calls against moto (in-process)."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from local import moto_fills
from pipeline_ops import weather_server

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


def create_budget(budgets, *, spent: str) -> None:
    """A 50 USD daily budget named ``b`` that has ``spent`` USD so far."""
    budgets.create_budget(
        AccountId="123456789012",
        Budget={
            "BudgetName": "b",
            "BudgetLimit": {"Amount": "50", "Unit": "USD"},
            "TimeUnit": "DAILY",
            "BudgetType": "COST",
            "CalculatedSpend": {"ActualSpend": {"Amount": spent, "Unit": "USD"}},
        },
    )


@mock_aws
def test_guard_reads_budgets_and_ssm(monkeypatch: pytest.MonkeyPatch) -> None:
    budgets, ssm = boto3.client("budgets", region_name="us-east-1"), boto3.client("ssm", region_name=REGION)
    create_budget(budgets, spent="51")
    ssm.put_parameter(Name="/p/kill", Value="off", Type="String")
    monkeypatch.setenv("ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("BUDGET_NAME", "b")
    monkeypatch.setenv("KILL_SWITCH_PARAMETER", "/p/kill")
    result = guard.handler({"execution_id": "e1"}, None, budgets=budgets, ssm=ssm)
    assert result["allowed"] is False and result["limit"] == 50 and result["spent"] == 51
    assert set(result) == {"allowed", "reason", "spent", "estimate", "forecast", "limit", "threshold_pct"}
    ssm.delete_parameter(Name="/p/kill")  # a missing switch counts as off
    budgets.delete_budget(AccountId="123456789012", BudgetName="b")
    create_budget(budgets, spent="5")
    assert guard.handler({"execution_id": "e2"}, None, budgets=budgets, ssm=ssm)["allowed"] is True
    priced = guard.handler({"execution_id": "e3", "plan": {"estimated_usd": 46}}, None, budgets=budgets, ssm=ssm)
    assert priced["allowed"] is False and priced["estimate"] == 46 and "estimated 46.00 USD" in priced["reason"]


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

    def start(failures: int = 0, failure_status: int = 503):
        server = weather_server.start(0, failures=failures, failure_status=failure_status)
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


def test_weather_cache_one_request_per_site_day(loopback_weather) -> None:
    server, url = loopback_weather()
    client = weather.WeatherClient(url, sleep=lambda _: None)
    records = [dict(RECORD), dict(RECORD, captured_at="2026-06-01T22:59:00Z"), dict(RECORD, lat=61.0)]
    counts = weather.enrich(records, client)
    assert counts == {"records": 3, "enriched": 3, "failed": 0}
    assert client.requests == server.requests == 2  # two sites, one day each
    assert set(records[0]["weather"]) == {"temperature_2m", "precipitation", "wind_speed_10m", "cloud_cover"}
    assert records[0]["weather"] != records[1]["weather"]  # different hours of the same cached day


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
        url, max_retries=1, give_up_after=2, sleep=lambda _: None, log=lambda m, **f: logged.append((m, f))
    )
    same_day = [dict(RECORD, captured_at=f"2026-06-01T{h:02d}:00:00Z") for h in range(5)]
    other_sites = [dict(RECORD, lat=50 + i, captured_at="2026-06-02T10:00:00Z") for i in range(6)]
    counts = weather.enrich(same_day + other_sites, client)
    assert counts == {"records": 11, "enriched": 0, "failed": 11}
    assert client.requests == 4, "two site-days, two attempts each; then the provider is taken as down"
    assert all(r["weather_status"] == "failed: HTTP 503" for r in same_day + other_sites[:1])
    assert other_sites[-1]["weather_status"].startswith("failed: provider taken as down after 2 site-days")
    assert [f["attempt"] for _, f in logged] == [1, 2, 1, 2]
    assert logged[0][0] == "weather lookup failed" and logged[0][1]["error"] == "HTTP 503"
    assert logged[0][1]["seconds"] >= 0 and logged[0][1]["day"] == "2026-06-01"


def test_refusals_are_not_an_outage(loopback_weather) -> None:
    """A 4xx is the provider answering: the site-day fails, the rest is still asked."""
    _, url = loopback_weather(failures=4, failure_status=400)
    client = weather.WeatherClient(url, max_retries=3, give_up_after=2, sleep=lambda _: None)
    records = [dict(RECORD, lat=50 + i) for i in range(6)]
    counts = weather.enrich(records, client)
    assert counts == {"records": 6, "enriched": 2, "failed": 4} and client.requests == 6
    assert records[0]["weather_status"] == "failed: HTTP 400"


def test_a_success_resets_the_outage_count(loopback_weather) -> None:
    _, url = loopback_weather(failures=2)
    client = weather.WeatherClient(url, max_retries=0, give_up_after=3, sleep=lambda _: None)
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
def test_weather_handler_reads_and_writes_shards(loopback_weather, monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = loopback_weather()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="proc", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="proc", Key="stage2/ex1/shard-0.json", Body=json.dumps({"records": [RECORD]}))
    monkeypatch.setenv("PROCESSED_BUCKET", "proc")
    monkeypatch.setenv("INPUT_PREFIX", "stage2")
    monkeypatch.setenv("OUTPUT_PREFIX", "weather")
    monkeypatch.setenv("WEATHER_BASE_URL", url)
    result = weather.handler({"execution_id": "ex1", "shard_count": 3}, None, s3=s3)
    assert result["shards"] == 1 and result["enriched"] == 1
    written = json.loads(s3.get_object(Bucket="proc", Key="weather/ex1/shard-0.json")["Body"].read())
    assert written["records"][0]["weather_status"] == "ok"


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


def test_parquet_partitions_schema_and_compression() -> None:
    groups = parquet.partitions(ENRICHED, "ex1")
    assert sorted(groups) == [("2026-06-01", "s1"), ("2026-06-02", "s2")]
    data = parquet.to_parquet(groups[("2026-06-01", "s1")])
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.schema_arrow == parquet.SCHEMA
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    row = file.read().to_pylist()[0]
    assert row["species"] == "red_fox" and row["temperature_c"] == 9.5
    assert row["captured_at"] == datetime(2026, 6, 1, 4, 12, tzinfo=UTC)
    empty = pq.read_table(io.BytesIO(parquet.to_parquet(groups[("2026-06-02", "s2")]))).to_pylist()
    assert empty[0]["detection_index"] is None and empty[0]["weather_status"] == "failed: HTTP 503"


@mock_aws
def test_parquet_handler_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("proc", "cur"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="proc", Key="weather/ex1/shard-1.json", Body=json.dumps({"records": ENRICHED}))
    monkeypatch.setenv("PROCESSED_BUCKET", "proc")
    monkeypatch.setenv("CURATED_BUCKET", "cur")
    monkeypatch.setenv("INPUT_PREFIX", "weather")
    monkeypatch.setenv("OUTPUT_PREFIX", "detections")
    first = parquet.handler({"execution_id": "ex1", "shard_count": 2}, None, s3=s3)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="cur")["Contents"]]
    bodies = {k: s3.get_object(Bucket="cur", Key=k)["Body"].read() for k in keys}
    second = parquet.handler({"execution_id": "ex1", "shard_count": 2}, None, s3=s3)
    assert first == second and first["rows"] == 2 and first["objects"] == len(keys) == 2
    assert all(k.startswith("detections/date=") and k.endswith(f"/{first['object_name']}") for k in keys)
    assert bodies == {k: s3.get_object(Bucket="cur", Key=k)["Body"].read() for k in keys}


@mock_aws
def test_parquet_handler_counts_the_images_of_the_execution(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The dashboard's images per execution: an EMF line with the execution's image count."""
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("proc", "cur"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="proc", Key="weather/ex2/shard-0.json", Body=json.dumps({"records": ENRICHED}))
    for key, value in {"PROCESSED_BUCKET": "proc", "CURATED_BUCKET": "cur", "INPUT_PREFIX": "weather"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OUTPUT_PREFIX", "detections")
    monkeypatch.setenv("METRIC_NAMESPACE", "OdinsRavne/Pipeline")
    monkeypatch.setenv("PIPELINE_ENV", "dev")
    result = parquet.handler({"execution_id": "ex2", "shard_count": 1}, None, s3=s3)
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert line["ImagesProcessed"] == result["images"] == len(ENRICHED) and line["Environment"] == "dev"
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OdinsRavne/Pipeline"


# --- budget_shutdown ----------------------------------------------------------------------------

BUDGETS_TEXT = (
    "AWS Budget Notification\nYou requested that we alert you when the ACTUAL Cost associated with "
    "your odins-ravne-dev-cost budget is greater than {pct}% for the current DAILY period."
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (BUDGETS_TEXT.format(pct="100.00"), 100.0),
        (BUDGETS_TEXT.format(pct="80"), 80.0),
        (BUDGETS_TEXT.format(pct="100").replace("ACTUAL", "FORECASTED"), None),
        (json.dumps({"notificationType": "ACTUAL", "threshold": 100}), 100.0),
        ("an alarm went off", None),
    ],
)
def test_alert_percentage(message: str, expected: float | None) -> None:
    assert shutdown.alert_percentage(message) == expected


@mock_aws
def test_shutdown_and_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    batch, ssm = boto3.client("batch", region_name=REGION), boto3.client("ssm", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="svc", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="b", Description="b", VpcId=vpc)["GroupId"]
    profile = iam.create_instance_profile(InstanceProfileName="ecs")["InstanceProfile"]["Arn"]
    ce = batch.create_compute_environment(
        computeEnvironmentName="gpu",
        type="MANAGED",
        serviceRole=role,
        computeResources={
            "type": "SPOT",
            "minvCpus": 0,
            "maxvCpus": 100,
            "instanceTypes": ["g4dn.xlarge"],
            "subnets": [subnet],
            "securityGroupIds": [group],
            "instanceRole": profile,
        },
    )
    queue = batch.create_job_queue(
        jobQueueName="q",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
    )
    ssm.put_parameter(Name="/p/kill", Value="off", Type="String")
    ssm.put_parameter(Name="/p/state", Value="{}", Type="String")
    monkeypatch.setenv("JOB_QUEUES", queue["jobQueueArn"])
    monkeypatch.setenv("COMPUTE_ENVIRONMENTS", ce["computeEnvironmentArn"])
    monkeypatch.setenv("KILL_SWITCH_PARAMETER", "/p/kill")
    monkeypatch.setenv("SHUTDOWN_STATE_PARAMETER", "/p/state")
    alert = {"Records": [{"Sns": {"Message": BUDGETS_TEXT.format(pct="100.00")}}]}
    assert (
        shutdown.handler(
            {"Records": [{"Sns": {"Message": BUDGETS_TEXT.format(pct="80")}}]}, None, batch=batch, ssm=ssm
        )["action"]
        == "none"
    )
    first = shutdown.handler(alert, None, batch=batch, ssm=ssm)
    saved = ssm.get_parameter(Name="/p/state")["Parameter"]["Value"]
    second = shutdown.handler(alert, None, batch=batch, ssm=ssm)  # idempotent: keeps the saved limits
    assert first == second and first["queues_disabled"] == 1
    assert ssm.get_parameter(Name="/p/state")["Parameter"]["Value"] == saved
    assert batch.describe_job_queues()["jobQueues"][0]["state"] == "DISABLED"
    assert batch.describe_compute_environments()["computeEnvironments"][0]["computeResources"]["maxvCpus"] == 0
    assert ssm.get_parameter(Name="/p/kill")["Parameter"]["Value"] == "on"
    resumed = shutdown.handler({"action": "resume"}, None, batch=batch, ssm=ssm)
    assert resumed == {"action": "resume", "compute_environments_restored": 1}
    restored = batch.describe_compute_environments()["computeEnvironments"][0]["computeResources"]["maxvCpus"]
    assert restored == 100
    assert batch.describe_job_queues()["jobQueues"][0]["state"] == "ENABLED"
    assert ssm.get_parameter(Name="/p/kill")["Parameter"]["Value"] == "off"
