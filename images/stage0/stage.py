"""stage0 - ingest and validate: check every image of the manifest, split the valid ones into shards.

Manifest (JSON, in the raw bucket under manifests/):
``{"images": [{"key": "images/site-7/IMG_0001.JPG", "site_id": "site-7", "lat": 62.1, "lon": 10.3,
"captured_at": "2026-06-01T04:12:00Z"}, ...]}``

Writes exactly ``$SHARD_COUNT`` files ``shard-<n>.json`` (round-robin, some may be empty: the
workflow runs one stage1/stage2 job per shard) and ``rejected.json`` (records that failed
validation, with why).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from stage_runtime import StageContext, StageInputError, read_json, run, split_s3_uri, write_json

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG"
REQUIRED = ("key", "site_id", "lat", "lon", "captured_at")
DEFAULT_SHARD_COUNT = 4


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


def shards(records: list[dict], count: int) -> list[list[dict]]:
    """``count`` shards, round-robin over the records sorted by key (deterministic)."""
    ordered = sorted(records, key=lambda r: r["key"])
    return [ordered[i::count] for i in range(count)]


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    bucket, key = split_s3_uri(ctx.manifest_uri)
    manifest = read_json(s3, bucket, key)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("images"), list):
        raise StageInputError("manifest must be an object with an 'images' list")
    count = int(os.environ.get("SHARD_COUNT", DEFAULT_SHARD_COUNT))
    valid, rejected = [], []
    for record in manifest["images"]:
        reason = validate_record(record)
        if reason is None:
            head = (
                s3.get_object(Bucket=ctx.raw_bucket, Key=record["key"], Range="bytes=0-3")["Body"].read()
                if _exists(s3, ctx.raw_bucket, record["key"])
                else None
            )
            if head is None:
                reason = "image not found in the raw bucket"
            elif not (head.startswith(JPEG_MAGIC) or head.startswith(PNG_MAGIC)):
                reason = "not a JPEG or PNG image"
        if reason:
            rejected.append({"record": record, "reason": reason})
        else:
            valid.append(record)
    parts = shards(valid, count)
    for index, part in enumerate(parts):
        write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{index}.json"), {"records": part})
    write_json(s3, ctx.processed_bucket, ctx.output_key("rejected.json"), {"rejected": rejected})
    log.info("validated manifest", extra={"fields": {"valid": len(valid), "rejected": len(rejected)}})
    return {"valid": len(valid), "rejected": len(rejected), "shards": len(parts)}


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    sys.exit(run(process))
