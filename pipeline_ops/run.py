"""``make run-local [IMAGES=N] [PRIORITY=high|normal|low] [RERUN=s3://...]``: run the pipeline once on the emulator.

Uploads pipeline_ops/sample/ (3 images + a manifest with one missing image), or with ``IMAGES=N`` a
generated manifest of N tiny JPEGs spread over sites and days, to the raw bucket; the upload starts
the execution, as in production (S3 -> EventBridge rule -> start_run -> StartExecution, see ``run``); a priority,
a shard size or ``RERUN`` (a manifest already uploaded: the deliberate re-run) start one by hand.
Follows it state by state and prints the final status, the plan (shards, shards in flight,
estimate), how many shards ran at once and the curated objects. A refused manifest prints the
plan's reason. Keeps the loopback weather API answering for the whole run on the port the deployed
function was configured with (the local profile's; see ``Keeper``). Exit code 0 only if the
execution SUCCEEDED."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local.paths import STATE_DIR
from local.status import clients
from pipeline_ops import weather_server
from tools import cli

SAMPLE = Path(__file__).resolve().parent / "sample"


def find(items: list[str], fragment: str) -> str:
    matches = [i for i in items if fragment in i]
    if not matches:
        raise SystemExit(f"error: nothing named *{fragment}* on the emulator; run `make deploy-local` first")
    return matches[0]


def upload_sample(s3: Any, bucket: str, manifest_name: str, images: int | None = None) -> str:
    """The sample (``images`` None) or a generated manifest of that many tiny JPEGs; its URI."""
    if images is None:
        manifest = json.loads((SAMPLE / "manifest.json").read_text())
        files = {
            f"images/{image.name.replace('_', '/', 1)}": image.read_bytes()
            for image in sorted((SAMPLE / "images").glob("*.JPG"))
        }
    else:
        manifest, files = generated(images, manifest_name)
    # Fewer threads than botocore's 10 pooled connections: more only open and drop connections
    # ("Connection pool is full, discarding connection" in every run's log).
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1], ContentType="image/jpeg"),
                files.items(),
            )
        )
    key = f"manifests/{manifest_name}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode(), ContentType="application/json")
    return f"s3://{bucket}/{key}"


def generated(count: int, name: str) -> tuple[dict, dict[str, bytes]]:
    """A manifest of ``count`` images over up to 20 sites (one per 100 images) and two days: few
    weather lookups, as a real trap season has (many images per site and day)."""
    sites = max(1, min(20, count // 100))
    from PIL import Image

    files, records = {}, []
    for index in range(count):
        site = f"site-{index % sites}"
        shade = 40 + (index * 37) % 180
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (shade, shade // 2, 255 - shade)).save(buffer, format="JPEG", quality=50)
        key = f"images/{site}/{name}-{index:06d}.jpg"
        files[key] = buffer.getvalue()
        records.append(
            {
                "key": key,
                "site_id": site,
                "lat": 60 + (index % sites) * 0.05,
                "lon": 10 + (index % sites) * 0.05,
                "captured_at": f"2026-06-0{1 + index % 2}T{index % 24:02d}:{index % 60:02d}:00Z",
            }
        )
    return {"images": records}, files


def shard_jobs(batch: Any, execution_id: str, stage: str) -> list[dict]:
    """The Batch jobs of one per-shard step of an execution (every queue, finished or not)."""
    ids: list[str] = []
    for queue in batch.describe_job_queues()["jobQueues"]:
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
            listed = batch.list_jobs(jobQueue=queue["jobQueueArn"], jobStatus=status)["jobSummaryList"]
            ids += [j["jobId"] for j in listed if j["jobName"] == stage]
    jobs = [j for i in range(0, len(ids), 100) for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]]
    return [j for j in jobs if j.get("parameters", {}).get("execution_id") == execution_id]


def most_at_once(jobs: list[dict]) -> int:
    """The largest number of these jobs running at the same moment (from their start/stop times)."""
    edges = sorted(
        [(j["startedAt"], 1) for j in jobs if j.get("startedAt")]
        + [(j["stoppedAt"], -1) for j in jobs if j.get("startedAt") and j.get("stoppedAt")],
        key=lambda edge: (edge[0], -edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def state_output(sfn: Any, execution_arn: str, state: str) -> dict:
    """What a state of the execution handed on (its last exit), or {} if it never ran."""
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000, reverseOrder=True)["events"]
    for event in events:
        exited = event.get("stateExitedEventDetails")
        if exited and exited["name"] == state:
            return json.loads(exited.get("output") or "{}")
    return {}


def loopback_port(url: str) -> int | None:
    """The port of ``url`` when it is a loopback address with one."""
    parts = urlsplit(url)
    return parts.port if parts.hostname in {"127.0.0.1", "localhost"} and parts.port else None


def loopback_weather_port(lambda_client: Any) -> int | None:
    """The port of the deployed weather function's provider URL, when that is a loopback address."""
    function = find([f["FunctionName"] for f in lambda_client.list_functions()["Functions"]], "weather-enrichment")
    env = lambda_client.get_function_configuration(FunctionName=function).get("Environment", {}).get("Variables", {})
    return loopback_port(env.get("WEATHER_BASE_URL", ""))


