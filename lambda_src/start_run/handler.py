"""StartRun: the manifest trigger's target; one pipeline run per manifest (its key and content).

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
FromTrigger reads). Answer: ``{"started", "execution", "reason"}``. The same bytes uploaded again
are told on the alert topic (the uploader expected a run); a second delivery of the same event is
not. A function error (Errors alarm; Lambda retries the event twice, then its dead-letter queue has
it) when S3 or Step Functions fail, or for an event that is no manifest's (a wiring error).

Environment: STATE_MACHINE_ARN, ALERT_TOPIC_ARN; MANIFEST_BUCKET and MANIFEST_PREFIX, where
manifests are (the planning step's ``reads`` in conf/pipeline.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from pipeline_log import get_logger

CHUNK = 1 << 20
# Larger objects are named after their version, not hashed (a manifest of the largest accepted run,
# 200,000 images, is tens of MB; reading GBs would time the function out three times).
MAX_HASHED = 512 << 20
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
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "NoSuchVersion", "404"):
            return None
        # Anything else (AccessDenied included: a missing grant, or a missing key where S3 does not
        # count the prefix-conditioned ListBucket, unproven) fails the invocation: Errors alarm,
        # Lambda's two retries, then the dead-letter queue (runbook manifest-trigger).
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


class NotAManifestEvent(ValueError):
    """The rule sent something that is no Object Created event of a manifest: a wiring error. Raised,
    so the invocation fails and the function's Errors alarm tells someone (Lambda retries an
    asynchronous event twice, then sends it to the dead-letter queue)."""


def version_of(event: Any) -> str | None:
    """What names the object version an S3 event is about: its ``version-id`` (the raw bucket is
    versioned), else its ``sequencer`` (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html)."""
    detail = event.get("detail") if isinstance(event, dict) and isinstance(event.get("detail"), dict) else {}
    found = detail.get("object") if isinstance(detail.get("object"), dict) else {}
    return found.get("version-id") or found.get("sequencer")


def already_ran(sfn: Any, arn: str, event: dict) -> bool:
    """Whether the execution ``arn`` was started for another version of the manifest than this
    event's: the same bytes uploaded again, not a second delivery of the same upload (by
    EventBridge or by S3, whose duplicate may carry another event id)."""
    try:
        given = json.loads(sfn.describe_execution(executionArn=arn).get("input") or "{}")
    except sfn.exceptions.ExecutionDoesNotExist:
        return False
    return version_of(given.get("event")) != version_of(event)


def tell(sns: Any, text: str) -> None:
    """A notice on the alert topic (plain text, like the workflow's; the key inside quoted by the
    caller, so a key's line breaks cannot add lines)."""
    sns.publish(TopicArn=os.environ["ALERT_TOPIC_ARN"], Subject="Odins Ravne: manifest not started", Message=text)


def handler(event: Any, context: Any, *, s3: Any = None, sfn: Any = None, sns: Any = None) -> dict:
    found = object_of(event)
    if found is None:
        raise NotAManifestEvent(
            f"not an S3 Object Created event ({str(event)[:200]}): check the rule's pattern (modules/workflow.py)"
        )
    bucket, key, version = found
    name = manifest_name(bucket, key)
    if name is None:
        raise NotAManifestEvent(
            f"s3://{bucket}/{key[:200]} is no manifest of this pipeline (MANIFEST_BUCKET/MANIFEST_PREFIX): "
            "check the rule's pattern (modules/workflow.py)"
        )
    if s3 is None or sfn is None or sns is None:
        import boto3

        s3 = s3 or boto3.client("s3")
        sfn = sfn or boto3.client("stepfunctions")
        sns = sns or boto3.client("sns")
    size = event["detail"]["object"].get("size")
    digest = content_digest(s3, name, version) if not isinstance(size, int) or size <= MAX_HASHED else None
    # Unread (gone already, or past MAX_HASHED): named after the event's version, the run starts and
    # PlanFanOut refuses it with a notice, so the upload is not lost unseen.
    identity = f"sha256:{digest}" if digest else f"version:{version or event.get('id')}"
    execution = execution_name(bucket, key, identity)
    log = get_logger("start_run", execution)
    machine = os.environ["STATE_MACHINE_ARN"]
    manifest = f"s3://{bucket}/{key}"
    try:
        arn = sfn.start_execution(stateMachineArn=machine, name=execution, input=json.dumps({"event": event}))[
            "executionArn"
        ]
    except sfn.exceptions.ExecutionAlreadyExists:
        arn = f"{machine.replace(':stateMachine:', ':execution:', 1)}:{execution}"
        if not already_ran(sfn, arn, event):
            # The same upload delivered again after its run ended: nothing to tell.
            log.info("nothing started: this upload started the execution already", manifest=manifest, execution=arn)
            return {"started": False, "execution": arn, "reason": "a second delivery of the event that started it"}
        quoted = json.dumps(manifest, ensure_ascii=False)
        region = machine.split(":")[3]
        reason = (
            f"{quoted} (key and content) already started execution {execution}: the same bytes uploaded "
            f"again start no run. To run it again on purpose, start the workflow by hand with input "
            f"{json.dumps({'manifest': manifest}, ensure_ascii=False)}"
        )
        link = f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"
        log.info("nothing started", manifest=manifest, version=version, execution=arn, reason=reason)
        tell(sns, f"Odins Ravne: {reason}. Execution: {link} Runbook: docs/runbooks/workflow-failed.md")
        return {"started": False, "execution": arn, "reason": reason}
    # A second delivery while the run is open gets the same answer (same name and input).
    log.info("execution started (or running for this event)", manifest=manifest, version=version, execution=arn)
    return {"started": True, "execution": arn, "reason": ""}
