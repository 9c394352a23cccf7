"""``make integration ENV=<env>``: the sample manifest through a deployed cloud environment.

Uploads ``pipeline_ops/sample`` to the environment's raw bucket, lets EventBridge start the workflow
(or starts it), follows it state by state and checks that it SUCCEEDED and wrote Parquet to the
curated bucket. AWS credentials and region come from the environment (CI: the deploy role).
Exit code 0 only on success.
"""

from __future__ import annotations

import argparse
import json

from pipeline_ops.run import curated_objects, run
from tools import cli

SERVICES = ("s3", "stepfunctions", "lambda")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.integration", description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the execution")
    args = parser.parse_args(argv)
    import boto3

    session = boto3.session.Session()
    aws = {name: session.client(name) for name in SERVICES}
    _, described = run(timeout=args.timeout, wait_for_trigger=60, aws=aws)
    status = described["status"]
    objects = curated_objects(aws["s3"], json.loads(described.get("output") or "{}"))
    print(f"integration: execution {status}, {len(objects)} Parquet object(s) in curated")
    return 0 if status == "SUCCEEDED" and objects else 1


if __name__ == "__main__":
    cli.run(main)