WEATHER_LOG = STATE_DIR / "weather-server.log"


class Keeper:
    """Keeps a weather server answering on the run's loopback port for the whole run.

    The run starts one unless one already listens there (another run's, e.g. a second ``make
    run-local`` against the same stack, which may stop before this run ends). Every second it looks
    at the port and starts a server of its own when nothing listens any more, or when its own
    exited, saying so (stderr in ``WEATHER_LOG``). It stops only its own.
    """

    def __init__(self, port: int | None) -> None:
        self.port, self.server, self.done = port, None, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True) if port else None
        if self.thread:
            if not weather_server.listening(self.port):
                self.server = weather_server.spawn(self.port, log=WEATHER_LOG)
            self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(1.0):
            if self.server is not None and self.server.poll() is not None:
                print(f"run-local: the loopback weather server exited ({self.server.returncode}); starting it again")
                self.server = None
            elif self.server is None and not weather_server.listening(self.port):
                print(f"run-local: nothing answers on weather port {self.port} any more; starting a server of its own")
            else:
                continue
            try:
                self.server = weather_server.spawn(self.port, log=WEATHER_LOG)
            except RuntimeError:
                self.server = None  # somebody else took the port meanwhile; look again in a second

    def stop(self) -> None:
        self.done.set()
        if self.thread:
            self.thread.join(timeout=5)
        if self.server:
            weather_server.stop(self.server)


def follow(sfn: Any, execution_arn: str, timeout: float, out: Any = None) -> dict:
    """Print each state as it is entered and left (to ``out``, default the current stdout)."""
    out = out or sys.stdout
    seen, deadline = 0, time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        for event in events[seen:]:
            entered = event.get("stateEnteredEventDetails")
            exited = event.get("stateExitedEventDetails")
            failed = event.get("taskFailedEventDetails") or event.get("executionFailedEventDetails")
            if entered:
                print(f"  -> {entered['name']}", file=out, flush=True)
            elif exited:
                print(f"  <- {exited['name']}", file=out, flush=True)
            elif failed:
                print(f"  !! {failed.get('error')}: {str(failed.get('cause', ''))[:200]}", file=out, flush=True)
        seen = len(events)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.5)


