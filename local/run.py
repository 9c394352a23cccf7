"""``make run-local``: run the pipeline once on the emulator with the sample manifest.

Uploads local/sample/ (images + manifest) to the raw bucket, starts an execution (or picks up
the one EventBridge started for the new manifest), follows it state by state and prints the
final status and the curated objects. Serves the loopback weather API for the run if nothing
listens on the weather port the deployed function was configured with (the local profile's).
Exit code 0 only if the execution SUCCEEDED.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local import weather_server
from local.status import clients
from tools import cli

SAMPLE = Path(__file__).resolve().parent / "sample"


def find(items: list[str], fragment: str) -> str:
    matches = [i for i in items if fragment in i]
    if not matches:
        raise SystemExit(f"error: nothing named *{fragment}* on the emulator; run `make deploy-local` first")
    return matches[0]


def upload_sample(s3: Any, bucket: str, manifest_name: str) -> str:
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    for image in sorted((SAMPLE / "images").glob("*.JPG")):
        site, name = image.name.split("_", 1)
        s3.put_object(Bucket=bucket, Key=f"images/{site}/{name}", Body=image.read_bytes(), ContentType="image/jpeg")
    key = f"manifests/{manifest_name}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode(), ContentType="application/json")
    return f"s3://{bucket}/{key}"


def loopback_weather_port(lambda_client: Any) -> int | None:
    """The port of the deployed weather function's provider URL, when that is a loopback address."""
    function = find([f["FunctionName"] for f in lambda_client.list_functions()["Functions"]], "weather-enrichment")
    env = lambda_client.get_function_configuration(FunctionName=function).get("Environment", {}).get("Variables", {})
    url = urlsplit(env.get("WEATHER_BASE_URL", ""))
    return url.port if url.hostname in {"127.0.0.1", "localhost"} and url.port else None


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def follow(sfn: Any, execution_arn: str, timeout: float, out: Any = None) -> dict:
    """Print each state as it is entered and left (to ``out``, default the current stdout)."""
    out = out or sys.stdout
    seen, deadline = 0, time.monotonic() + timeout
    while True:
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        for event in events[seen:]:
            entered = event.get("stateEnteredEventDetails")
            exited = event.get("stateExitedEventDetails")
            failed = event.get("taskFailedEventDetails") or event.get("executionFailedEventDetails")
            if entered:
                print(f"  -> {entered['name']}", file=out, flush=True)
            elif exited:
                print(f"  <- {exited['name']}", file=out, flush=True)
            elif failed:
                print(f"  !! {failed.get('error')}: {str(failed.get('cause', ''))[:200]}", file=out, flush=True)
        seen = len(events)
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.5)


def visited_states(sfn: Any, execution_arn: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def run(timeout: float = 300, wait_for_trigger: float = 3.0, aws: dict[str, Any] | None = None) -> tuple[str, dict]:
    """Run the sample once; ``aws`` are boto3 clients by service name (default: the emulator's)."""
    aws = aws or clients()
    s3, sfn = aws["s3"], aws["stepfunctions"]
    raw = find([b["Name"] for b in s3.list_buckets()["Buckets"]], "-raw-")
    machine = find([m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]], "-pipeline")
    weather_port = loopback_weather_port(aws["lambda"])
    server = weather_server.start(weather_port) if weather_port and port_free(weather_port) else None
    try:
        before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
        manifest = upload_sample(s3, raw, f"sample-{uuid.uuid4().hex[:8]}")
        print(f"run-local: uploaded the sample to {manifest}")
        execution_arn = None
        deadline = time.monotonic() + wait_for_trigger
        while time.monotonic() < deadline and not execution_arn:
            started = [
                e["executionArn"]
                for e in sfn.list_executions(stateMachineArn=machine)["executions"]
                if e["executionArn"] not in before
            ]
            execution_arn = started[0] if started else None
            time.sleep(0.3)
        if execution_arn:
            print("run-local: EventBridge started the execution for the new manifest")
        else:
            execution_arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"manifest": manifest}))[
                "executionArn"
            ]
        print(f"run-local: following {execution_arn.rsplit(':', 1)[-1]}")
        described = follow(sfn, execution_arn, timeout)
    finally:
        if server:
            server.shutdown()
    return execution_arn, described


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    _, described = run(args.timeout)
    print(
        f"run-local: execution {described['status']}"
        + (f" ({described.get('error')}: {described.get('cause')})" if described["status"] != "SUCCEEDED" else "")
    )
    if described["status"] == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        for key in output.get("parquet", {}).get("objects", []):
            print(f"  curated: {key}")
    return 0 if described["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
