"""The whole local stack on the real emulator (moto server + terraform via tflocal), end to end.

The emulator and the applied stack are this module's own (tests/conftest.py); under xdist the
module is one group on one worker, and the destroy test runs last of it. (The fan-out run is in
test_plan_emulator.py, after its plans, so that the two stack modules take about as long.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.runs import alert_queue, messages, run_pipeline, s3_event, weather_statuses

pytestmark = pytest.mark.emulator


def executions_for(aws, bucket: str, key: str) -> list[str]:
    """The executions whose input is the S3 event of this object (what the manifest rule starts)."""
    from pipeline_ops.run import triggered_execution

    machine = next(m["stateMachineArn"] for m in aws["stepfunctions"].list_state_machines()["stateMachines"])
    found: list[str] = []
    while (arn := triggered_execution(aws["stepfunctions"], machine, set(found), bucket, key, 0)) is not None:
        found.append(arn)
    return found


TOP = ["PlanFanOut", "GuardBudget", "Stage0", "Stage1ToStage2", "WeatherEnrichment", "WriteParquet"]


def test_uploaded_manifest_starts_one_run_that_succeeds_in_order_with_parquet(
    aws, deployed: Path, emulator, capsys
) -> None:
    """The run is started as production starts it: the manifest's upload -> S3's Object Created
    event -> the stack's EventBridge rule -> its start_run function (invoked asynchronously, as its
    resource policy admits the rule) -> StartExecution named after the manifest (moto fill
    s3_eventbridge_starts_state_machines); the test calls no StartExecution. Its key has
    a space, quotes and non-ASCII characters and reaches the workflow intact."""
    from pipeline_ops.run import curated_objects, visited_states

    name = f'sample "odd" \u00d8rsta {time.monotonic_ns()}'
    execution_arn, described = run_pipeline(name=name)
    assert described["status"] == "SUCCEEDED", described
    raw = next(b["Name"] for b in aws["s3"].list_buckets()["Buckets"] if "-raw-" in b["Name"])
    key = f"manifests/{name}.json"
    given = json.loads(described["input"])
    assert given["event"]["detail-type"] == "Object Created" and given["event"]["detail"]["object"]["key"] == key
    assert visited_states(aws["stepfunctions"], execution_arn)[:2] == ["FromTrigger", "ManifestFromEvent"]
    assert json.loads(described["output"])["manifest"] == f"s3://{raw}/{key}"
    assert len(executions_for(aws, raw, key)) == 1, "one upload, one execution"
    visited = [s for s in visited_states(aws["stepfunctions"], execution_arn) if s in TOP]
    assert visited == TOP
    output = json.loads(described["output"])
    assert (output["plan"]["images"], output["shards"]["summary"]["count"], output["shards"]["summary"]["valid"]) == (
        4,
        1,
        3,
    )
    assert output["guard"]["allowed"] is True
    assert output["weather"] == {"enriched": 3, "failed": 0, "shards": 1, "missing": "none"}, weather_statuses(
        aws, execution_arn
    )
    written = curated_objects(aws["s3"], output)
    assert output["parquet"]["objects"] == len(written) == 1
    assert all(k.endswith(".parquet") and "/month=2026-06/" in k for k in written)

    from pipeline_ops import health

    capsys.readouterr()
    assert health.main([str(deployed), "--emulator"]) == 0
    report = capsys.readouterr().out
    assert "last execution SUCCEEDED" in report and report.count("ok   job queue") == 4  # high, normal, low + cpu
    assert report.count("ok   compute environment") == 2 and "in ALARM: none" in report
    # An alarm in ALARM fails make health and is named (set_alarm_state, as CloudWatch does:
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html).
    from local.status import clients

    cloudwatch = clients(("cloudwatch",))["cloudwatch"]
    alarm = next(
        a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"] if a["AlarmName"].endswith("-errors")
    )
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test: a function failed")
    try:
        assert health.main([str(deployed), "--emulator"]) == 1
    finally:
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="test over")
    assert f"in ALARM: {alarm}" in capsys.readouterr().out
    # status-aws's view (same code, --status): recent executions, budget spend, kill switch
    assert health.main([str(deployed), "--emulator", "--status"]) == 0
    status = capsys.readouterr().out
    assert f"execution {execution_arn.rsplit(':', 1)[-1]}: SUCCEEDED" in status
    assert "budget odins-ravne-local-cost:" in status and "kill switch /odins-ravne/local/kill-switch: off" in status

    # One manifest content, one run: lambda_src/start_run names the execution after the manifest's
    # key and content, and Step Functions keeps one execution per name for 90 days
    # (https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html).
    # The same bytes uploaded again (a new version, a new Object Created event) start nothing ...
    log = Path(emulator["state"]) / "moto.log"
    seen = log.read_text(errors="replace").count('"nothing started"')
    url = alert_queue(aws)
    again = aws["s3"].put_object(Bucket=raw, Key=key, Body=aws["s3"].get_object(Bucket=raw, Key=key)["Body"].read())
    assert again["VersionId"] != given["event"]["detail"]["object"]["version-id"], "a new version of the manifest"
    deadline = time.monotonic() + 120  # bounded: the trigger invokes start_run asynchronously
    while log.read_text(errors="replace").count('"nothing started"') == seen and time.monotonic() < deadline:
        time.sleep(0.5)
    told = [line for line in log.read_text(errors="replace").splitlines() if '"nothing started"' in line][seen:]
    assert told and execution_arn.rsplit(":", 1)[-1] in told[0], told
    assert len(executions_for(aws, raw, key)) == 1, "the same bytes uploaded again started a run"
    told = messages(aws, url)  # the uploader expected a run: the alert topic says why none started
    assert any(f"already started execution {execution_arn.rsplit(':', 1)[-1]}" in m for m in told), told
    # ... nor does the same event delivered again (durable delivery is at least once:
    # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-delivery-level.html).
    starter = next(
        f["FunctionName"]
        for f in aws["lambda"].list_functions()["Functions"]
        if f["FunctionName"].endswith("-start-run")
    )
    answer = json.loads(
        aws["lambda"].invoke(FunctionName=starter, Payload=json.dumps(given["event"]).encode())["Payload"].read()
    )
    assert (answer["started"], answer["execution"]) == (False, execution_arn), answer
    assert len(executions_for(aws, raw, key)) == 1, "a second delivery started a run"


def test_stage1_failure_is_retried_then_caught(aws, emulator) -> None:
    from pipeline_ops.run import shard_jobs, visited_states

    url = alert_queue(aws)
    failures = Path(emulator["state"]) / "batch-failures.json"
    failures.write_text(json.dumps(["odins-ravne-local-stage1"]))
    try:
        execution_arn, described = run_pipeline()
    finally:
        failures.unlink()
    # The one shard failed: past the tolerated share, so the Map fails, and the execution with its
    # real error (the final Fail state's ErrorPath).
    assert described["status"] == "FAILED"
    assert described["error"] == "Stage1ToStage2: States.ExceedToleratedFailureThreshold"
    assert "1 of 1 items failed" in described["cause"]
    visited = visited_states(aws["stepfunctions"], execution_arn)
    # The failed Map leaves its error and cause only: ListFailedShards lists which shards have no
    # output, for the notice; the execution still fails with the Map's error.
    assert visited[-4:] == ["Stage1ToStage2Failed", "ListFailedShards", "NotifyShardsFailed", "Failed"]
    execution_id = execution_arn.rsplit(":", 1)[-1]
    assert len(shard_jobs(aws["batch"], execution_id, "stage1")) == 2, "the one shard's job is retried exactly once"
    assert shard_jobs(aws["batch"], execution_id, "stage2") == [], "a shard whose stage1 failed never reaches stage2"
    sent = messages(aws, url)
    assert any(
        f"Execution {execution_id} failed in the fan-out: States.ExceedToleratedFailureThreshold" in m
        and "0 of 1 shards finished; failed or stopped: 0. Run just those again" in m
        and f"make rerun-shards ENV=<env> EXECUTION={execution_id}." in m
        for m in sent
    ), sent


def test_what_cannot_finish_is_refused_before_any_batch_job(aws) -> None:
    """1,000 one-image shards need ~84 waves of 12 (3 min each): far past 2 h. Refused with the
    plan's reason before any Batch job; a bad priority stops before any Batch job too."""
    from pipeline_ops.run import shard_jobs, trigger_paused, visited_states

    url = alert_queue(aws)
    raw = next(b["Name"] for b in aws["s3"].list_buckets()["Buckets"] if "-raw-" in b["Name"])
    records = [
        {"key": f"images/x/{i}.jpg", "site_id": "x", "lat": 60, "lon": 10, "captured_at": "2026-06-01T00:00:00Z"}
        for i in range(1000)
    ]
    # A key with a space, quotes and non-ASCII characters, given as the trigger gives it: the S3
    # Object Created event (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html) as
    # the rule's <aws.events.event.json> input; PlanFanOut reads that very object. Started by hand
    # (the trigger cannot ask for one-image shards), so the upload starts no run of its own.
    key = 'manifests/too large "x" \u00e6 \u00d8rsta.json'
    with trigger_paused(aws["events"]):
        put = aws["s3"].put_object(Bucket=raw, Key=key, Body=json.dumps({"images": records}).encode())
    event = s3_event(raw, key, put["ETag"].strip('"'))
    execution_arn = aws["stepfunctions"].start_execution(
        stateMachineArn=next(m["stateMachineArn"] for m in aws["stepfunctions"].list_state_machines()["stateMachines"]),
        input=json.dumps({"event": event, "images_per_shard": 1}),
    )["executionArn"]
    from pipeline_ops.run import follow

    described = follow(aws["stepfunctions"], execution_arn, 120)
    assert (described["status"], described["error"]) == ("FAILED", "ManifestRefused")
    assert described["cause"].startswith(
        "1000 images make 1000 shards of up to 1, 12 at a time: about 4.4 h of work with one job retry"
    )
    assert "after a margin of 12 min; split it into manifests of at most 324 images" in described["cause"]
    visited = visited_states(aws["stepfunctions"], execution_arn)
    assert visited[:3] == ["FromTrigger", "ManifestFromEvent", "Route"]
    assert visited[-3:] == ["PlanFanOutAllowed", "NotifyManifestRefused", "ManifestRefused"]
    for stage in ("stage0", "stage1"):
        assert shard_jobs(aws["batch"], execution_arn.rsplit(":", 1)[-1], stage) == [], f"no {stage} job"
    assert any("refused" in m and "split it into manifests" in m for m in messages(aws, url))

    execution_arn, described = run_pipeline(options={"priority": "urgent"})
    assert (described["status"], described["error"]) == ("FAILED", "InvalidInput")
    assert described["cause"] == "priority must be one of high, normal, low (or absent for normal)"
    assert visited_states(aws["stepfunctions"], execution_arn) == [
        "FromTrigger",
        "ManifestGiven",
        "Route",
        "NotifyInvalidInput",
        "InvalidInput",
    ]
    assert any("refused: priority must be one of" in m and '"urgent"' in m for m in messages(aws, url))

    # No manifest ({"Manifest": ...} is not "manifest"), or an event that is not S3's: refused and
    # told before any Lambda, not a States.Runtime at PlanFanOut or ManifestFromEvent.
    machine = next(m["stateMachineArn"] for m in aws["stepfunctions"].list_state_machines()["stateMachines"])
    for given, checked in (
        ({"Manifest": f"s3://{raw}/manifests/x.json"}, "ManifestGiven"),
        ({"event": {"source": "aws.s3", "detail": {"bucket": {"name": raw}}}}, "FromTrigger"),
    ):
        execution_arn = aws["stepfunctions"].start_execution(stateMachineArn=machine, input=json.dumps(given))[
            "executionArn"
        ]
        described = follow(aws["stepfunctions"], execution_arn, 60)
        assert (described["status"], described["error"]) == ("FAILED", "InvalidInput"), given
        assert visited_states(aws["stepfunctions"], execution_arn)[-3:] == [
            checked,
            "NotifyInputWithoutManifest",
            "InputWithoutManifest",
        ], given
    assert sum('the input must give "manifest"' in m for m in messages(aws, url)) >= 1