def visited_states(sfn: Any, execution_arn: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def sample() -> dict:
    """One run of the sample for ``make soak-local`` (``python -m local.soak --sample pipeline_ops.run:sample``):
    the execution's description."""
    return run(timeout=300)[1]


def manifest_rule(events: Any) -> str | None:
    """The manifest trigger's EventBridge rule (None when the profile has it off)."""
    rules = [r["Name"] for r in events.list_rules()["Rules"] if r["Name"].endswith("-on-manifest")]
    return rules[0] if rules else None


@contextlib.contextmanager
def trigger_paused(events: Any) -> Iterator[None]:
    """Uploads inside start no execution: the manifest rule is disabled meanwhile (emulator only:
    a run whose input the trigger cannot give, priority or shard size, is started by hand, and the
    upload must not start a second one beside it). The rule is enabled again whatever happens."""
    rule = manifest_rule(events)
    if rule:
        events.disable_rule(Name=rule)
    try:
        yield
    finally:
        if rule:
            events.enable_rule(Name=rule)


def triggered_execution(sfn: Any, machine: str, before: set[str], bucket: str, key: str, wait: float) -> str | None:
    """The execution the trigger started for ``s3://bucket/key``: a new execution whose input is
    the S3 event of that object (``{"event": ...}``, the rule's input template)."""
    deadline = time.monotonic() + wait
    while True:
        for listed in sfn.list_executions(stateMachineArn=machine)["executions"]:
            if listed["executionArn"] in before:
                continue
            given = json.loads(sfn.describe_execution(executionArn=listed["executionArn"]).get("input") or "{}")
            detail = (given.get("event") or {}).get("detail") or {}
            if (detail.get("bucket", {}).get("name"), detail.get("object", {}).get("key")) == (bucket, key):
                return listed["executionArn"]
            before.add(listed["executionArn"])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.3)


def run(
    timeout: float = 300,
    wait_for_trigger: float = 60.0,
    aws: dict[str, Any] | None = None,
    *,
    images: int | None = None,
    options: dict[str, Any] | None = None,
    rerun: str | None = None,
    name: str | None = None,
) -> tuple[str, dict]:
    """Run once and follow it; ``aws`` are boto3 clients by service name (default: the emulator's).

    As in production, uploading the manifest starts the run: S3 -> the EventBridge rule -> the
    start_run function -> StartExecution named after the manifest's content (moto fill
    ``s3_eventbridge_starts_state_machines``); the run is the execution whose input is that
    object's event. The same bytes uploaded again start nothing: ``rerun`` starts them by hand.
    ``images``: a generated manifest of that many images instead of the sample. ``options``
    (priority, images_per_shard) are input the trigger cannot give: such a run is started by hand,
    its upload with the trigger paused.
    ``rerun``: a manifest URI already in the raw bucket, started by hand (the deliberate re-run:
    it claims nothing, lambda_src/plan_fan_out ``claim``). ``name``: the manifest's name
    (``manifests/<name>.json``; default: what it is and a random suffix)."""
    aws = aws or clients()
    s3, sfn = aws["s3"], aws["stepfunctions"]
    raw = find([b["Name"] for b in s3.list_buckets()["Buckets"]], "-raw-")
    machine = find([m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]], "-pipeline")
    keeper = Keeper(loopback_weather_port(aws["lambda"]))
    try:
        before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
        by_hand = bool(options) or rerun is not None
        manifest = rerun
        if manifest is None:
            name = name or f"{'sample' if images is None else f'generated-{images}'}-{uuid.uuid4().hex[:8]}"
            started = time.monotonic()
            with trigger_paused(aws["events"]) if by_hand else contextlib.nullcontext():
                manifest = upload_sample(s3, raw, name, images)
            what = "the sample" if images is None else f"{images} generated images"
            print(f"run-local: uploaded {what} to {manifest} in {time.monotonic() - started:.1f}s")
        if by_hand:
            execution_arn = sfn.start_execution(
                stateMachineArn=machine, input=json.dumps({"manifest": manifest, **(options or {})})
            )["executionArn"]
            print("run-local: started by hand" + (" (a deliberate re-run: claims nothing)" if rerun else ""))
        else:
            key = manifest.removeprefix(f"s3://{raw}/")
            execution_arn = triggered_execution(sfn, machine, before, raw, key, wait_for_trigger)
            if execution_arn is None:
                raise SystemExit(
                    f"error: no execution started for {manifest} within {wait_for_trigger:.0f}s: the manifest "
                    "trigger did not fire (workflow.start_on_new_manifest off, the rule disabled, or start_run "
                    "failed: see the emulator's log); "
                    f"start it by hand: make run-local RERUN={manifest}"
                )
            print("run-local: the upload started the execution (EventBridge rule -> start_run)")
        print(f"run-local: following {execution_arn.rsplit(':', 1)[-1]}")
        described = follow(sfn, execution_arn, timeout)
    finally:
        keeper.stop()
    return execution_arn, described


