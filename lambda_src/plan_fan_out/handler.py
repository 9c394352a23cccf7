"""PlanFanOut: refuse a manifest that cannot finish inside the execution, before any Batch job.

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
Answer: ``{"allowed", "reason", "images", "images_per_shard", "shards", "concurrency",
"estimated_seconds", "remaining_seconds", "largest_manifest"}``.

Environment: FAN_OUT (JSON).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import datetime
from typing import Any

from pipeline_log import execution_id_of, get_logger

# Strings (escapes included) and the JSON punctuation: everything the count needs, nothing else.
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


def plan(images: int, fan_out: dict[str, Any], images_per_shard: int, elapsed: float) -> dict[str, Any]:
    """Whether ``images`` can go through the fan-out in what is left of the execution, and why not."""
    concurrency = int(fan_out["concurrency"])
    overhead, fleet_start = float(fan_out["job_overhead_seconds"]), float(fan_out["fleet_start_seconds"])
    remaining = float(fan_out["execution_timeout_seconds"]) - elapsed - float(fan_out["reserve_seconds"])
    per_shard = sum(overhead + images_per_shard / float(rate) for rate in fan_out["images_per_second"])

    def estimate(count: int) -> float:
        """Steps before the fan-out (every image once), then waves of shards after the fleet starts."""
        if not count:
            return 0.0
        before = sum(overhead + count / float(rate) for rate in fan_out.get("before_per_second", []))
        return before + fleet_start + math.ceil(math.ceil(count / images_per_shard) / concurrency) * per_shard

    wall = estimate(images)
    waves = max(0, math.floor((remaining - fleet_start) / per_shard))
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
        "allowed": wall <= remaining,
        "reason": "",
        "images": images,
        "images_per_shard": images_per_shard,
        "shards": count,
        "concurrency": concurrency,
        "estimated_seconds": round(wall),
        "remaining_seconds": round(remaining),
        "largest_manifest": largest,
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
            f"about {wall / 3600:.1f} h of work, but {max(remaining, 0) / 60:.0f} min of the "
            f"{hours:g} h execution are left for it; {fix} (or raise batch.max_vcpus and workflow.max_concurrency)"
        )
    return out


def refused(reason: str) -> dict[str, Any]:
    return {"allowed": False, "reason": reason}


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
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return refused(f"manifest {uri} does not exist")
    images = count_images(body)
    if images is None:
        return refused(f"manifest {uri} is not a JSON object with an 'images' list")
    verdict = plan(images, fan_out, size, elapsed_since(event.get("started_at")))
    log.info("fan-out planned", **{k: v for k, v in verdict.items() if k != "reason"}, reason=verdict["reason"])
    return verdict
