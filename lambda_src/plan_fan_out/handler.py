"""PlanFanOut: refuse a manifest that cannot finish inside the execution, before any Batch job,
and price it.

Counts the manifest's records (streamed: a season's manifest is tens of MB) and estimates the GPU
fan-out's wall time from ``FAN_OUT`` (from conf/pipeline.py and the profile: shard size, shards in
flight, each per-shard step's images per second, the rate of the steps before the fan-out, job
overhead, fleet start, the execution's time-out and what the steps after the fan-out may take).
Stage0 sees every image once; then shards run in waves of ``concurrency``, one shard taking, per
per-shard step, the job overhead plus its images at that step's rate. A
manifest that does not fit in what is left of the execution is refused with one line naming the
largest manifest that would fit; the workflow then ends as ManifestRefused before stage0.

Event: ``{"execution_id", "manifest": "s3://...", "input": <the execution's input>,
"started_at": <ISO 8601>}``; the input may ask for smaller shards (``images_per_shard``).
Answer: ``{"allowed", "reason", "duplicate", "images", "images_per_shard", "shards", "concurrency",
"estimated_seconds", "remaining_seconds", "margin_seconds", "largest_manifest", "estimated_usd",
"estimated_usd_on_demand", "prices"}``, every key on every path (a refusal carries zeros): the
cost is what the Batch jobs of this manifest will be billed (job-hour prices from the dated price
table, set at synth), which GuardBudget adds to the month's actual spend before it lets the
execution go on.

Environment: FAN_OUT (JSON); PROCESSED_BUCKET and OUTPUT_PREFIX: where a triggered run claims the
manifest's content (``claim``: one run per content; a run started by hand claims nothing).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from datetime import datetime
from typing import Any

from pipeline_log import execution_id_of, get_logger

# Strings (escapes included) and the JSON punctuation: everything the count needs, nothing else.
REASON_BOUND = 2048  # conf/pipeline.py TEXT_BOUND: a reason quotes the manifest's URI (up to 1,024 bytes of key)
TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def count_images(body: bytes) -> int | None:
    """How many values the top-level ``images`` array holds, or None if there is no such array."""
    depth, key, last, inside, count, expect = 0, None, None, None, 0, False
    for match in TOKEN.finditer(body):
        token = match.group()
        kind = token[:1]
        if inside is not None and depth == inside and expect and kind in (b"{", b"[", b'"'):
            count, expect = count + 1, False
        if kind == b'"':
            last = token
        elif kind == b":":
            key = last if depth == 1 else key
        elif kind in (b"{", b"["):
            depth += 1
            if kind == b"[" and depth == 2 and key == b'"images"' and inside is None:
                inside, expect = 2, True
        elif kind in (b"}", b"]"):
            if inside is not None and depth == inside:
                return count
            depth -= 1
        elif kind == b"," and inside is not None and depth == inside:
            expect = True
    return None


def shard_size(options: Any, largest: int) -> tuple[int, str | None]:
    """The run's ``images_per_shard``: its input may ask for smaller shards than the profile's."""
    asked = options.get("images_per_shard", largest) if isinstance(options, dict) else largest
    if isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= largest:
        return largest, f"images_per_shard must be a whole number from 1 to {largest}, got {asked!r}"
    return asked, None


def elapsed_since(started_at: str | None) -> float:
    """Seconds since the execution started (ISO 8601), 0 if unknown."""
    if not started_at:
        return 0.0
    try:
        started = datetime.fromisoformat(str(started_at).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, time.time() - started.timestamp())


def cost_usd(images: int, fan_out: dict[str, Any], images_per_shard: int, price: str = "usd_per_hour") -> float:
    """What ``images`` cost in Batch: each job is billed its instance for its images at the step's
    rate plus the job overhead, and each GPU instance its boot (``fleet_start_seconds``) once."""
    if not images:
        return 0.0
    shards = math.ceil(images / images_per_shard)
    overhead = float(fan_out["job_overhead_seconds"])
    total, boot = 0.0, 0.0
    for step in fan_out["steps"]:
        jobs = shards if step["per_shard"] else 1
        total += (jobs * overhead + images / float(step["images_per_second"])) * float(step[price]) / 3600
        if step["per_shard"]:
            boot = max(boot, float(step[price]))
    instances = min(shards, int(fan_out["concurrency"]))
    return total + instances * float(fan_out["fleet_start_seconds"]) * boot / 3600


def per_thousand(fan_out: dict[str, Any], price: str = "usd_per_hour") -> float:
    """USD per 1,000 images in full shards, before the fixed costs of a run (stage0's one job, boots)."""
    size = int(fan_out["images_per_shard"])
    overhead = float(fan_out["job_overhead_seconds"])
    return sum(
        (1000 / float(s["images_per_second"]) + (1000 / size * overhead if s["per_shard"] else 0))
        * float(s[price])
        / 3600
        for s in fan_out["steps"]
    )


def plan(images: int, fan_out: dict[str, Any], images_per_shard: int, elapsed: float) -> dict[str, Any]:
    """Whether ``images`` can go through the fan-out in what is left of the execution, why not,
    and what they will cost (expected and on-demand USD, for GuardBudget).

    The estimate includes the retry the workflow configures for a failed job: the longest per-shard
    job of the last wave failing at its end and run once more after ``retry_interval_seconds``
    (nothing else would catch it: an execution past its time-out ends TIMED_OUT). What is left keeps
    ``margin_seconds`` of the execution unused besides."""
    concurrency = int(fan_out["concurrency"])
    overhead, fleet_start = float(fan_out["job_overhead_seconds"]), float(fan_out["fleet_start_seconds"])
    margin = float(fan_out.get("margin_seconds", 0))
    remaining = float(fan_out["execution_timeout_seconds"]) - elapsed - float(fan_out["reserve_seconds"]) - margin
    jobs = [overhead + images_per_shard / float(s["images_per_second"]) for s in fan_out["steps"] if s["per_shard"]]
    per_shard = sum(jobs)
    retry = float(fan_out.get("retry_interval_seconds", 0)) + max(jobs, default=0.0)

    def estimate(count: int) -> float:
        """Steps before the fan-out (every image once), then waves of shards after the fleet starts,
        then one retry of the last wave's longest job."""
        if not count:
            return 0.0
        before = sum(overhead + count / float(s["images_per_second"]) for s in fan_out["steps"] if not s["per_shard"])
        return before + fleet_start + math.ceil(math.ceil(count / images_per_shard) / concurrency) * per_shard + retry

    wall = estimate(images)
    waves = max(0, math.floor((remaining - fleet_start - retry) / per_shard))
    largest = next(
        (
            w * concurrency * images_per_shard
            for w in range(waves, 0, -1)
            if estimate(w * concurrency * images_per_shard) <= remaining
        ),
        0,
    )
    count = math.ceil(images / images_per_shard) if images else 0
    out = {
        **answer(),
        "allowed": wall <= remaining,
        "images": images,
        "images_per_shard": images_per_shard,
        "shards": count,
        "concurrency": concurrency,
        "estimated_seconds": round(wall),
        "remaining_seconds": round(remaining),
        "margin_seconds": round(margin),
        "largest_manifest": largest,
        "estimated_usd": round(cost_usd(images, fan_out, images_per_shard), 2),
        "estimated_usd_on_demand": round(cost_usd(images, fan_out, images_per_shard, "on_demand_usd_per_hour"), 2),
        "prices": fan_out.get("price_date", ""),
    }
    if not out["allowed"]:
        hours = int(fan_out["execution_timeout_seconds"]) / 3600
        fix = (
            f"split it into manifests of at most {largest} images"
            if largest
            else "lower workflow.images_per_shard (one shard alone does not fit)"
        )
        out["reason"] = (
            f"{images} images make {count} shards of up to {images_per_shard}, {concurrency} at a time: "
            f"about {wall / 3600:.1f} h of work with one job retry, but {max(remaining, 0) / 60:.0f} min of the "
            f"{hours:g} h execution are left for it after a margin of {margin / 60:.0f} min; {fix} "
            "(or raise batch.max_vcpus and workflow.max_concurrency)"
        )
    return out


def answer(**values: Any) -> dict[str, Any]:
    """The answer's every key (conf/pipeline.py declares them; the workflow selects them all): a
    refusal before the count carries zeros, never fewer keys."""
    base = dict.fromkeys(
        (
            "images",
            "images_per_shard",
            "shards",
            "concurrency",
            "estimated_seconds",
            "remaining_seconds",
            "margin_seconds",
            "largest_manifest",
        ),
        0,
    )
    return {
        "allowed": False,
        "reason": "",
        "duplicate": False,
        **base,
        "estimated_usd": 0.0,
        "estimated_usd_on_demand": 0.0,
        "prices": "",
        **values,
    }


def refused(reason: str) -> dict[str, Any]:
    """A refusal before any estimate: every key of the answer, the reason cut to its bound."""
    return answer(reason=reason[:REASON_BOUND])


def triggered_object(event: dict) -> dict | None:
    """``detail.object`` of the S3 event a triggered run was started with (its input is
    ``{"event": ...}``: lambda_src/start_run), or None for a run started by hand."""
    given = event.get("input") if isinstance(event.get("input"), dict) else {}
    found = given.get("event") if isinstance(given.get("event"), dict) else {}
    detail = found.get("detail") if isinstance(found.get("detail"), dict) else {}
    obj = detail.get("object")
    return obj if isinstance(obj, dict) else None


def claim(s3: Any, event: dict, uri: str, digest: str) -> str | None:
    """One run per manifest key and content: a triggered run claims ``<OUTPUT_PREFIX>/<sha256 of the URI>/
    sha256-<digest of the content>.json`` with a conditional put (If-None-Match: *,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). start_run names
    the execution after the same content, so Step Functions already starts no second run for 90 days
    (a re-delivery, the same bytes uploaded again); the claim keeps it so after that too, and for a
    run started with an S3 event by other means. Not the ETag: under SSE-KMS or a multipart upload
    it is no digest of the content (https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html).
    A retried invocation of this very execution finds its own claim (it names the execution) and
    goes on. A run started by hand claims nothing: the deliberate re-run. Returns the refusal, or None."""
    if triggered_object(event) is None or not os.environ.get("OUTPUT_PREFIX"):
        return None
    name = hashlib.sha256(uri.encode()).hexdigest()[:32]
    key = f"{os.environ['OUTPUT_PREFIX']}/{name}/sha256-{digest}.json"
    bucket = os.environ["PROCESSED_BUCKET"]
    body = json.dumps({"manifest": uri, "execution_id": event.get("execution_id")}).encode()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
        if claimed_by(s3, bucket, key) == event.get("execution_id"):
            return None
        return (
            f"manifest {uri} with this content (sha256 {digest[:16]}...) already started a run (claim {key} in the "
            "processed bucket): one run per manifest key and content; to run it again on purpose, start the "
            "workflow by hand with this manifest"
        )[:REASON_BOUND]
    return None


def claimed_by(s3: Any, bucket: str, key: str) -> str | None:
    """The execution a claim names (None when it is unreadable or, after a 409 race, not there yet)."""
    try:
        found = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (s3.exceptions.NoSuchKey, ValueError):
        return None
    return found.get("execution_id") if isinstance(found, dict) else None


def handler(event: dict, context: Any, *, s3: Any = None) -> dict:
    log = get_logger("plan_fan_out", execution_id_of(event))
    fan_out = json.loads(os.environ["FAN_OUT"])
    size, problem = shard_size(event.get("input"), int(fan_out["images_per_shard"]))
    if problem:
        return refused(problem)
    uri = str(event.get("manifest", ""))
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        return refused(f"manifest {uri!r} is not an s3://bucket/key URI")
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    # A triggered run reads the version its event names: an overwrite meanwhile is its own run.
    version = (triggered_object(event) or {}).get("version-id")
    try:
        body = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return refused(f"manifest {uri} does not exist")
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchVersion":
            raise
        return refused(f"manifest {uri} (version {version}) does not exist")
    images = count_images(body)
    if images is None:
        return refused(f"manifest {uri} is not a JSON object with an 'images' list")
    verdict = plan(images, fan_out, size, elapsed_since(event.get("started_at")))
    taken = claim(s3, event, uri, hashlib.sha256(body).hexdigest()) if verdict["allowed"] else None
    if taken:
        # Already run: the workflow ends it quietly (state Duplicate, SUCCEEDED, no notice).
        return answer(reason=taken[:REASON_BOUND], duplicate=True)
    log.info("fan-out planned", **{k: v for k, v in verdict.items() if k != "reason"}, reason=verdict["reason"])
    return verdict
