"""Run again just the shards an execution lost: ``make rerun-shards ENV=<env> EXECUTION=<name>``.

An execution whose shards failed within ``workflow.tolerated_shard_failure_pct`` succeeds with what
it has and its notice names the missing shards (NotifyFailedShards); beyond it, it fails and its
notice names them too (NotifyShardsFailed). This gathers the images of every shard of that
execution with no output of the fan-out's last step (stage0's ``shard-<n>.json`` for each) into one
new manifest, ``manifests/rerun-<execution>-<UTC time>.json`` in the raw bucket: a new key and
content each time, as the trigger starts one run per manifest key and content (running this twice
starts two runs). Like any new manifest it starts its own execution through the manifest trigger
(EventBridge -> start_run), which writes its own Parquet objects; ``--start`` starts it here only
when the stack has no trigger (``workflow.start_on_new_manifest: false``): with both, two runs
would start. A deliberate re-run, so a command of its own: nothing runs again by itself.

    python -m pipeline_ops.rerun_shards <stack-dir> <execution-name> [--start]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conf.pipeline import PIPELINE, PipelineSpec
from tools import cli


def missing_shards(s3: Any, bucket: str, execution: str, spec: PipelineSpec = PIPELINE) -> list[int]:
    """Shards stage0 cut for ``execution`` that the fan-out's last step wrote nothing for."""
    first, last = spec.sharder.writes.prefix, spec.shard_steps[-1].writes.prefix
    listing = json.loads(s3.get_object(Bucket=bucket, Key=f"{first}/{execution}/shards.json")["Body"].read())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{last}/{execution}/")
    done = {o["Key"].rsplit("/", 1)[1] for page in pages for o in page.get("Contents", [])}
    return [item["shard"] for item in listing if f"shard-{item['shard']}.json" not in done]


def rerun_manifest(
    s3: Any, processed: str, raw: str, execution: str, spec: PipelineSpec = PIPELINE
) -> tuple[str, list]:
    """Write the manifest of the missing shards' images; returns (its s3 URI or "", the shards)."""
    shards = missing_shards(s3, processed, execution, spec)
    if not shards:
        return "", []
    prefix = spec.sharder.writes.prefix
    images = [
        record
        for shard in shards
        for record in json.loads(
            s3.get_object(Bucket=processed, Key=f"{prefix}/{execution}/shard-{shard}.json")["Body"].read()
        )["records"]
    ]
    # Stamped: the trigger starts one run per manifest key and content (lambda_src/start_run), so a
    # second rerun of the same execution (the first failed too) is a manifest of its own.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{spec.manifests.prefix}/rerun-{execution}-{stamp}.json"
    body = {"images": images, "rerun_of": execution, "shards": shards, "requested_at": stamp}
    s3.put_object(Bucket=raw, Key=key, Body=json.dumps(body).encode(), ContentType="application/json")
    return f"s3://{raw}/{key}", shards


def has_trigger(stack: Path) -> bool:
    """Whether the stack's EventBridge rules start an execution for a new S3 object (the manifest
    trigger): then writing the rerun manifest starts its run."""
    config = stack / "cdk.tf.json"
    if not config.exists():
        return False
    rules = json.loads(config.read_text()).get("resource", {}).get("aws_cloudwatch_event_rule", {})
    return any('"Object Created"' in str(rule.get("event_pattern", "")) for rule in rules.values())


def outputs(stack: Path) -> dict[str, Any]:
    proc = subprocess.run(["terraform", "output", "-json"], cwd=stack, capture_output=True, text=True, check=False)
    return {k: v.get("value") for k, v in json.loads(proc.stdout or "{}").items()} if proc.returncode == 0 else {}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.rerun_shards", description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path, help="the applied stack folder")
    parser.add_argument("execution", help="the execution's name (its id in the notice)")
    parser.add_argument(
        "--start", action="store_true", help="start the execution here when the stack has no manifest trigger"
    )
    args = parser.parse_args(argv)
    if cli.missing_stack(args.stack):
        return 2
    values = outputs(args.stack)
    if not values.get("bucket_raw"):
        print(f"error: no bucket outputs in {args.stack}; is the environment deployed?", file=sys.stderr)
        return 2
    import boto3

    s3 = boto3.client("s3")
    try:
        manifest, shards = rerun_manifest(s3, values["bucket_processed"], values["bucket_raw"], args.execution)
    except s3.exceptions.NoSuchKey:
        print(f"error: execution {args.execution!r} cut no shards (no shards.json); check the name", file=sys.stderr)
        return 2
    if not manifest:
        print(f"rerun-shards: every shard of {args.execution} finished; nothing to run again")
        return 0
    print(f"rerun-shards: shards {', '.join(map(str, shards))} of {args.execution} -> {manifest}")
    if args.start and has_trigger(args.stack):
        print("rerun-shards: the manifest trigger starts its execution (EventBridge); not starting a second here")
    elif args.start:
        arn = boto3.client("stepfunctions").start_execution(
            stateMachineArn=values["state_machine_arn"], input=json.dumps({"manifest": manifest})
        )["executionArn"]
        print(f"rerun-shards: started {arn.rsplit(':', 1)[-1]}")
    return 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
