"""stage0 - plan, ingest and validate: refuse a manifest too large for one execution, check every
image of the others, split the valid ones into shards.

Manifest (JSON, in the raw bucket under manifests/):
``{"images": [{"key": "images/site-7/IMG_0001.JPG", "site_id": "site-7", "lat": 62.1, "lon": 10.3,
"captured_at": "2026-06-01T04:12:00Z"}, ...]}``

First, before reading any image, it estimates the GPU fan-out's wall time from the manifest's
record count and ``FAN_OUT`` (the job definition's: shard size, shards in flight, per-step
throughput, overheads, the execution's time-out and what the steps after the fan-out need). A
manifest that cannot finish inside what is left of the execution is refused: ``plan.json`` says
``accepted: false`` with a one-line reason naming the largest manifest that would fit, and the
workflow stops before any GPU job. Otherwise it writes ``shard-<n>.json`` (``images_per_shard``
records or fewer each, round-robin), ``shards.json`` (the list the workflow's Distributed Map
reads: ``[{"shard": n, "images": k}, ...]``), ``rejected.json`` (records that failed validation,
with why) and ``plan.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from stage_runtime import StageContext, StageInputError, read_json, run, split_s3_uri, write_json

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG"
REQUIRED = ("key", "site_id", "lat", "lon", "captured_at")
# Images checked at once: S3 answers in tens of ms, so one at a time would take hours for a season.
CHECK_THREADS = 32


def validate_record(record: Any) -> str | None:
    """Why the record is unusable, or None."""
    if not isinstance(record, dict):
        return "record is not an object"
    missing = [f for f in REQUIRED if f not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        lat, lon = float(record["lat"]), float(record["lon"])
    except (TypeError, ValueError):
        return "lat/lon are not numbers"
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return "lat/lon out of range"
    return None


def shards(records: list[dict], images_per_shard: int) -> list[list[dict]]:
    """As few shards as hold ``images_per_shard`` records each, round-robin over the records sorted
    by key (deterministic, and the shards differ in size by one at most)."""
    count = math.ceil(len(records) / images_per_shard)
    ordered = sorted(records, key=lambda r: r["key"])
    return [ordered[i::count] for i in range(count)]


def plan(images: int, fan_out: dict[str, Any], images_per_shard: int, elapsed: float) -> dict[str, Any]:
    """Whether ``images`` can go through the fan-out in what is left of the execution, and why not.

    Shards run in waves of ``concurrency``; one shard takes, per per-shard step, the job overhead
    plus its images at that step's rate. ``reserve_seconds`` is what the steps after the fan-out
    may take (their time-outs), ``fleet_start_seconds`` the first instances' start."""
    concurrency = int(fan_out["concurrency"])
    rates = [float(r) for r in fan_out["images_per_second"]]
    overhead, fleet_start = float(fan_out["job_overhead_seconds"]), float(fan_out["fleet_start_seconds"])
    remaining = float(fan_out["execution_timeout_seconds"]) - elapsed - float(fan_out["reserve_seconds"])
    per_shard = sum(overhead + images_per_shard / rate for rate in rates)
    count = math.ceil(images / images_per_shard) if images else 0
    estimate = fleet_start + math.ceil(count / concurrency) * per_shard if count else 0.0
    waves = max(0, math.floor((remaining - fleet_start) / per_shard))
    largest = waves * concurrency * images_per_shard
    out = {
        "images": images,
        "images_per_shard": images_per_shard,
        "shards": count,
        "concurrency": concurrency,
        "estimated_seconds": round(estimate),
        "remaining_seconds": round(remaining),
        "largest_manifest": largest,
        "accepted": estimate <= remaining,
        "reason": "",
    }
    if not out["accepted"]:
        hours = int(fan_out["execution_timeout_seconds"]) / 3600
        fix = (
            f"split it into manifests of at most {largest} images"
            if largest
            else "lower workflow.images_per_shard (one shard alone does not fit)"
        )
        out["reason"] = (
            f"{images} images make {count} shards of up to {images_per_shard}, {concurrency} at a time: "
            f"about {estimate / 3600:.1f} h of GPU work, but {max(remaining, 0) / 60:.0f} min of the "
            f"{hours:g} h execution are left for it; {fix} (or raise batch.max_vcpus and workflow.max_concurrency)"
        )
    return out


