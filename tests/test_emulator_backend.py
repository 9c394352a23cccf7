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
