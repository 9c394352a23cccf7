"""lambda_src/start_run: the manifest trigger's target starts one execution per manifest key and content.

Its event is the S3 Object Created event as EventBridge delivers it
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html; tests/runs.py ``s3_event``),
its calls go to moto in-process. The naming rules it relies on are StartExecution's
(https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html): 1-80
characters, one execution per name for 90 days, a second start with the same name and input while
the first is open answers that execution, anything else raises ExecutionAlreadyExists; moto
implements the same (moto/stepfunctions/models.py ``_handle_name_input_idempotency``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.runs import s3_event

SRC = Path(__file__).resolve().parent.parent / "lambda_src"
sys.path.insert(0, str(SRC / "_shared"))
spec = importlib.util.spec_from_file_location("handler_start_run", SRC / "start_run" / "handler.py")
starter = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = starter
spec.loader.exec_module(starter)

REGION = "eu-north-1"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        s3, sfn = boto3.client("s3", region_name=REGION), boto3.client("stepfunctions", region_name=REGION)
        iam = boto3.client("iam")
        s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
        trust = {
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
        }
        role = iam.create_role(RoleName="states", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
        machine = sfn.create_state_machine(name="pipeline", definition=json.dumps(definition), roleArn=role)
        monkeypatch.setenv("STATE_MACHINE_ARN", machine["stateMachineArn"])
        monkeypatch.setenv("MANIFEST_BUCKET", "raw")
        monkeypatch.setenv("MANIFEST_PREFIX", "manifests")
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
        yield {"s3": s3, "sfn": sfn, "sns": sns, "sqs": sqs, "queue": queue, "machine": machine["stateMachineArn"]}


def upload(aws, key: str, body: bytes) -> dict:
    """The object and the event S3 sends for it: each event has an id of its own."""
    put = aws["s3"].put_object(Bucket="raw", Key=key, Body=body)
    return {**s3_event("raw", key, put["ETag"].strip('"'), version_id=put["VersionId"]), "id": str(uuid.uuid4())}


def start(aws, event: dict) -> dict:
    return starter.handler(event, None, s3=aws["s3"], sfn=aws["sfn"], sns=aws["sns"])


def notices(aws) -> list[str]:
    received = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"])["Message"] for m in received]


def executions(aws) -> list[dict]:
    return aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]


def test_one_execution_per_manifest_content(aws) -> None:
    key = 'manifests/site 7/it\'s "the" \u00d8rsta batch.json'
    first = upload(aws, key, b'{"images": [{"key": "a.jpg"}]}')
    started = start(aws, first)
    assert started["started"] is True
    (execution,) = executions(aws)
    assert execution["executionArn"] == started["execution"] and NAME.match(execution["name"])
    assert execution["name"].startswith("it-s-the-rsta-batch-")
    given = json.loads(aws["sfn"].describe_execution(executionArn=started["execution"])["input"])
    assert given == {"event": first}, "the execution's input is the S3 event (state FromTrigger reads it)"

    again = start(aws, first)  # EventBridge delivers at least once: the same event while the run is open
    assert again["execution"] == started["execution"] and len(executions(aws)) == 1
    assert notices(aws) == []
    reupload = start(aws, upload(aws, key, b'{"images": [{"key": "a.jpg"}]}'))  # the same bytes, a new version
    assert reupload["started"] is False and len(executions(aws)) == 1
    assert reupload["execution"] == started["execution"]
    quoted = json.dumps(f"s3://raw/{key}", ensure_ascii=False)
    assert f"{quoted} (key and content) already started execution {execution['name']}" in reupload["reason"]
    assert '{"manifest": "s3://raw/' in reupload["reason"], "the reason says how to run it again on purpose"
    (told,) = notices(aws)
    assert reupload["reason"] in told, "the uploader expected a run: the alert topic says why none started"

    aws["sfn"].stop_execution(executionArn=started["execution"])  # closed: the name stays taken
    late = start(aws, first)  # the first event delivered again after its run ended: quiet
    assert late["started"] is False and len(executions(aws)) == 1 and notices(aws) == []

    other = start(aws, upload(aws, key, b'{"images": [{"key": "b.jpg"}]}'))
    elsewhere = start(aws, upload(aws, "manifests/copy.json", b'{"images": [{"key": "a.jpg"}]}'))
    assert other["started"] is True and elsewhere["started"] is True and len(executions(aws)) == 3


def test_a_key_cannot_add_lines_to_the_notice(aws) -> None:
    """The key is the uploader's text: quoted in the notice, its line breaks stay escaped."""
    key = "manifests/m\nOdins Ravne: all clear, nothing to do\n.json"
    assert start(aws, upload(aws, key, b"{}"))["started"] is True
    assert start(aws, upload(aws, key, b"{}"))["started"] is False
    (told,) = notices(aws)
    assert "\n" not in told and "m\\nOdins Ravne: all clear" in told
    assert "#/v2/executions/details/arn:aws:states:eu-north-1:" in told, "a link to the execution that ran it"


