"""Properties of the network, data lake, ECR and Batch of every environment (issue: data and compute)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SynthResult

ENVS = ("local", "dev", "staging", "prod")


def bucket_parts(synth: SynthResult, env: str, type_: str) -> dict[str, dict]:
    """Per-bucket resources of ``type_`` keyed by the bucket construct (raw, processed, ...)."""
    found = {}
    for body in synth.resources(env, type_).values():
        path = body["//"]["metadata"]["path"].split("/")
        found[path[-2]] = body
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_is_hardened(synth: SynthResult, env: str) -> None:
    buckets = bucket_parts(synth, env, "aws_s3_bucket")
    expected = {"logs", "raw", "processed", "curated"} | (
        {"raw-replica", "curated-replica", "logs-replica"} if env == "prod" else set()
    )
    if env != "local":
        expected.add("cost-reports")  # the CUR 2.0 export's bucket (modules/cost_reports.py)
    assert set(buckets) == expected
    pabs = bucket_parts(synth, env, "aws_s3_bucket_public_access_block")
    owners = bucket_parts(synth, env, "aws_s3_bucket_ownership_controls")
    versions = bucket_parts(synth, env, "aws_s3_bucket_versioning")
    encryption = bucket_parts(synth, env, "aws_s3_bucket_server_side_encryption_configuration")
    policies = bucket_parts(synth, env, "aws_s3_bucket_policy")
    for name in expected:
        assert all(
            pabs[name][k] is True
            for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        )
        assert owners[name]["rule"]["object_ownership"] == "BucketOwnerEnforced"
        assert versions[name]["versioning_configuration"]["status"] == "Enabled"
        sse = encryption[name]["rule"][0]["apply_server_side_encryption_by_default"]
        statements = {s["Sid"]: s for s in json.loads(policies[name]["policy"])["Statement"]}
        assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        if name.startswith("logs"):  # server access logs can only be delivered to SSE-S3 buckets
            assert sse == {"sse_algorithm": "AES256"}
            assert statements["S3ServerAccessLogDelivery"]["Principal"] == {"Service": "logging.s3.amazonaws.com"}
        elif name == "cost-reports":  # the billing services deliver with SSE-S3
            assert sse == {"sse_algorithm": "AES256"}
            assert "bcm-data-exports.amazonaws.com" in statements["BillingDataExportsDeliver"]["Principal"]["Service"]
        else:
            assert sse["sse_algorithm"] == "aws:kms" and sse["kms_master_key_id"].startswith("${aws_kms_key.")
            assert statements["DenyUploadsNotSseKms"]["Effect"] == "Deny"
            other_key = statements["DenyUploadsWithOtherKey"]["Condition"]
            assert other_key["Null"] == {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"}
            assert statements["DenyUploadsNotSseKms"]["Condition"]["StringNotEquals"] == {
                "s3:x-amz-server-side-encryption": "aws:kms"
            }
    logging = bucket_parts(synth, env, "aws_s3_bucket_logging")
    assert set(logging) == expected - {"logs", "logs-replica"}  # every bucket but the log targets logs
    for name, body in logging.items():  # to the log bucket of its own region
        target = "logs-replica_bucket" if name.endswith("-replica") else "logs_bucket"
        assert f"data-lake_{target}" in body["target_bucket"], (name, body["target_bucket"])


def test_lifecycle_from_profile(synth: SynthResult) -> None:
    raw = bucket_parts(synth, "dev", "aws_s3_bucket_lifecycle_configuration")["raw"]
    rules = {r["id"]: r for r in raw["rule"]}
    assert rules["abort-incomplete-multipart"]["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 7}]
    assert rules["expire-noncurrent-versions"]["noncurrent_version_expiration"] == [{"noncurrent_days": 30}]
    assert rules["tier-then-archive"]["transition"] == [
        {"days": 30, "storage_class": "INTELLIGENT_TIERING"},
        {"days": 180, "storage_class": "GLACIER_IR"},
    ]
    processed = bucket_parts(synth, "dev", "aws_s3_bucket_lifecycle_configuration")["processed"]
    assert {r["id"] for r in processed["rule"]} == {
        "abort-incomplete-multipart",
        "expire-noncurrent-versions",
        "expire-objects",
    }


def test_replication_only_in_prod(synth: SynthResult) -> None:
    for env in ("local", "dev", "staging"):
        assert not synth.resources(env, "aws_s3_bucket_replication_configuration")
    replication = synth.resources("prod", "aws_s3_bucket_replication_configuration")
    assert len(replication) == 2
    for body in replication.values():
        (rule,) = body["rule"]
        assert rule["destination"]["encryption_configuration"]["replica_kms_key_id"].startswith("${aws_kms_key.")
        assert rule["source_selection_criteria"]["sse_kms_encrypted_objects"]["status"] == "Enabled"
    replica_buckets = [b for b in synth.resources("prod", "aws_s3_bucket").values() if "replica" in b["bucket"]]
    assert all(b["provider"] == "aws.replica" for b in replica_buckets)
    providers = synth.pipeline("prod")["provider"]["aws"]
    assert {p.get("alias"): p["region"] for p in providers} == {
        None: "eu-north-1",
        "replica": "eu-west-1",
        "billing": "us-east-1",  # Data Exports (modules/cost_reports.py)
    }


def test_prod_data_cannot_be_destroyed(synth: SynthResult) -> None:
    for bucket in synth.resources("prod", "aws_s3_bucket").values():
        assert bucket["lifecycle"] == {"prevent_destroy": True}
        assert "force_destroy" not in bucket
    for env in ("local", "dev"):
        for bucket in synth.resources(env, "aws_s3_bucket").values():
            assert bucket["force_destroy"] is True and "lifecycle" not in bucket


def test_raw_bucket_sends_eventbridge_events(synth: SynthResult) -> None:
    notification = synth.only("dev", "aws_s3_bucket_notification")
    assert notification["eventbridge"] is True and "raw" in notification["bucket"]


def test_network(synth: SynthResult) -> None:
    for env, azs, egress in (("local", 2, "nat"), ("dev", 2, "endpoints"), ("prod", 3, "endpoints")):
        subnets = synth.resources(env, "aws_subnet").values()
        private = [s for s in subnets if s["tags"]["Tier"] == "private"]
        assert len(private) == azs and all(s["map_public_ip_on_launch"] is False for s in private)
        endpoints = {
            e["service_name"].rsplit(".", 1)[-1]
            if "ecr" not in e["service_name"]
            else ".".join(e["service_name"].split(".")[-2:]): e
            for e in synth.resources(env, "aws_vpc_endpoint").values()
        }
        assert endpoints["s3"]["vpc_endpoint_type"] == "Gateway"
        if egress == "nat":
            assert len(synth.resources(env, "aws_nat_gateway")) == 1 and set(endpoints) == {"s3"}
        else:
            assert not synth.resources(env, "aws_nat_gateway")
            # The ECS agent's three services too: without them no instance registers (tools/preflight.py).
            assert set(endpoints) == {"s3", "ecs", "ecs-agent", "ecs-telemetry", "ecr.api", "ecr.dkr", "logs", "sts"}
        flow = synth.only(env, "aws_flow_log")
        assert flow["traffic_type"] == "ALL" and flow["log_destination_type"] == "cloud-watch-logs"


def test_batch_security_group_has_no_inbound(synth: SynthResult) -> None:
    for env in ENVS:
        groups = {g["name"]: g for g in synth.resources(env, "aws_security_group").values()}
        batch = groups[f"odins-ravne-{env}-batch"]
        assert "ingress" not in batch
        ingress = synth.resources(env, "aws_vpc_security_group_ingress_rule").values()
        assert all("cidr_ipv4" not in rule for rule in ingress), "only security-group sources may come in"
        for rule in synth.resources(env, "aws_vpc_security_group_egress_rule").values():
            assert (rule["ip_protocol"], rule["from_port"], rule["to_port"]) == ("tcp", 443, 443)
        default = synth.only(env, "aws_default_security_group")
        assert "ingress" not in default and "egress" not in default


def test_compute_environments(synth: SynthResult) -> None:
    ces = {
        c["compute_environment_name"].rsplit("-", 1)[-1]: c
        for c in synth.resources("prod", "aws_batch_compute_environment").values()
    }
    gpu = ces["gpu"]["compute_resources"]
    assert ces["gpu"]["type"] == "MANAGED"
    assert gpu["type"] == "SPOT" and gpu["allocation_strategy"] == "SPOT_CAPACITY_OPTIMIZED"
    assert gpu["instance_type"] == ["g4dn.xlarge", "g4dn.2xlarge"] and gpu["bid_percentage"] == 70
    assert (gpu["min_vcpus"], gpu["desired_vcpus"], gpu["max_vcpus"]) == (0, 0, 100)
    assert gpu["ec2_configuration"] == [{"image_type": "ECS_AL2023_NVIDIA"}]
    assert ces["cpu"]["compute_resources"]["ec2_configuration"] == [{"image_type": "ECS_AL2023"}]
    assert ces["cpu"]["compute_resources"]["min_vcpus"] == 0
    template = synth.only("prod", "aws_launch_template")
    assert template["metadata_options"]["http_tokens"] == "required"
    assert template["block_device_mappings"][0]["ebs"]["encrypted"] == "true"
    # What Batch launches carries the cost tags (default_tags reach neither launched instances nor volumes).
    cost = {"Project": "odins-ravne", "Environment": "prod", "CostCenter": "wildlife-research", "ManagedBy": "cdktf"}
    cost["CostScope"] = "odins-ravne-prod"  # the one tag the budget and the anomaly monitor select on
    assert {s["resource_type"]: s["tags"] for s in template["tag_specifications"]} == {
        "instance": cost,
        "volume": cost,
        "network-interface": cost,
    }
    assert all(ce["compute_resources"]["tags"] == cost for ce in ces.values())


def test_queues_order_and_priorities(synth: SynthResult) -> None:
    queues = {q["name"].rsplit("-", 1)[-1]: q for q in synth.resources("dev", "aws_batch_job_queue").values()}
    assert {name: q["priority"] for name, q in queues.items()} == {"high": 100, "normal": 50, "low": 10, "cpu": 50}
    for name, queue in queues.items():
        order = sorted(queue["compute_environment_order"], key=lambda o: o["order"])
        if name == "cpu":  # CPU stages only: never a GPU instance
            assert len(order) == 1 and "ce-cpu" in order[0]["compute_environment"]
        else:  # the seed's order for the GPU queues
            assert [o["order"] for o in order] == [1, 2]
            assert "ce-gpu" in order[0]["compute_environment"] and "ce-cpu" in order[1]["compute_environment"]
        (limit,) = queue["job_state_time_limit_action"]
        assert (limit["state"], limit["action"]) == ("RUNNABLE", "CANCEL")


def test_job_definitions(synth: SynthResult) -> None:
    definitions = {d["name"].rsplit("-", 1)[-1]: d for d in synth.resources("dev", "aws_batch_job_definition").values()}
    assert set(definitions) == {"stage0", "stage1", "stage2"}
    for stage, definition in definitions.items():
        container = json.loads(definition["container_properties"])
        resources = {r["type"]: r["value"] for r in container["resourceRequirements"]}
        assert ("GPU" in resources) == (stage != "stage0")
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert env["STAGE"] == stage and env["LOG_FORMAT"] == "json" and env["PIPELINE_ENV"] == "dev"
        assert container["image"].endswith(":0.1.0") and "aws_ecr_repository" in container["image"]
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        strategy = definition["retry_strategy"]
        assert strategy["attempts"] == 3
        actions = [
            (e.get("on_status_reason") or e.get("on_exit_code") or e.get("on_reason"), e["action"])
            for e in strategy["evaluate_on_exit"]
        ]
        assert actions == [("Host EC2*", "RETRY"), ("75", "RETRY"), ("*", "EXIT")]
        assert definition["timeout"]["attempt_duration_seconds"] >= 60


def test_ecr_repositories(synth: SynthResult) -> None:
    repos = synth.resources("prod", "aws_ecr_repository").values()
    assert len(repos) == 3
    for repo in repos:
        assert repo["image_tag_mutability"] == "IMMUTABLE"
        assert repo["image_scanning_configuration"]["scan_on_push"] is True
        assert repo["encryption_configuration"][0]["encryption_type"] == "KMS"
    for policy in synth.resources("prod", "aws_ecr_lifecycle_policy").values():
        (rule,) = json.loads(policy["policy"])["rules"]
        assert rule["selection"]["countNumber"] == 20


def _policy_statements(synth: SynthResult, env: str, role_fragment: str) -> list[dict]:
    for body in synth.resources(env, "aws_iam_role_policy").values():
        if role_fragment in body["role"]:
            return json.loads(body["policy"])["Statement"]
    raise AssertionError(f"no inline policy for {role_fragment}")


def test_job_roles_least_privilege(synth: SynthResult) -> None:
    stage1 = _policy_statements(synth, "dev", "job-role-stage1")
    resources = [r for s in stage1 for r in s["Resource"]]
    assert all(r.startswith("${aws_") for r in resources), "every ARN is one of this stack's resources"
    objects: dict[tuple, list[str]] = {}
    for st in stage1:
        objects.setdefault(tuple(st["Action"]), []).extend(st["Resource"])
    # Its shard list from stage0 and the shard's images (conf/pipeline.py), nothing else.
    assert sorted(objects[("s3:GetObject", "s3:GetObjectVersion")]) == [
        "${aws_s3_bucket.data-lake_processed_bucket_FF4A5E15.arn}/stage0/*",
        "${aws_s3_bucket.data-lake_raw_bucket_72556160.arn}/images/*",
    ]
    assert objects[("s3:AbortMultipartUpload", "s3:PutObject")] == [
        "${aws_s3_bucket.data-lake_processed_bucket_FF4A5E15.arn}/stage1/*"
    ]
    listings = [s for s in stage1 if s["Action"] == ["s3:ListBucket"]]
    assert {tuple(s["Condition"]["StringLike"]["s3:prefix"]) for s in listings} == {
        ("images/*",),
        ("stage0/*",),
        ("stage1/*",),
    }
    raw = {r for r in resources if "raw_bucket" in r}
    assert raw == {
        "${aws_s3_bucket.data-lake_raw_bucket_72556160.arn}",
        "${aws_s3_bucket.data-lake_raw_bucket_72556160.arn}/images/*",
    }