def shard_size(execution_input: str | None, largest: int) -> tuple[int, str | None]:
    """The run's ``images_per_shard`` (its input may ask for smaller shards than the profile's)."""
    try:
        options = json.loads(execution_input) if execution_input else {}
    except json.JSONDecodeError:
        options = {}
    asked = options.get("images_per_shard", largest) if isinstance(options, dict) else largest
    if isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= largest:
        return largest, f"images_per_shard must be a whole number from 1 to {largest}, got {asked!r}"
    return asked, None


def elapsed_since(started_at: str | None) -> float:
    """Seconds since the execution started (``EXECUTION_STARTED_AT``, ISO 8601), 0 if unknown."""
    if not started_at:
        return 0.0
    try:
        started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, time.time() - started.timestamp())


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    bucket, key = split_s3_uri(ctx.manifest_uri)
    manifest = read_json(s3, bucket, key)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("images"), list):
        raise StageInputError("manifest must be an object with an 'images' list")
    fan_out = json.loads(os.environ["FAN_OUT"])
    size, problem = shard_size(os.environ.get("EXECUTION_INPUT"), int(fan_out["images_per_shard"]))
    if problem:
        verdict = {"accepted": False, "reason": problem, "images": len(manifest["images"])}
    else:
        elapsed = elapsed_since(os.environ.get("EXECUTION_STARTED_AT"))
        verdict = plan(len(manifest["images"]), fan_out, size, elapsed)
    verdict["shards_key"] = ctx.output_key("shards.json")
    if not verdict["accepted"]:
        verdict["shards"] = 0
        write_json(s3, ctx.processed_bucket, ctx.output_key("plan.json"), verdict)
        log.warning("manifest refused", extra={"fields": {"reason": verdict["reason"]}})
        return {"accepted": False, "images": verdict["images"]}
    valid, rejected = [], []
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        reasons = list(pool.map(lambda record: why_unusable(s3, ctx.raw_bucket, record), manifest["images"]))
    for record, reason in zip(manifest["images"], reasons, strict=True):
        if reason:
            rejected.append({"record": record, "reason": reason})
        else:
            valid.append(record)
    parts = shards(valid, size)
    for index, part in enumerate(parts):
        write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{index}.json"), {"records": part})
    write_json(s3, ctx.processed_bucket, ctx.output_key("rejected.json"), {"rejected": rejected})
    listing = [{"shard": index, "images": len(part)} for index, part in enumerate(parts)]
    write_json(s3, ctx.processed_bucket, verdict["shards_key"], listing)
    verdict.update(shards=len(parts), valid=len(valid), rejected=len(rejected))
    write_json(s3, ctx.processed_bucket, ctx.output_key("plan.json"), verdict)
    log.info("validated manifest", extra={"fields": {"valid": len(valid), "rejected": len(rejected)}})
    return {"valid": len(valid), "rejected": len(rejected), "shards": len(parts)}


def why_unusable(s3: Any, bucket: str, record: Any) -> str | None:
    """Why a manifest record cannot be processed (bad fields, no image, not an image), or None."""
    reason = validate_record(record)
    if reason:
        return reason
    try:
        head = s3.get_object(Bucket=bucket, Key=record["key"], Range="bytes=0-3")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return "image not found in the raw bucket"
    if not (head.startswith(JPEG_MAGIC) or head.startswith(PNG_MAGIC)):
        return "not a JPEG or PNG image"
    return None


if __name__ == "__main__":
    sys.exit(run(process))