def unfinished_jobs(aws) -> list[dict]:
    states = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
    queues = [q["jobQueueArn"] for q in aws["batch"].describe_job_queues()["jobQueues"]]
    return [
        j for q in queues for s in states for j in aws["batch"].list_jobs(jobQueue=q, jobStatus=s)["jobSummaryList"]
    ]


def set_budget_spend(aws, name: str, actual: str) -> None:
    """What AWS computes from billing data, set through UpdateBudget (moto fill budgets_update_budget)."""
    budget = aws["budgets"].describe_budget(AccountId=aws["account"], BudgetName=name)["Budget"]
    new = {k: budget[k] for k in ("BudgetName", "BudgetLimit", "TimeUnit", "BudgetType")}
    aws["budgets"].update_budget(
        AccountId=aws["account"],
        NewBudget={**new, "CalculatedSpend": {"ActualSpend": {"Amount": actual, "Unit": "USD"}}},
    )


def test_budget_at_100_percent_stops_jobs_and_executions_in_flight(
    aws, deployed: Path, emulator, capsys, monkeypatch
) -> None:
    """An execution waits on its stage0 job and more jobs sit on the GPU queues (held in flight:
    local/runners.py). Budgets publishes its notification: the shutdown leaves no running execution,
    no unfinished job, the queues disabled and the compute environments at 0; applies are refused
    while the switch is on; budget-resume restores the saved limits."""
    from local.deploy import emulator_env
    from pipeline_ops import budget_resume, health, kill_switch
    from pipeline_ops.run import trigger_paused, upload_sample, visited_states

    holds = Path(emulator["state"]) / "batch-holds.json"
    holds.write_text(json.dumps(["odins-ravne-local-stage0", "odins-ravne-local-stage1"]))
    budget = "odins-ravne-local-cost"
    try:
        raw = next(b["Name"] for b in aws["s3"].list_buckets()["Buckets"] if "-raw-" in b["Name"])
        machine = next(m["stateMachineArn"] for m in aws["stepfunctions"].list_state_machines()["stateMachines"])
        with trigger_paused(aws["events"]):  # started by hand below, with its priority
            manifest = upload_sample(aws["s3"], raw, "budget-kill", None)
        execution_arn = aws["stepfunctions"].start_execution(
            stateMachineArn=machine, input=json.dumps({"manifest": manifest, "priority": "high"})
        )["executionArn"]
        definition = next(
            d["jobDefinitionArn"]
            for d in aws["batch"].describe_job_definitions(status="ACTIVE")["jobDefinitions"]
            if d["jobDefinitionName"] == "odins-ravne-local-stage1"
        )
        for queue in ("high", "low"):
            aws["batch"].submit_job(
                jobName=f"held-{queue}", jobQueue=f"odins-ravne-local-{queue}", jobDefinition=definition
            )
        deadline = time.monotonic() + 60
        while len(unfinished_jobs(aws)) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        in_flight = unfinished_jobs(aws)
        assert len(in_flight) == 3, "the execution's stage0 job and the two submitted jobs are in flight"
        assert aws["stepfunctions"].describe_execution(executionArn=execution_arn)["status"] == "RUNNING"
        saved_limits = {
            c["computeEnvironmentName"]: c["computeResources"]["maxvCpus"]
            for c in aws["batch"].describe_compute_environments()["computeEnvironments"]
        }

        set_budget_spend(aws, budget, "1000000.00")  # far past the limit
        topic = next(t["TopicArn"] for t in aws["sns"].list_topics()["Topics"] if t["TopicArn"].endswith("-budget"))
        aws["sns"].publish(
            TopicArn=topic,
            Subject=f"AWS Budgets: {budget} has exceeded your alert threshold",
            Message=f"You requested that we alert you when the ACTUAL Cost associated with your {budget} budget is "
            "greater than $10.00 for the current day. The ACTUAL Cost associated with this budget is $1000000.00.",
        )
        deadline = time.monotonic() + 60
        while (
            unfinished_jobs(aws)
            or aws["stepfunctions"].list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]
        ) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert unfinished_jobs(aws) == [], "every job in flight was terminated"
        described = aws["batch"].describe_jobs(jobs=[j["jobId"] for j in in_flight])["jobs"]
        assert {j["status"] for j in described} == {"FAILED"}
        assert all(j["statusReason"].startswith(f"budget {budget} reached its limit") for j in described)
        assert aws["stepfunctions"].list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"] == []
        assert aws["stepfunctions"].describe_execution(executionArn=execution_arn)["status"] == "ABORTED"
        assert {q["state"] for q in aws["batch"].describe_job_queues()["jobQueues"]} == {"DISABLED"}
        assert {
            c["computeResources"]["maxvCpus"]
            for c in aws["batch"].describe_compute_environments()["computeEnvironments"]
        } == {0}
        capsys.readouterr()
        assert health.main([str(deployed), "--emulator"]) == 1, "a shut-down pipeline is not healthy"
        assert capsys.readouterr().out.count("FAIL job queue") == 4

        # Terraform would re-enable everything: the apply is refused while the switch is on.
        assert kill_switch.check(deployed, aws["ssm"]) == 1
        refusal = capsys.readouterr().err.strip()
        assert refusal.startswith("error: kill switch /odins-ravne/local/kill-switch is 'on'") and "\n" not in refusal
        assert "make budget-resume ENV=local" in refusal

        set_budget_spend(aws, budget, "0")
        execution_arn, described = run_pipeline()
        assert described["status"] == "FAILED" and described["error"] == "BudgetExceeded"
        assert visited_states(aws["stepfunctions"], execution_arn)[-2:] == ["NotifyBudgetExceeded", "BudgetExceeded"]
        assert described["cause"].startswith("kill switch"), described["cause"]
    finally:
        holds.unlink()
        set_budget_spend(aws, budget, "0")
    for key, value in emulator_env().items():
        monkeypatch.setenv(key, value)
    assert budget_resume.main([str(deployed)]) == 0
    assert "compute_environments_restored" in capsys.readouterr().out
    assert {q["state"] for q in aws["batch"].describe_job_queues()["jobQueues"]} == {"ENABLED"}
    restored = {
        c["computeEnvironmentName"]: c["computeResources"]["maxvCpus"]
        for c in aws["batch"].describe_compute_environments()["computeEnvironments"]
    }
    assert restored == saved_limits
    assert kill_switch.check(deployed, aws["ssm"]) == 0
    assert run_pipeline()[1]["status"] == "SUCCEEDED", "resumed: a run goes through again"


