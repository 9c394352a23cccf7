"""The emulator's own behaviour that the stack relies on, without the stack: the S3 backend's
lock file, the replay of SDK retries (the root cause of the flaky deploys) and the backend lookup.

A module-scoped emulator of its own (tests/conftest.py), nothing deployed: under xdist these run
beside the stack's module on another worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.emulator


def test_s3_backend_lockfile_refuses_second_plan(emulator, tmp_path: Path) -> None:
    """use_lockfile against the emulator: while one run holds the lock, another is refused."""
    from local import deploy
    from local.status import clients

    aws = clients(("s3",))

    aws["s3"].create_bucket(Bucket="lock-test-state", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    endpoint = os.environ["EMULATOR_ENDPOINT"]
    config = {
        "terraform": {
            "required_providers": {"aws": {"source": "aws", "version": "5.100.0"}},
            "backend": {
                "s3": {
                    "bucket": "lock-test-state",
                    "key": "env/terraform.tfstate",
                    "region": "eu-north-1",
                    "use_lockfile": True,
                    "encrypt": True,
                    "use_path_style": True,
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "endpoints": {"s3": endpoint},
                }
            },
        },
        "provider": {"aws": [{"region": "eu-north-1", "max_retries": 2}]},
        "resource": {
            "aws_s3_bucket": {"slow": {"bucket": "lock-test-slow"}},
            "aws_s3_bucket_lifecycle_configuration": {
                "slow": {
                    "bucket": "${aws_s3_bucket.slow.id}",
                    "rule": [{"id": "x", "status": "Enabled", "filter": [{}], "expiration": [{"days": 1}]}],
                }
            },
        },
    }
    (tmp_path / "main.tf.json").write_text(json.dumps(config))
    deploy.init(tmp_path)
    env = deploy.emulator_env()
    holder = subprocess.Popen(
        ["terraform", "apply", "-auto-approve", "-no-color"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = aws["s3"].list_objects_v2(Bucket="lock-test-state").get("Contents", [])
            if any(o["Key"].endswith(".tflock") for o in listed):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the first run never took the lock")
        second = subprocess.run(
            ["terraform", "plan", "-no-color", "-lock-timeout=0s"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert "Error acquiring the state lock" in second.stdout + second.stderr
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # terraform and its provider plugin
        holder.wait(timeout=30)


def same_invocation(client, invocation: str) -> None:
    """Every request of ``client`` carries one SDK invocation id: what an SDK retry looks like."""

    def stamp(request, **_) -> None:
        request.headers["amz-sdk-invocation-id"] = invocation
        request.headers["amz-sdk-request"] = "attempt=2; max=3"

    client.meta.events.register("before-send", stamp)


def test_a_retried_request_runs_once(emulator) -> None:
    """The root cause of the flaky deploys: an SDK retry of a request moto had already carried out."""
    import uuid

    from botocore.exceptions import ClientError

    from local.status import clients

    fresh = clients(("ec2", "ssm"))
    retried = clients(("ec2", "ssm"))
    same_invocation(retried["ec2"], str(uuid.uuid4()))
    vpc = fresh["ec2"].create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    group = fresh["ec2"].create_security_group(GroupName="retry", Description="retry", VpcId=vpc)["GroupId"]
    rule = fresh["ec2"].authorize_security_group_egress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    first = retried["ec2"].revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=[rule])
    again = retried["ec2"].revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=[rule])
    assert first["Return"] is True and again["Return"] is True
    assert again["ResponseMetadata"]["HTTPHeaders"].get("x-emulator-replayed") == "true"
    with pytest.raises(ClientError, match=r"InvalidPermission\.NotFound"):  # what the retry used to get
        fresh["ec2"].revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=[rule])

    same_invocation(retried["ssm"], str(uuid.uuid4()))
    name = f"/retry/{uuid.uuid4().hex}"
    versions = [retried["ssm"].put_parameter(Name=name, Value="v", Type="String")["Version"] for _ in range(2)]
    assert versions == [1, 1]
    with pytest.raises(ClientError, match="ParameterAlreadyExists"):  # a create run twice, like CreateFunction's 409
        fresh["ssm"].put_parameter(Name=name, Value="v", Type="String")
    fresh["ssm"].delete_parameter(Name=name)
    fresh["ec2"].delete_security_group(GroupId=group)
    fresh["ec2"].delete_vpc(VpcId=vpc)


def test_backends_are_found_without_listing_the_package_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fill lists moto's package folder once; requests then find their backend by name without
    touching the disk (moto itself lists the folder on every request)."""
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from local import moto_fills

    listed = sorted(backends.list_of_moto_modules())
    moto_fills.backend_names_listed_once()
    assert sorted(backends.list_of_moto_modules()) == listed and {"s3", "batch", "stepfunctions"} <= set(listed)

    def no_listing(path: str) -> list[str]:
        raise AssertionError(f"listed {path} again")

    monkeypatch.setattr(os, "listdir", no_listing)
    dispatcher = DomainDispatcherApplication(create_backend_app)
    assert [dispatcher.get_backend_for_host(name) for name in ("s3", "batch", "iam")] == ["s3", "batch", "iam"]


