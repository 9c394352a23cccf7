"""WriteParquet: the curated dataset, one row per detection (or per empty image), in Parquet.

Why a Lambda and not a Batch CPU job: the largest execution the fan-out accepts (~275,000 images)
is a few hundred MB of enriched JSON read shard by shard and ~20 MB of Parquet, written in about a
minute within a fraction of the function's memory (``make bench-post``); a Batch job would spend
minutes starting an instance from zero for that. pyarrow does not fit a plain zip, so the function
uses the AWS-managed "AWS SDK for pandas" layer (ARN per region in the profile); the local emulator
runs this same code with the project's own pyarrow.

Input: ``s3://$PROCESSED_BUCKET/$INPUT_PREFIX/<execution_id>/shard-<n>.json`` for each of the
execution's ``shard_count`` shards, read one at a time. Output, for Athena (the Glue table
``detections`` of modules/dataset.py, partition projection on ``month``):
``s3://$CURATED_BUCKET/$OUTPUT_PREFIX/month=<YYYY-MM>/part-<execution digest>-<n>.parquet``,
zstd, with the explicit SCHEMA below, the site a column. A month, not a day, per partition: a
season's execution has ~2,000 images a day, a few hundred kB of Parquet, and engines are slowest
on many small files; a month of it is files of MB to tens of MB, and the row groups' min/max of
``captured_at`` still let a query skip what it does not need. Memory is bounded: rows wait in
Arrow buffers of at most ``BUFFER_ROWS`` in all (the largest month is flushed as a sorted row group
when they are full), files grow on local disk (``/tmp``) and are uploaded when they reach
``ROWS_PER_FILE`` rows or at the end, at most ``MAX_OPEN_FILES`` open at once. Files per
execution: one per month touched plus one per ``ROWS_PER_FILE`` rows (more only past
``MAX_OPEN_FILES`` months). Everything derives from the execution id and the shards' order, so a
retry rewrites identical objects (idempotent).

Environment: PROCESSED_BUCKET, CURATED_BUCKET, INPUT_PREFIX, OUTPUT_PREFIX (from conf/pipeline.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pipeline_log import emf, execution_id_of, get_logger
from shards import read_shards

SCHEMA = pa.schema(
    [
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("image_key", pa.string()),
        pa.field("site_id", pa.string()),
        pa.field("captured_at", pa.timestamp("ms", tz="UTC")),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
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
        pa.field("record_status", pa.string(), nullable=False),
    ]
)
PARTITION = "month"  # Hive-style key of the object paths: month=YYYY-MM
BUFFER_ROWS = 200_000  # rows held in Arrow buffers over all months (~100 B each)
ROWS_PER_FILE = 2_000_000  # ~40 B a row after zstd: files of tens of MB at most
MAX_OPEN_FILES = 24
# Partitions the table projects (modules/dataset.py): 1970-01 up to a year ahead of the query.
# Rows without a usable capture time go to the first of them: a clock reset lands there anyway.
UNDATED_MONTH = "1970-01"
AHEAD_YEARS = 1
SORT_KEYS = [("captured_at", "ascending"), ("site_id", "ascending"), ("image_key", "ascending")]


def captured(record: dict) -> datetime:
    moment = datetime.fromisoformat(str(record["captured_at"]).replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _field(problems: list[str], name: str, read: Callable[[], Any]) -> Any:
    """``read()``, or None with ``name`` noted as a problem: a bad field never loses the record."""
    try:
        value = read()
    except (KeyError, ValueError, TypeError, OverflowError):
        problems.append(name)
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(name)
        return None
    return value


def rows_of(record: dict, execution_id: str) -> list[dict]:
    """A record's rows; a missing or unreadable field is null and named in ``record_status``."""
    problems: list[str] = []
    weather = record.get("weather") or {}
    base = {
        "execution_id": execution_id,
        "image_key": _field(problems, "key", lambda: str(record["key"])),
        "site_id": _field(problems, "site_id", lambda: str(record["site_id"])),
        "captured_at": _field(problems, "captured_at", lambda: captured(record)),
        "latitude": _field(problems, "lat", lambda: float(record["lat"])),
        "longitude": _field(problems, "lon", lambda: float(record["lon"])),
        "temperature_c": weather.get("temperature_2m"),
        "precipitation_mm": weather.get("precipitation"),
        "wind_speed_kmh": weather.get("wind_speed_10m"),
        "cloud_cover_pct": weather.get("cloud_cover"),
        "weather_status": str(record.get("weather_status", "missing")),
    }
    reasons = [f"{', '.join(problems)} missing or unreadable"] if problems else []
    moment = base["captured_at"]
    if moment is not None and month_of(moment) != moment.strftime("%Y-%m"):
        reasons.append(f"captured_at outside {UNDATED_MONTH}..{AHEAD_YEARS} year(s) ahead: partition {UNDATED_MONTH}")
    base["record_status"] = f"invalid: {'; '.join(reasons)}" if reasons else "ok"
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