def test_images_check_names_each_missing_tag(deployed: Path, aws, capsys) -> None:
    from pipeline_ops import images

    planned = images.planned_images(deployed)
    assert [(i.stage, i.repository, i.tag) for i in planned] == [
        (f"stage{n}", f"odins-ravne-local/stage{n}", "0.1.0") for n in range(3)
    ]
    assert images.check(deployed, aws["ecr"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: 3 stage image(s) missing from ECR") and "\n" not in error
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    for image in planned:
        body = json.dumps({**manifest, "config": {"digest": f"sha256:{image.stage:0<64}"[:71]}})
        aws["ecr"].put_image(repositoryName=image.repository, imageManifest=body, imageTag=image.tag)
    assert images.check(deployed, aws["ecr"]) == 0
    assert images.state_of(aws["ecr"], images.StageImage("x", "odins-ravne-local/nothing", "1")) == "no-repository"


@pytest.mark.destroys_stack
def test_destroy_leaves_nothing(deployed: Path, aws) -> None:
    from local import deploy
    from local.leftovers import leftovers

    for bucket in ("lock-test-state", "lock-test-slow"):
        if bucket in {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]}:
            for version in aws["s3"].list_object_versions(Bucket=bucket).get("Versions", []):
                aws["s3"].delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            aws["s3"].delete_bucket(Bucket=bucket)
    for url in aws["sqs"].list_queues().get("QueueUrls", []):
        if "/alerts-" in url:
            aws["sqs"].delete_queue(QueueUrl=url)
    for sub in aws["sns"].list_subscriptions()["Subscriptions"]:
        if sub["Protocol"] == "sqs":
            aws["sns"].unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    assert deploy.destroy(deployed) == 0
    assert leftovers(aws) == []
