"""Pipeline runs on a stack applied to the emulator, shared by the stack test modules."""

from __future__ import annotations

import json
import time


def run_pipeline(timeout: int = 240, **kwargs):
    from pipeline_ops.run import run

    return run(timeout=timeout, **kwargs)


def weather_statuses(aws, execution_arn: str) -> list[str]:
    """What WeatherEnrichment wrote for each record (the reason when a lookup failed)."""
    processed = next(b["Name"] for b in aws["s3"].list_buckets()["Buckets"] if "-processed-" in b["Name"])
    prefix = f"weather/{execution_arn.rsplit(':', 1)[-1]}/"
    listed = aws["s3"].list_objects_v2(Bucket=processed, Prefix=prefix).get("Contents", [])
    bodies = [json.loads(aws["s3"].get_object(Bucket=processed, Key=o["Key"])["Body"].read()) for o in listed]
    return [r.get("weather_status") for body in bodies for r in body["records"]]


def alert_queue(aws) -> str:
    """An SQS queue subscribed to the alert topic, to read what the workflow published."""
    topic = next(t["TopicArn"] for t in aws["sns"].list_topics()["Topics"] if t["TopicArn"].endswith("-alerts"))
    url = aws["sqs"].create_queue(QueueName=f"alerts-{time.monotonic_ns()}")["QueueUrl"]
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return url


def messages(aws, url: str) -> list[str]:
    received = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"])["Message"] for m in received.get("Messages", [])]


def s3_event(bucket: str, key: str, etag: str, region: str = "eu-north-1", version_id: str | None = None) -> dict:
    """The S3 Object Created event as EventBridge delivers it
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html); ``version-id`` only
    from a versioned bucket."""
    event = {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-06-01T04:12:00Z",
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 38, "etag": etag, "sequencer": "00617F08299329D189"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }
    if version_id:
        event["detail"]["object"]["version-id"] = version_id
    return event
