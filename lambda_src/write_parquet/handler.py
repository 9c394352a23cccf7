"""WriteParquet: the curated dataset, one row per detection (or per empty image), in Parquet.

Why a Lambda and not a Batch CPU job: an execution's enriched metadata is megabytes, written in
seconds; a Batch job would spend minutes starting an instance from zero for that. pyarrow does
not fit a plain zip, so the function uses the AWS-managed "AWS SDK for pandas" layer (ARN per
region in the profile); the local emulator runs this same code with the project's own pyarrow.

Input: ``s3://$PROCESSED_BUCKET/$INPUT_PREFIX/<execution_id>/shard-<n>.json`` for each of the
execution's ``shard_count`` shards. Output:
``s3://$CURATED_BUCKET/$OUTPUT_PREFIX/date=<YYYY-MM-DD>/site=<site_id>/part-<execution>.parquet``,
zstd-compressed, with the explicit SCHEMA below. Rows are sorted and the file name derives from the
execution id, so a retry rewrites identical objects (idempotent).

Environment: PROCESSED_BUCKET, CURATED_BUCKET, INPUT_PREFIX, OUTPUT_PREFIX (from conf/pipeline.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pipeline_log import emf, execution_id_of, get_logger

SCHEMA = pa.schema(
    [
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("image_key", pa.string(), nullable=False),
        pa.field("site_id", pa.string(), nullable=False),
        pa.field("captured_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("latitude", pa.float64(), nullable=False),
        pa.field("longitude", pa.float64(), nullable=False),
        pa.field("detection_index", pa.int32()),
        pa.field("category", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("bbox", pa.list_(pa.float32())),
        pa.field("species", pa.string()),
        pa.field("species_score", pa.float32()),
        pa.field("temperature_c", pa.float32()),
        pa.field("precipitation_mm", pa.float32()),
        pa.field("wind_speed_kmh", pa.float32()),
        pa.field("cloud_cover_pct", pa.float32()),
        pa.field("weather_status", pa.string(), nullable=False),
    ]
)


def captured(record: dict) -> datetime:
    moment = datetime.fromisoformat(str(record["captured_at"]).replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def rows_of(record: dict, execution_id: str) -> list[dict]:
    weather = record.get("weather") or {}
    base = {
        "execution_id": execution_id,
        "image_key": record["key"],
        "site_id": str(record["site_id"]),
        "captured_at": captured(record),
        "latitude": float(record["lat"]),
        "longitude": float(record["lon"]),
        "temperature_c": weather.get("temperature_2m"),
        "precipitation_mm": weather.get("precipitation"),
        "wind_speed_kmh": weather.get("wind_speed_10m"),
        "cloud_cover_pct": weather.get("cloud_cover"),
        "weather_status": record.get("weather_status", "missing"),
    }
    detections = record.get("detections") or []
    if not detections:
        return [
            {
                **base,
                "detection_index": None,
                "category": None,
                "score": None,
                "bbox": None,
                "species": None,
                "species_score": None,
            }
        ]
    return [
        {
            **base,
            "detection_index": i,
            "category": d.get("category"),
            "score": d.get("score"),
            "bbox": d.get("bbox"),
            "species": d.get("species"),
            "species_score": d.get("species_score"),
        }
        for i, d in enumerate(detections)
    ]


def partitions(records: list[dict], execution_id: str) -> dict[tuple[str, str], list[dict]]:
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        for row in rows_of(record, execution_id):
            grouped[(row["captured_at"].strftime("%Y-%m-%d"), row["site_id"])].append(row)
    return grouped


def to_parquet(rows: list[dict]) -> bytes:
    ordered = sorted(rows, key=lambda r: (r["image_key"], -1 if r["detection_index"] is None else r["detection_index"]))
    table = pa.Table.from_pylist(ordered, schema=SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


def object_key(prefix: str, date: str, site: str, execution_id: str) -> str:
    digest = hashlib.sha256(execution_id.encode()).hexdigest()[:16]
    return f"{prefix}/date={date}/site={site}/part-{digest}.parquet"


def handler(event: dict, context: Any, *, s3: Any = None) -> dict:
    execution_id = execution_id_of(event)
    log = get_logger("write_parquet", execution_id)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    processed, curated = os.environ["PROCESSED_BUCKET"], os.environ["CURATED_BUCKET"]
    source, target = os.environ["INPUT_PREFIX"], os.environ["OUTPUT_PREFIX"]
    records: list[dict] = []
    for shard in range(int(event["shard_count"])):
        try:
            body = s3.get_object(Bucket=processed, Key=f"{source}/{execution_id}/shard-{shard}.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        records.extend(json.loads(body)["records"])
    keys = []
    for (date, site), rows in sorted(partitions(records, execution_id).items()):
        key = object_key(target, date, site, execution_id)
        s3.put_object(Bucket=curated, Key=key, Body=to_parquet(rows), ContentType="application/vnd.apache.parquet")
        keys.append(key)
    # Counts and a name, never the list of keys: one object per date and site grows with the data
    # (an answer over 256 KiB fails the execution with States.DataLimitExceeded, uncatchable).
    result = {
        "objects": len(keys),
        "rows": sum(len(rows_of(r, execution_id)) for r in records),
        "images": len(records),
        "prefix": target,
        "object_name": object_key(target, "d", "s", execution_id).rsplit("/", 1)[1],
    }
    log.info("parquet written", **result)
    if os.environ.get("METRIC_NAMESPACE"):  # images processed per execution, for the dashboard
        figures = {"ImagesProcessed": len(records), "DetectionRows": result["rows"]}
        dimensions = {"Environment": os.environ.get("PIPELINE_ENV", "unknown")}
        print(json.dumps(emf(os.environ["METRIC_NAMESPACE"], dimensions, figures, int(time.time() * 1000))), flush=True)
    return result
