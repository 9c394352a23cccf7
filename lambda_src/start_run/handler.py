"""StartRun: the manifest trigger's target; one pipeline run per manifest content.

EventBridge invokes this function (asynchronously) with the S3 Object Created event of each new
``manifests/`` object (modules/workflow.py), in the documented shape
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html). EventBridge delivers at
least once and cannot name the execution it starts; S3 raises a new event for every upload, of the
same bytes too. So this function starts the execution under a name made of the manifest's key and
the SHA-256 of the content of the version the event names (``execution_name``): Step Functions
keeps one execution per name for 90 days, and a second StartExecution with that name starts nothing
(https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html): with the
same input while the first is open it answers that execution (a re-delivery), otherwise it raises
ExecutionAlreadyExists (a re-upload of the same bytes, or any start after the run ended). The
ETag cannot stand in for the content: under SSE-KMS it is no digest of it
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html). A deliberate re-run is started
by hand (``make run-local RERUN=s3://...``, or StartExecution with ``{"manifest": ...}``).

Event: the EventBridge event. Input of the execution: ``{"event": <that event>}`` (what state
FromTrigger reads). Answer: ``{"started", "execution", "reason"}``; a function error only when S3
or Step Functions fail (Lambda retries the event twice, then its dead-letter queue has it).

Environment: STATE_MACHINE_ARN; MANIFEST_BUCKET and MANIFEST_PREFIX, where manifests are (the
planning step's ``reads`` in conf/pipeline.py): an event for any other object starts nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from pipeline_log import get_logger

CHUNK = 1 << 20
READABLE = 28  # characters of the key kept in the name, for people reading the console


def object_of(event: Any) -> tuple[str, str, str | None] | None:
    """(bucket, key, version-id) of an S3 Object Created event, or None for anything else."""
    if not isinstance(event, dict) or event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        return None
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    bucket = detail.get("bucket", {}).get("name") if isinstance(detail.get("bucket"), dict) else None
    found = detail.get("object") if isinstance(detail.get("object"), dict) else {}
    key = found.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        return None
    version = found.get("version-id")
    return bucket, key, version if isinstance(version, str) and version else None


def manifest_name(bucket: str, key: str) -> str | None:
    """The key under the manifest prefix of the manifest bucket, or None for any other object."""
    if bucket != os.environ["MANIFEST_BUCKET"] or not key.startswith(f"{os.environ['MANIFEST_PREFIX']}/"):
        return None
    return key.removeprefix(f"{os.environ['MANIFEST_PREFIX']}/")


def content_digest(s3: Any, name: str, version: str | None) -> str | None:
    """SHA-256 of the manifest version the event names (streamed), or None when it is gone already."""
    bucket = os.environ["MANIFEST_BUCKET"]
    prefix = os.environ["MANIFEST_PREFIX"]
    options = {"VersionId": version} if version else {}
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}", **options)["Body"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchVersion", "404"):
            return None
        raise
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def execution_name(bucket: str, key: str, identity: str) -> str:
    """``<readable key>-<16 hex of bucket/key>-<32 hex of the content>``: at most 78 characters of
    ``[A-Za-z0-9_-]`` (a name is 1-80 characters; CloudWatch logging takes no others:
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html)."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".json")
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:READABLE] or "manifest"
    where = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]
    return f"{readable}-{where}-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def handler(event: Any, context: Any, *, s3: Any = None, sfn: Any = None) -> dict:
    log = get_logger("start_run", event.get("id") if isinstance(event, dict) else None)
    found = object_of(event)
    if found is None:
        # The rule only matches Object Created events of the raw bucket: anything else is a wiring error.
        log.error("not an S3 Object Created event: nothing started", detail_type=str(event)[:200])
        return {"started": False, "execution": "", "reason": "not an S3 Object Created event"}
    bucket, key, version = found
    name = manifest_name(bucket, key)
    if name is None:
        # The rule matches only the manifest prefix of this bucket: another object is a wiring error.
        log.error("not a manifest of this pipeline: nothing started", bucket=bucket, key=key[:200])
        return {
            "started": False,
            "execution": "",
            "reason": f"s3://{bucket}/{key[:200]} is no manifest of this pipeline",
        }
    if s3 is None or sfn is None:
        import boto3

        s3 = s3 or boto3.client("s3")
        sfn = sfn or boto3.client("stepfunctions")
    digest = content_digest(s3, name, version)
    # Gone before it was read: named after the event's version, the run starts and PlanFanOut
    # refuses it with a notice (the manifest does not exist), so the upload is not lost unseen.
    identity = f"sha256:{digest}" if digest else f"version:{version or event.get('id')}"
    execution = execution_name(bucket, key, identity)
    machine = os.environ["STATE_MACHINE_ARN"]
    manifest = f"s3://{bucket}/{key}"
    try:
        arn = sfn.start_execution(stateMachineArn=machine, name=execution, input=json.dumps({"event": event}))[
            "executionArn"
        ]
    except sfn.exceptions.ExecutionAlreadyExists:
        arn = f"{machine.replace(':stateMachine:', ':execution:', 1)}:{execution}"
        reason = (
            f"{manifest} with this content already started execution {execution}: one run per manifest content; "
            f"to run it again on purpose, start it by hand with {json.dumps({'manifest': manifest})}"
        )
        log.info("nothing started", manifest=manifest, version=version, execution=arn, reason=reason)
        return {"started": False, "execution": arn, "reason": reason}
    log.info("run started", manifest=manifest, version=version, execution=arn, content_sha256=digest)
    return {"started": True, "execution": arn, "reason": ""}
