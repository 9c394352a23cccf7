"""stage0 - ingest and validate: check every image of the manifest, split the valid ones into shards.

Manifest (JSON, in the raw bucket under manifests/):
``{"images": [{"key": "images/site-7/IMG_0001.JPG", "site_id": "site-7", "lat": 62.1, "lon": 10.3,
"captured_at": "2026-06-01T04:12:00Z"}, ...]}``

The workflow's PlanFanOut has already refused what cannot finish and set the shard size
(``IMAGES_PER_SHARD``, from its plan). Writes ``shard-<n>.json`` (that many records or fewer each,
round-robin), ``rejected.json`` (records that failed validation, with why), ``shards.json`` (the
list the workflow's Distributed Map reads: ``[{"shard": n, "images": k}, ...]``) and
``summary.json`` (``{"count", "key", "valid", "rejected"}``: how many shards and where the list is).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
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


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    bucket, key = split_s3_uri(ctx.manifest_uri)
    manifest = read_json(s3, bucket, key)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("images"), list):
        raise StageInputError("manifest must be an object with an 'images' list")
    size = os.environ.get("IMAGES_PER_SHARD", "")
    if not size.isdigit() or int(size) < 1:
        raise StageInputError(f"IMAGES_PER_SHARD {size!r} must be a positive whole number")
    valid, rejected = [], []
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        reasons = list(pool.map(lambda record: why_unusable(s3, ctx.raw_bucket, record), manifest["images"]))
    for record, reason in zip(manifest["images"], reasons, strict=True):
        if reason:
            rejected.append({"record": record, "reason": reason})
        else:
            valid.append(record)
    parts = shards(valid, int(size))
    for index, part in enumerate(parts):
        write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{index}.json"), {"records": part})
    write_json(s3, ctx.processed_bucket, ctx.output_key("rejected.json"), {"rejected": rejected})
    listing = [{"shard": index, "images": len(part)} for index, part in enumerate(parts)]
    write_json(s3, ctx.processed_bucket, ctx.output_key("shards.json"), listing)
    summary = {
        "count": len(parts),
        "key": ctx.output_key("shards.json"),
        "valid": len(valid),
        "rejected": len(rejected),
    }
    write_json(s3, ctx.processed_bucket, ctx.output_key("summary.json"), summary)
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