def test_compute_environments_without_a_service_role_get_batchs_service_linked_role(monkeypatch) -> None:
    """AWS uses (and creates once) AWSServiceRoleForBatch when CreateComputeEnvironment names no
    serviceRole; moto refuses the call without the fill.
    https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateComputeEnvironment.html
    """
    import boto3
    from moto import mock_aws

    from local import moto_fills

    moto_fills.batch_default_service_linked_role()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        batch = boto3.client("batch", region_name="eu-north-1")
        for name in ("ce-one", "ce-two"):
            batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED", state="ENABLED")
        roles = {c["serviceRole"] for c in batch.describe_compute_environments()["computeEnvironments"]}
        assert roles == {"arn:aws:iam::123456789012:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"}
        linked = boto3.client("iam").list_roles(PathPrefix="/aws-service-role/batch.amazonaws.com/")["Roles"]
        assert [r["RoleName"] for r in linked] == ["AWSServiceRoleForBatch"]


# The EC2 example event of https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html
EC2_EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING"},
}


def test_input_transformer_follows_the_documented_examples() -> None:
    """The examples of eb-transform-target-input.html (page above): a variable as a JSON value is
    quoted, inside a string it is text; reserved variables; a path the event lacks inserts nothing;
    the whole event only as a JSON value."""
    from types import SimpleNamespace

    from local.moto_fills import transformed_input

    rule = SimpleNamespace(arn="arn:aws:events:us-east-2:123456789012:rule/example", name="example")
    paths = {"timestamp": "$.time", "instance": "$.detail.instance-id", "state": "$.detail.state"}

    def given(template: str, extra: dict | None = None) -> object:
        return json.loads(transformed_input(template, {**paths, **(extra or {})}, EC2_EVENT, rule))

    assert given('{"instance" : <instance>, "state": <state>}') == {"instance": "i-0123456789", "state": "RUNNING"}
    assert given('{"state": [ 9, <state>, true ], "Transformed" : "Yes"}') == {
        "state": [9, "RUNNING", True],
        "Transformed": "Yes",
    }
    assert given(r'{"instanceStatus": "instance \"<instance>\" is in <state>"}') == {
        "instanceStatus": 'instance "i-0123456789" is in RUNNING'
    }
    assert given('"<aws.events.rule-name> triggered"') == "example triggered"
    assert given('{"ruleArn" : <aws.events.rule-arn>, "originalEvent" : <aws.events.event>}') == {
        "ruleArn": rule.arn,
        "originalEvent": {k: v for k, v in EC2_EVENT.items() if k != "detail"},
    }
    assert given('{"event": <aws.events.event.json>}') == {"event": EC2_EVENT}
    assert given('{"d": "<detail>"}', {"detail": "$.detail"}) == {"d": "{instance-id: i-0123456789, state: RUNNING}"}
    assert given('{"gone": "<gone>", "kept": <state>}', {"gone": "$.detail.nothing"}) == {"gone": "", "kept": "RUNNING"}
    with pytest.raises(ValueError, match="only be the value of a JSON field"):
        given('{"text": "event <aws.events.event.json>"}')
    with pytest.raises(ValueError, match="not JSON"):
        given("instance <instance> is in <state>")