def curated_objects(s3: Any, output: dict) -> list[str]:
    """The Parquet keys an execution wrote: its answer names them (prefix, the start of each object name), a list of
    them would grow with the data (conf/pipeline.py, the answer of write_parquet)."""
    parquet = output.get("parquet") or {}
    if not parquet.get("objects"):
        return []
    curated = find([b["Name"] for b in s3.list_buckets()["Buckets"]], "-curated-")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=curated, Prefix=f"{parquet['prefix']}/")
    return [
        o["Key"]
        for page in pages
        for o in page.get("Contents", [])
        if o["Key"].rsplit("/", 1)[-1].startswith(parquet["part_prefix"])
    ]


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def report(aws: dict[str, Any], execution_arn: str, described: dict) -> None:
    """The plan and the fan-out as they happened: shards, shards at once, estimate, wall time."""
    plan = state_output(aws["stepfunctions"], execution_arn, "PlanFanOut").get("plan")
    if not plan:
        return
    if not plan.get("allowed"):
        print(f"run-local: manifest refused: {plan.get('reason')}")
        return
    summary = state_output(aws["stepfunctions"], execution_arn, "ReadShards").get("shards", {}).get("summary", {})
    jobs = shard_jobs(aws["batch"], execution_arn.rsplit(":", 1)[-1], "stage1")
    elapsed = described.get("stopDate", datetime.now(described["startDate"].tzinfo)) - described["startDate"]
    print(
        f"run-local: {plan['images']} images, {summary.get('valid', '?')} valid -> {summary.get('count', '?')} shards "
        f"of up to {plan['images_per_shard']}; at most {most_at_once(jobs)} shards ran at once "
        f"(limit {plan['concurrency']}); cloud estimate {plan['estimated_seconds'] / 60:.0f} min and "
        f"{plan.get('estimated_usd', 0):.2f} USD on spot, "
        f"here {elapsed.total_seconds():.0f}s"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, help="seconds to follow the execution (default: 300 + 0.1 per image)")
    parser.add_argument(
        "--images", type=positive, help="a generated manifest of this many images (default: the sample)"
    )
    parser.add_argument("--priority", choices=("high", "normal", "low"), help="the execution's priority (queue)")
    parser.add_argument("--images-per-shard", type=positive, help="smaller shards than the profile's for this run")
    parser.add_argument(
        "--rerun",
        metavar="S3_URI",
        help="start the workflow by hand on this manifest, already uploaded: the deliberate re-run (claims nothing)",
    )
    args = parser.parse_args(argv)
    if args.rerun and (args.images or not args.rerun.startswith("s3://")):
        raise SystemExit("error: --rerun takes the s3:// URI of a manifest already uploaded, without --images")
    options = {
        k: v for k, v in (("priority", args.priority), ("images_per_shard", args.images_per_shard)) if v is not None
    }
    aws = clients()
    timeout = args.timeout or 300 + 0.1 * (args.images or 0)
    execution_arn, described = run(timeout, aws=aws, images=args.images, options=options, rerun=args.rerun)
    print(
        f"run-local: execution {described['status']}"
        + (f" ({described.get('error')}: {described.get('cause')})" if described["status"] != "SUCCEEDED" else "")
    )
    report(aws, execution_arn, described)
    if described["status"] == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        for key in curated_objects(aws["s3"], output):
            print(f"  curated: {key}")
    return 0 if described["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
