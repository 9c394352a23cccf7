"""Pipeline runs on a stack applied to the emulator, shared by the stack test modules."""

from __future__ import annotations

import json


def run_pipeline(timeout: int = 240, **kwargs):
    from pipeline_ops.run import run

    return run(timeout=timeout, wait_for_trigger=0.5, **kwargs)


def weather_statuses(aws, execution_arn: str) -> list[str]:
    """What WeatherEnrichment wrote for each record (the reason when a lookup failed)."""
    processed = next(b["Name"] for b in aws["s3"].list_buckets()["Buckets"] if "-processed-" in b["Name"])
    prefix = f"weather/{execution_arn.rsplit(':', 1)[-1]}/"
    listed = aws["s3"].list_objects_v2(Bucket=processed, Prefix=prefix).get("Contents", [])
    bodies = [json.loads(aws["s3"].get_object(Bucket=processed, Key=o["Key"])["Body"].read()) for o in listed]
    return [r.get("weather_status") for body in bodies for r in body["records"]]