def test_an_object_created_starts_the_rules_state_machine_with_its_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 (EventBridge notifications on) -> a rule whose pattern matches -> its input transformer ->
    StartExecution with the target's role: the event in AWS's shape
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html), the key intact. moto
    starts nothing without the fill. No start for a key the pattern does not match, for a rule
    without a pattern (a schedule), for a disabled rule, or for a role that may not start the machine."""
    import boto3
    from moto import mock_aws

    from local import moto_fills

    moto_fills.s3_eventbridge_starts_state_machines()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        region, account = "eu-north-1", "123456789012"
        s3, iam = boto3.client("s3", region_name=region), boto3.client("iam")
        sfn, events = boto3.client("stepfunctions", region_name=region), boto3.client("events", region_name=region)
        s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_notification_configuration(
            Bucket="raw", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )

        def role(name: str, service: str) -> str:
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": service},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                    }
                ],
            }
            return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]

        machine = sfn.create_state_machine(
            name="pipeline",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn=role("states", "states.amazonaws.com"),
        )["stateMachineArn"]
        starter = role("start-pipeline", "events.amazonaws.com")
        allow = {"Effect": "Allow", "Action": "states:StartExecution", "Resource": machine}
        grants = {"Version": "2012-10-17", "Statement": [allow]}
        iam.put_role_policy(RoleName="start-pipeline", PolicyName="grants", PolicyDocument=json.dumps(grants))
        pattern = {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["raw"]}, "object": {"key": [{"prefix": "manifests/"}]}},
        }
        events.put_rule(Name="on-manifest", EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule="on-manifest",
            Targets=[
                {
                    "Id": "start",
                    "Arn": machine,
                    "RoleArn": starter,
                    "InputTransformer": {"InputPathsMap": {}, "InputTemplate": '{"event": <aws.events.event.json>}'},
                }
            ],
        )

        events.put_rule(Name="every-minute", ScheduleExpression="rate(1 minute)")  # matches no S3 event
        events.put_targets(Rule="every-minute", Targets=[{"Id": "start", "Arn": machine, "RoleArn": starter}])

        def inputs() -> list[dict]:
            listed = sfn.list_executions(stateMachineArn=machine)["executions"]
            return [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in listed]

        key = 'manifests/site 7/it\'s "the" \u00d8rsta batch.json'
        put = s3.put_object(Bucket="raw", Key=key, Body=b'{"images": []}')
        (started,) = inputs()
        event = started["event"]
        assert (event["source"], event["detail-type"], event["resources"]) == (
            "aws.s3",
            "Object Created",
            ["arn:aws:s3:::raw"],
        )
        assert event["detail"]["object"]["key"] == key
        assert event["detail"]["object"]["etag"] == put["ETag"].strip('"')
        assert event["detail"]["reason"] == "PutObject" and event["time"].endswith("Z")

        s3.put_object(Bucket="raw", Key="images/a.jpg", Body=b"x")
        events.disable_rule(Name="on-manifest")
        s3.put_object(Bucket="raw", Key="manifests/while-disabled.json", Body=b"{}")
        assert len(inputs()) == 1, "no start for a key outside the pattern or while the rule is disabled"
        events.enable_rule(Name="on-manifest")
        iam.put_role_policy(
            RoleName="start-pipeline",
            PolicyName="grants",
            PolicyDocument=json.dumps({**grants, "Statement": [{**allow, "Resource": f"{machine}-other"}]}),
        )
        s3.put_object(Bucket="raw", Key="manifests/no-permission.json", Body=b"{}")
        assert len(inputs()) == 1, "a role that may not start the machine starts nothing"
        iam.put_role_policy(RoleName="start-pipeline", PolicyName="grants", PolicyDocument=json.dumps(grants))
        s3.put_object(Bucket="raw", Key=key, Body=b'{"images": []}')
        assert len(inputs()) == 2, (
            "an overwrite is a new Object Created event: a rule that starts the machine itself starts another"
        )


def test_an_object_created_invokes_the_rules_function_when_its_policy_admits_the_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3 -> a rule whose target is a Lambda function (the pipeline's start_run): EventBridge invokes
    it asynchronously with the whole event once the function's resource policy lets that rule invoke
    it (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html). moto
    delivers to no Lambda target without the fill. No invocation without the permission, or with a
    permission for another rule's ARN."""
    import io
    import zipfile

    import boto3
    from moto import mock_aws

    from local import moto_fills

    moto_fills.lambda_runs_real_handlers()
    moto_fills.s3_eventbridge_starts_state_machines()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr(
            "handler.py",
            "import json, os, pathlib\n"
            "def handler(event, context):\n"
            "    out = pathlib.Path(os.environ['OUT']) / (event['detail']['object']['key'].replace('/', '_'))\n"
            "    out.write_text(json.dumps(event))\n",
        )
    with mock_aws():
        region = "eu-north-1"
        s3, iam = boto3.client("s3", region_name=region), boto3.client("iam")
        events, lam = boto3.client("events", region_name=region), boto3.client("lambda", region_name=region)
        s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_notification_configuration(
            Bucket="raw", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        trust = {
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
        }
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        function = lam.create_function(
            FunctionName="start-run",
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
            Environment={"Variables": {"OUT": str(tmp_path)}},
        )["FunctionArn"]
        pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": ["raw"]}}}
        rule = events.put_rule(Name="on-manifest", EventPattern=json.dumps(pattern))["RuleArn"]
        events.put_targets(Rule="on-manifest", Targets=[{"Id": "start", "Arn": function}])

        def delivered(key: str, wait: float = 20) -> dict | None:
            """The event the function got for ``key`` (bounded wait: the invocation is asynchronous;
            the refused uploads came first, so once the admitted one arrived a short wait does)."""
            out = tmp_path / key.replace("/", "_")
            deadline = time.monotonic() + wait
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            return json.loads(out.read_text()) if out.exists() else None

        s3.put_object(Bucket="raw", Key="manifests/no-permission.json", Body=b"{}")
        for statement, source in (("other-rule", f"{rule}-other"), ("this-rule", rule)):
            if statement == "this-rule":
                s3.put_object(Bucket="raw", Key="manifests/other-rule.json", Body=b"{}")
            lam.add_permission(
                FunctionName="start-run",
                StatementId=statement,
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=source,
            )
        key = 'manifests/it\'s "the" \u00d8rsta batch.json'
        s3.put_object(Bucket="raw", Key=key, Body=b"{}")
        event = delivered(key)
        assert event is not None, "the admitted rule's function was not invoked"
        assert (event["source"], event["detail-type"], event["detail"]["object"]["key"]) == (
            "aws.s3",
            "Object Created",
            key,
        )
        assert delivered("manifests/no-permission.json", 1) is None, "invoked without a resource policy"
        assert delivered("manifests/other-rule.json", 1) is None, "invoked with a permission for another rule"