def test_a_second_delivery_by_s3_with_another_event_id_is_quiet(aws) -> None:
    """S3 may send one upload's event twice; the duplicate names the same version, whatever its id."""
    first = upload(aws, "manifests/m.json", b"{}")
    started = start(aws, first)
    aws["sfn"].stop_execution(executionArn=started["execution"])
    again = start(aws, {**first, "id": str(uuid.uuid4())})
    assert again["started"] is False and notices(aws) == []


def test_the_version_the_event_names_is_hashed(aws) -> None:
    """An overwrite between the upload and the invocation does not change what the first event names."""
    key = "manifests/m.json"
    first = upload(aws, key, b'{"images": [{"key": "a.jpg"}]}')
    second = upload(aws, key, b'{"images": [{"key": "b.jpg"}]}')
    assert start(aws, first)["started"] is True and start(aws, second)["started"] is True
    assert start(aws, upload(aws, key, b'{"images": [{"key": "a.jpg"}]}'))["started"] is False


def test_a_manifest_gone_before_it_is_read_still_starts_its_run(aws) -> None:
    """Named after the event's version: PlanFanOut then refuses it with a notice (it does not exist)."""
    event = upload(aws, "manifests/m.json", b"{}")
    aws["s3"].delete_object(Bucket="raw", Key="manifests/m.json", VersionId=event["detail"]["object"]["version-id"])
    assert start(aws, event)["started"] is True and len(executions(aws)) == 1


def test_anything_but_a_manifests_object_created_event_fails_the_invocation(aws) -> None:
    """A wiring error fails the invocation (Errors alarm, Lambda's retries, then its dead-letter queue)."""
    event = s3_event("raw", "manifests/m.json", "0" * 32)
    for wrong in (
        {},
        {**event, "detail-type": "Object Deleted"},
        {**event, "source": "aws.ec2"},
        {**event, "detail": {**event["detail"], "object": {"size": 3}}},
        "not an event",
    ):
        with pytest.raises(starter.NotAManifestEvent, match="not an S3 Object Created event"):
            start(aws, wrong)
    for bucket, key in (("raw", "images/a.jpg"), ("raw", "manifestsx/m.json"), ("other", "manifests/m.json")):
        with pytest.raises(starter.NotAManifestEvent, match=f"s3://{bucket}/{key} is no manifest of this pipeline"):
            start(aws, s3_event(bucket, key, "0" * 32))
    assert executions(aws) == []


def test_a_manifest_too_large_to_hash_is_named_after_its_version(aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starter, "MAX_HASHED", 10)
    event = upload(aws, "manifests/m.json", b'{"images": [{"key": "a.jpg"}]}')
    event["detail"]["object"]["size"] = 31
    first = start(aws, event)
    again = upload(aws, "manifests/m.json", b'{"images": [{"key": "a.jpg"}]}')
    again["detail"]["object"]["size"] = 31
    assert first["started"] is True and start(aws, again)["started"] is True, "a new version, a new name"


@pytest.mark.parametrize(
    "key",
    [
        "manifests/m.json",
        "manifests/" + "\u00d8" * 500 + ".json",  # S3 keys go to 1,024 bytes of UTF-8
        'manifests/"; DROP TABLE --{}[]<>*?#%\\^|~`$&,;:.json',
        "manifests/.json",
    ],
)
def test_names_are_valid_execution_names(key: str) -> None:
    name = starter.execution_name("raw", key, "sha256:" + "0" * 64)
    assert NAME.match(name), name
    assert name != starter.execution_name("raw", key + "x", "sha256:" + "0" * 64)
    assert name != starter.execution_name("raw", key, "sha256:" + "1" * 64)