def month_of(moment: datetime | None) -> str:
    """The partition of a capture time: its month, or ``UNDATED_MONTH`` when it has none (the
    record's ``record_status`` says why) or lies outside what the table projects (a camera clock
    reset before 1970 or running more than ``AHEAD_YEARS`` ahead)."""
    if moment is None:
        return UNDATED_MONTH
    month = moment.strftime("%Y-%m")
    latest = f"{datetime.now(UTC).year + AHEAD_YEARS:04d}-{datetime.now(UTC).month:02d}"
    return month if UNDATED_MONTH <= month <= latest else UNDATED_MONTH


def by_month(records: list[dict], execution_id: str) -> dict[str, pa.Table]:
    """One shard's rows as an Arrow table per month of capture."""
    rows = [row for record in records for row in rows_of(record, execution_id)]
    if not rows:
        return {}
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    indices: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        indices[month_of(row["captured_at"])].append(i)
    return {month: table.take(pa.array(positions)) for month, positions in indices.items()}


def part_prefix(execution_id: str) -> str:
    """The start of every object name an execution writes (its retry writes the same names)."""
    return f"part-{hashlib.sha256(execution_id.encode()).hexdigest()[:16]}-"


def object_key(prefix: str, month: str, execution_id: str, part: int) -> str:
    return f"{prefix}/{PARTITION}={month}/{part_prefix(execution_id)}{part:03d}.parquet"


@dataclass
class _File:
    path: Path
    writer: pq.ParquetWriter
    rows: int = 0


@dataclass
class DatasetWriter:
    """Month-partitioned Parquet of one execution, streamed: ``add`` a shard's tables, ``close``."""

    s3: Any
    bucket: str
    prefix: str
    execution_id: str
    folder: Path
    buffer_rows: int = BUFFER_ROWS
    rows_per_file: int = ROWS_PER_FILE
    max_open_files: int = MAX_OPEN_FILES
    keys: list[str] = field(default_factory=list)
    bytes_written: int = 0
    _buffers: dict[str, list[pa.Table]] = field(default_factory=lambda: defaultdict(list))
    _buffered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _files: dict[str, _File] = field(default_factory=dict)
    _parts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, tables: dict[str, pa.Table]) -> None:
        for month, table in sorted(tables.items()):
            self._buffers[month].append(table)
            self._buffered[month] += table.num_rows
        while sum(self._buffered.values()) > self.buffer_rows:
            self._flush(max(sorted(self._buffered), key=self._buffered.__getitem__))

    def close(self) -> list[str]:
        for month in sorted(self._buffered):
            self._flush(month)
        for month in sorted(self._files):
            self._upload(month)
        return self.keys

    def _flush(self, month: str) -> None:
        """The month's buffered rows as one sorted row group of its open file."""
        table = pa.concat_tables(self._buffers.pop(month)).sort_by(SORT_KEYS)
        del self._buffered[month]
        if month not in self._files:
            if len(self._files) >= self.max_open_files:
                self._upload(max(sorted(self._files), key=lambda m: self._files[m].rows))
            path = self.folder / f"{month}-{self._parts[month]:03d}.parquet"
            self._files[month] = _File(path, pq.ParquetWriter(path, SCHEMA, compression="zstd", write_statistics=True))
        file = self._files[month]
        file.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        file.rows += table.num_rows
        if file.rows >= self.rows_per_file:
            self._upload(month)

    def _upload(self, month: str) -> None:
        file = self._files.pop(month)
        file.writer.close()
        key = object_key(self.prefix, month, self.execution_id, self._parts[month])
        self._parts[month] += 1
        s3 = self.s3  # called by its name: make iam-check follows names
        with file.path.open("rb") as body:
            s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/vnd.apache.parquet")
        self.bytes_written += file.path.stat().st_size
        file.path.unlink()
        self.keys.append(key)


def handler(event: dict, context: Any, *, s3: Any = None) -> dict:
    execution_id = execution_id_of(event)
    log = get_logger("write_parquet", execution_id)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    processed, curated = os.environ["PROCESSED_BUCKET"], os.environ["CURATED_BUCKET"]
    source, target = os.environ["INPUT_PREFIX"], os.environ["OUTPUT_PREFIX"]
    images = rows = 0
    with tempfile.TemporaryDirectory(prefix="write-parquet-") as folder:
        writer = DatasetWriter(s3, curated, target, execution_id, Path(folder))
        for _, records in read_shards(s3, processed, f"{source}/{execution_id}", int(event["shard_count"])):
            tables = by_month(records, execution_id)
            images += len(records)
            rows += sum(t.num_rows for t in tables.values())
            writer.add(tables)
        keys = writer.close()
    # Counts and names, never the list of keys: their number grows with the data (an answer over
    # 256 KiB fails the execution with States.DataLimitExceeded, which no Catch takes).
    result = {
        "objects": len(keys),
        "rows": rows,
        "images": images,
        "prefix": target,
        "part_prefix": part_prefix(execution_id),
    }
    log.info("parquet written", bytes=writer.bytes_written, **result)
    if os.environ.get("METRIC_NAMESPACE"):  # images processed per execution, for the dashboard
        figures = {"ImagesProcessed": images, "DetectionRows": rows}
        dimensions = {"Environment": os.environ.get("PIPELINE_ENV", "unknown")}
        print(json.dumps(emf(os.environ["METRIC_NAMESPACE"], dimensions, figures, int(time.time() * 1000))), flush=True)
    return result
