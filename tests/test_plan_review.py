"""The plan review and drift summary on small hand-made plan JSON (the rare cases).

Real plans made against the emulator are reviewed in tests/test_plan_emulator.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tools import drift_report, plan_review

PRICES = json.loads(plan_review.DEFAULT_PRICES.read_text())
BUCKET_ARN = "arn:aws:s3:::odins-ravne-dev-raw-111111111111"


def rc(address: str, actions: list[str], before: dict | None, after: dict | None, **extra) -> dict:
    type_ = address.split(".")[0]
    change = {"actions": actions, "before": before, "after": after, "after_unknown": extra.pop("unknown", {})}
    change.update(extra.pop("change", {}))
    return {"address": address, "mode": "managed", "type": type_, "name": address.split(".")[1], "change": change}


def plan(*changes: dict, planned: list[dict] | None = None, config: list[dict] | None = None) -> dict:
    return {
        "format_version": "1.2",
        "terraform_version": "1.11.4",
        "resource_changes": list(changes),
        "planned_values": {"root_module": {"resources": planned or []}},
        "configuration": {"root_module": {"resources": config or []}},
    }


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions, resources) -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def review(p: dict, approvals: list[dict] | None = None) -> plan_review.Review:
    return plan_review.review(p, title="t", approvals=approvals, prices=PRICES)


def run_main(tmp_path: Path, p: dict, *args: str) -> tuple[int, dict, str]:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(p))
    code = plan_review.main(
        [str(path), "--markdown", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json"), *args]
    )
    return code, json.loads((tmp_path / "r.json").read_text()), (tmp_path / "r.md").read_text()


def test_counts_every_action_and_skips_reads_and_no_ops() -> None:
    result = review(
        plan(
            rc("aws_sqs_queue.a", ["create"], None, {}),
            rc("aws_sqs_queue.b", ["update"], {}, {}),
            rc("aws_sqs_queue.c", ["delete", "create"], {}, {}),
            rc("aws_sns_topic.d", ["create", "delete"], {}, {}),
            rc("aws_sns_topic.e", ["delete"], {}, None),
            rc("aws_sns_topic.f", ["no-op"], {}, {}),
            dict(rc("aws_region.g", ["read"], None, {}), mode="data"),
        ),
    )
    expected = {"add": 1, "change": 1, "replace": 2, "destroy": 1, "read": 1}
    assert result.counts == {**dict.fromkeys(plan_review.ACTIONS, 0), **expected}
    assert result.deferred_reads == [{"address": "aws_region.g", "reason": ""}]  # counted as a read, not a change
    assert [(c["address"], c["action"]) for c in result.changes] == [
        ("aws_sqs_queue.a", "add"),
        ("aws_sqs_queue.b", "change"),
        ("aws_sqs_queue.c", "replace"),
        ("aws_sns_topic.d", "replace"),
        ("aws_sns_topic.e", "destroy"),
    ]


def test_replacing_a_bucket_is_blocking_until_approved_in_the_committed_file(tmp_path: Path) -> None:
    """Approvals name the address (any characters) and the change's digest: approving one change
    approves neither another address nor the same address with a different change."""
    key = 'aws_s3_bucket.raw["a,b \\"c\\" \'d\'"]'
    replaced = rc(key, ["delete", "create"], {"bucket": "a"}, {"bucket": "b"}, change={"replace_paths": [["bucket"]]})
    replaced["type"] = "aws_s3_bucket"
    gone_key = rc("aws_kms_key.k", ["delete"], {"key_id": "x"}, None)
    code, summary, report = run_main(tmp_path, plan(replaced, gone_key))
    assert code == 2 and summary["verdict"] == "BLOCKING"
    assert {(b["address"], b["action"]) for b in summary["blocking"]} == {
        (key, "replace"),
        ("aws_kms_key.k", "destroy"),
    }
    assert summary["blocking"][0]["forced_by"] == ["bucket"]
    needed = summary["approvals_needed"]
    assert {n["address"] for n in needed} == {key, "aws_kms_key.k"} and "plan-approvals.yaml" in report

    approvals = tmp_path / "plan-approvals.yaml"
    approvals.write_text(yaml.safe_dump({"t": [dict(needed[0], reason="renamed on purpose")]}))
    code, summary, _ = run_main(tmp_path, plan(replaced, gone_key), "--approvals", str(approvals), "--title", "t")
    assert code == 2, "every data-losing change must be approved, not just one"
    stale = {"address": "aws_x.y", "digest": needed[1]["digest"]}
    approvals.write_text(yaml.safe_dump({"t": [*needed, stale], "other-stack": [stale]}))
    code, summary, report = run_main(tmp_path, plan(replaced, gone_key), "--approvals", str(approvals), "--title", "t")
    assert code == 2 and summary["verdict"] == "BLOCKING", "a leftover approval blocks until it is removed"
    assert {a["address"] for a in summary["approved_destroys"]} == {key, "aws_kms_key.k"}
    assert summary["unused_approvals"] == [stale] and "match no change" in report
    assert [(f["rule"], f["address"]) for f in summary["findings"] if f["severity"] == "blocking"] == [
        ("stale-approval", "aws_x.y")
    ]
    approvals.write_text(yaml.safe_dump({"t": needed, "other-stack": [stale]}))
    code, summary, report = run_main(tmp_path, plan(replaced, gone_key), "--approvals", str(approvals), "--title", "t")
    assert code == 0 and summary["verdict"] == "REVIEW" and summary["unused_approvals"] == []
    changed = rc(key, ["delete", "create"], {"bucket": "other"}, {"bucket": "b"})
    changed["type"] = "aws_s3_bucket"
    code, summary, _ = run_main(tmp_path, plan(changed, gone_key), "--approvals", str(approvals), "--title", "t")
    assert code == 2 and [b["address"] for b in summary["blocking"]] == [key], "approval is for that change only"
    code, _, _ = run_main(
        tmp_path, plan(replaced, gone_key), "--approvals", str(approvals), "--title", "t", "--fail-on", "review"
    )
    assert code == 3, "--fail-on review: an approved destroy still needs a reviewer"


@pytest.mark.parametrize(
    ("approved", "planned"),
    [
        (("aws_s3_bucket.b", ["delete", "create"], {"bucket": "b1"}, {"bucket": "b2"}), {"bucket": "totally-other"}),
        (
            ("aws_cloudwatch_log_group.l", ["update"], {"retention_in_days": 365}, {"retention_in_days": 90}),
            {"retention_in_days": 1},
        ),
    ],
)
def test_an_approval_is_for_the_planned_values_too(approved: tuple, planned: dict, tmp_path: Path) -> None:
    """Same address, actions and prior values, other planned values: another change, so the approval
    of the first does not approve it (and, matching nothing, blocks as a stale approval)."""
    first = rc(*approved)
    [needed] = review(plan(first)).as_dict()["approvals_needed"]
    assert review(plan(first), [needed]).verdict == "REVIEW"
    other = rc(*approved[:3], planned)
    assert plan_review.change_digest(other) != needed["digest"]
    result = review(plan(other), [needed])
    assert result.verdict == "BLOCKING"
    rules = sorted(f["rule"] for f in result.findings() if f["severity"] == "blocking")
    lost = "data-loss-update" if approved[1] == ["update"] else "stateful-destroy"
    assert rules == sorted([lost, "stale-approval"])


def test_destroying_stateless_resources_is_not_blocking() -> None:
    result = review(plan(rc("aws_iam_role_policy.p", ["delete"], {"policy": policy()}, None)))
    assert result.blocking == [] and result.counts["destroy"] == 1


def test_a_large_policy_update_costs_pattern_matches_in_proportion_to_its_size(monkeypatch) -> None:
    """A managed policy near its 6,144-character limit holds thousands of action x resource pairs:
    the widening check matches each new pair against the old policy's index, not against every old
    pair (that took minutes). Counted in pattern matches, not timed; the verdict is unchanged."""
    actions = [f"s3:Get{i}Object" for i in range(60)] + ["s3:List*"]
    resources = [f"{BUCKET_ARN}/site{i}/*" for i in range(8)] + [BUCKET_ARN]
    before = policy(allow(actions, resources), {"Effect": "Deny", "Action": actions, "Resource": resources})
    after = policy(
        allow([*actions, "s3:PutObject"], resources), {"Effect": "Deny", "Action": actions[1:], "Resource": resources}
    )
    calls = []
    real = plan_review.fnmatch.fnmatchcase
    monkeypatch.setattr(plan_review.fnmatch, "fnmatchcase", lambda *a: calls.append(a) or real(*a))
    [row] = review(plan(rc("aws_iam_policy.p", ["update"], {"policy": before}, {"policy": after}))).policies
    pairs = len(actions) * len(resources)
    assert len(calls) <= 4 * pairs, f"{len(calls)} pattern matches for {pairs} pairs"
    assert row["widening"] == ["new actions or resources for s3:putobject", "Deny removed for s3:get0object"]


def test_iam_widening_is_flagged_with_the_statement() -> None:
    before = policy(allow(["s3:GetObject"], [f"{BUCKET_ARN}/manifests/*"]))
    after = policy(allow(["s3:GetObject"], [f"{BUCKET_ARN}/manifests/*"]), allow(["s3:*"], ["*"]))
    result = review(plan(rc("aws_iam_role_policy.p", ["update"], {"policy": before}, {"policy": after})))
    [row] = result.policies
    assert row["kind"] == "IAM" and row["removed"] == []
    assert row["added"] == [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]
    assert any("wildcard action s3:*" in r for r in row["widening"])
    assert any('Resource "*"' in r for r in row["widening"])
    assert result.verdict == "REVIEW"


def test_narrowing_and_reordering_are_not_widening() -> None:
    before = policy(allow(["s3:PutObject", "s3:GetObject"], ["*"]))
    after = policy(allow("s3:GetObject", [f"{BUCKET_ARN}/*"]))
    [row] = review(plan(rc("aws_iam_policy.p", ["update"], {"policy": before}, {"policy": after}))).policies
    assert row["widening"] == [] and len(row["added"]) == 1 and len(row["removed"]) == 1
    same = policy(allow(["s3:GetObject", "s3:PutObject"], ["*"]))
    assert review(plan(rc("aws_iam_policy.p", ["update"], {"policy": before}, {"policy": same}))).policies == []


def test_new_action_on_an_existing_resource_is_widening() -> None:
    before = policy(allow(["s3:GetObject"], [f"{BUCKET_ARN}/*"]))
    after = policy(allow(["s3:GetObject", "s3:DeleteObject"], [f"{BUCKET_ARN}/*"]))
    [row] = review(plan(rc("aws_iam_role_policy.p", ["update"], {"policy": before}, {"policy": after}))).policies
    assert row["widening"] == ["new actions or resources for s3:deleteobject"]


def test_removed_deny_and_new_trusted_principal_are_widening() -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [BUCKET_ARN]}
    before = policy(deny, allow(["s3:GetObject"], [f"{BUCKET_ARN}/*"]) | {"Principal": {"AWS": "arn:aws:iam::1:root"}})
    after = policy(allow(["s3:GetObject"], [f"{BUCKET_ARN}/*"]) | {"Principal": {"AWS": "arn:aws:iam::1:root"}})
    [row] = review(plan(rc("aws_s3_bucket_policy.p", ["update"], {"policy": before}, {"policy": after}))).policies
    assert row["kind"] == "resource policy" and any(r.startswith("Deny removed") for r in row["widening"])

    trust = {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    wider = dict(trust, Principal={"Service": ["lambda.amazonaws.com"], "AWS": "arn:aws:iam::999999999999:root"})
    [row] = review(
        plan(
            rc(
                "aws_iam_role.r",
                ["update"],
                {"assume_role_policy": policy(trust)},
                {"assume_role_policy": policy(wider)},
            )
        )
    ).policies
    assert row["kind"] == "trust policy"
    assert row["widening"] == ["new principals AWS:arn:aws:iam::999999999999:root"]


def test_policy_unknown_until_apply_is_called_out() -> None:
    [row] = review(
        plan(rc("aws_iam_role_policy.p", ["create"], None, {"policy": None}, unknown={"policy": True}))
    ).policies
    assert row["widening"] == ["policy known only after apply: review the source"]


def test_managed_policy_attachment_and_open_lambda_permission_are_flagged() -> None:
    result = review(
        plan(
            rc(
                "aws_iam_role_policy_attachment.a",
                ["create"],
                None,
                {"policy_arn": "arn:aws:iam::aws:policy/AdministratorAccess"},
            ),
            rc(
                "aws_lambda_permission.p",
                ["create"],
                None,
                {"action": "lambda:InvokeFunction", "principal": "s3.amazonaws.com", "source_arn": None},
            ),
        )
    )
    flags = {row["address"]: row["widening"] for row in result.policies}
    assert flags["aws_iam_role_policy_attachment.a"] == [
        "managed policy arn:aws:iam::aws:policy/AdministratorAccess attached"
    ]
    assert "without a source_arn" in flags["aws_lambda_permission.p"][0]


def test_security_group_opened_to_the_internet_is_flagged() -> None:
    egress = {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}
    ssh = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["0.0.0.0/0"]}
    result = review(
        plan(
            rc(
                "aws_security_group.sg",
                ["update"],
                {"ingress": [], "egress": [egress]},
                {"ingress": [ssh], "egress": [egress]},
            ),
            rc(
                "aws_vpc_security_group_ingress_rule.r",
                ["create"],
                None,
                {"ip_protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_ipv4": "10.0.0.0/16"},
            ),
        )
    )
    by_address = {n["address"]: n for n in result.network}
    assert by_address["aws_security_group.sg"]["added"] == ["ingress tcp 22-22 0.0.0.0/0"]
    assert by_address["aws_security_group.sg"]["flags"] == ["ingress open to the internet: ingress tcp 22-22 0.0.0.0/0"]
    assert by_address["aws_vpc_security_group_ingress_rule.r"]["flags"] == []
    assert result.verdict == "REVIEW"


def test_public_access_block_turned_off_is_flagged() -> None:
    on = dict.fromkeys(
        ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"), True
    )
    [row] = review(
        plan(rc("aws_s3_bucket_public_access_block.b", ["update"], on, on | {"block_public_policy": False}))
    ).network
    assert row["flags"] == ["block_public_policy turned off"]


def test_cost_delta_from_the_dated_price_table(tmp_path: Path) -> None:
    subnets = {"references": ["aws_subnet.a.id", "aws_subnet.a", "aws_subnet.b.id", "aws_subnet.b"]}
    p = plan(
        rc("aws_nat_gateway.n", ["create"], None, {}),
        rc("aws_vpc_endpoint.e", ["create"], None, {"vpc_endpoint_type": "Interface", "subnet_ids": None}),
        rc("aws_vpc_endpoint.s3", ["create"], None, {"vpc_endpoint_type": "Gateway"}),
        rc("aws_cloudwatch_dashboard.d", ["delete"], {}, None),
        rc("aws_cloudwatch_metric_alarm.a", ["create"], None, {"metric_query": []}),
        rc("aws_kms_key.k", ["create"], None, {}),
        rc("aws_ssm_parameter.p", ["update"], {"tier": "Standard"}, {"tier": "Advanced"}),
        config=[{"address": "aws_vpc_endpoint.e", "expressions": {"subnet_ids": subnets}}],
    )
    cost = review(p).cost
    items = {i["address"]: i["monthly_usd"] for i in cost["items"]}
    assert items == {
        "aws_nat_gateway.n": round(730 * 0.046, 2),
        "aws_vpc_endpoint.e": round(2 * 730 * 0.011, 2),
        "aws_cloudwatch_dashboard.d": -3.0,
        "aws_cloudwatch_metric_alarm.a": 0.1,
        "aws_kms_key.k": 1.0,
        "aws_ssm_parameter.p": 0.05,
    }
    assert cost["monthly_delta_usd"] == round(sum(items.values()), 2) and cost["price_date"] == PRICES["date"]
    _, _, report = run_main(tmp_path, p)
    assert "estimate" in report and PRICES["date"] in report and "+47.79 USD" in report


def test_per_job_hour_picks_the_cheapest_instance_that_fits() -> None:
    def ce(name, types):
        return {
            "type": "aws_batch_compute_environment",
            "values": {"name": name, "compute_resources": [{"instance_type": types}]},
        }

    def job(name, vcpu, memory, gpu=0):
        requirements = [{"type": "VCPU", "value": str(vcpu)}, {"type": "MEMORY", "value": str(memory)}]
        requirements += [{"type": "GPU", "value": str(gpu)}] if gpu else []
        container = json.dumps({"resourceRequirements": requirements})
        return {"type": "aws_batch_job_definition", "values": {"name": name, "container_properties": container}}

    planned = [
        ce("cpu", ["c6i.large", "c6i.xlarge"]),
        ce("gpu", ["g4dn.2xlarge", "g4dn.xlarge"]),
        job("stage0", 2, 4096),
        job("big", 4, 8192),
        job("stage1", 4, 15360, gpu=1),
    ]
    rows = {r["job_definition"]: r for r in review(plan(planned=planned)).cost["per_job_hour"]}
    assert rows["stage0"]["instance_type"] == "c6i.large"
    assert rows["big"]["instance_type"] == "c6i.xlarge"
    assert rows["stage1"]["instance_type"] == "g4dn.xlarge"
    assert rows["stage1"]["spot_usd"] == round(0.558 * PRICES["spot_typical_fraction_of_on_demand"], 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"resources": []}', "not a Terraform plan"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path: Path, capsys, content: str, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    assert plan_review.main([str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert plan_review.main([str(tmp_path / "missing.json")]) == 1
    assert "no such file" in capsys.readouterr().err


def drift_plan(*drift: dict, config_types: tuple[str, ...] = ()) -> dict:
    p = plan(config=[{"address": f"{t}.x", "type": t} for t in config_types])
    p["resource_drift"] = list(drift)
    return p


def test_drift_reports_real_changes_and_ignores_noise() -> None:
    items, ignored = drift_report.drifted(
        drift_plan(
            rc(
                "aws_cloudwatch_log_group.g",
                ["update"],
                {"retention_in_days": 7, "tags": None},
                {"retention_in_days": 1, "tags": {}},
            ),
            rc(
                "aws_iam_role.r",
                ["update"],
                {"inline_policy": [], "max_session_duration": 3600},
                {"inline_policy": [{"name": "grants", "policy": "{}"}], "max_session_duration": 3600},
            ),
            rc("aws_sqs_queue.q", ["delete"], {"name": "q"}, None),
            config_types=("aws_iam_role_policy",),
        )
    )
    assert items == [
        {
            "address": "aws_cloudwatch_log_group.g",
            "kind": "changed outside Terraform",
            "attributes": [{"path": "retention_in_days", "recorded": 7, "actual": 1}],
        },
        {"address": "aws_sqs_queue.q", "kind": "deleted outside Terraform", "attributes": []},
    ]
    assert {i["path"] for i in ignored} == {"tags", "inline_policy", "inline_policy[0].name", "inline_policy[0].policy"}


def test_a_queue_policy_of_its_own_resource_is_not_queue_drift() -> None:
    """The provider reads aws_sqs_queue.policy back from the policy an aws_sqs_queue_policy set
    (found on the emulator: the manifest trigger's dead-letter queue read as drifted)."""
    policy = '{"Statement":[{"Action":"sqs:SendMessage"}]}'
    items, ignored = drift_report.drifted(
        drift_plan(
            rc("aws_sqs_queue.q", ["update"], {"policy": ""}, {"policy": policy}),
            config_types=("aws_sqs_queue_policy",),
        )
    )
    assert items == [] and [i["path"] for i in ignored] == ["policy"]
    items, _ = drift_report.drifted(drift_plan(rc("aws_sqs_queue.q", ["update"], {"policy": ""}, {"policy": policy})))
    assert [a["path"] for a in items[0]["attributes"]] == ["policy"], "without the policy resource it is drift"


def test_mirrored_attribute_counts_when_its_owner_is_not_in_the_config() -> None:
    """Without an aws_iam_role_policy in the config, a new inline policy IS drift."""
    items, _ = drift_report.drifted(
        drift_plan(rc("aws_iam_role.r", ["update"], {"inline_policy": []}, {"inline_policy": [{"name": "x"}]}))
    )
    assert [a["path"] for a in items[0]["attributes"]] == ["inline_policy[0].name"]


def test_drift_exit_codes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "drift.json"
    path.write_text(json.dumps(drift_plan()))
    assert drift_report.main([str(path)]) == 0
    assert "No drift" in capsys.readouterr().out
    path.write_text(json.dumps(drift_plan(rc("aws_sqs_queue.q", ["delete"], {}, None))))
    assert drift_report.main([str(path), "--json", str(tmp_path / "d.json")]) == 2
    assert json.loads((tmp_path / "d.json").read_text())["drifted"][0]["address"] == "aws_sqs_queue.q"


def test_values_the_config_lets_others_write_are_not_drift() -> None:
    """The kill switch has ``ignore_changes = [value]``: budget_shutdown writing it is by design."""
    config = {
        "resource": {
            "aws_ssm_parameter": {"kill": {"lifecycle": {"ignore_changes": ["value"]}}, "settings": {}},
        }
    }
    ignore = drift_report.ignored_attributes(config)
    assert ignore == {"aws_ssm_parameter.kill": {"value"}}
    items, ignored = drift_report.drifted(
        drift_plan(
            rc("aws_ssm_parameter.kill", ["update"], {"value": "off", "version": 1}, {"value": "on", "version": 2}),
            rc("aws_ssm_parameter.settings", ["update"], {"value": "a", "version": 1}, {"value": "b", "version": 2}),
        ),
        ignore,
    )
    assert [i["address"] for i in items] == ["aws_ssm_parameter.settings"]
    assert [a["path"] for a in items[0]["attributes"]] == ["value", "version"]
    assert {(i["address"], i["path"]) for i in ignored} == {
        ("aws_ssm_parameter.kill", "value"),
        ("aws_ssm_parameter.kill", "version"),
    }


def test_any_bucket_policy_or_network_rule_change_needs_review() -> None:
    tls = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [BUCKET_ARN], "Sid": "A"}
    renamed = dict(tls, Sid="B", Resource=[BUCKET_ARN, f"{BUCKET_ARN}/*"])
    result = review(
        plan(rc("aws_s3_bucket_policy.p", ["update"], {"policy": policy(tls)}, {"policy": policy(renamed)}))
    )
    assert result.policies[0]["widening"] == [] and result.verdict == "REVIEW"
    assert "**bucket policy changed**" in plan_review.markdown(result)
    rule = {"ip_protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_ipv4": "10.0.0.0/16"}
    moved = dict(rule, cidr_ipv4="10.1.0.0/16")
    result = review(plan(rc("aws_vpc_security_group_egress_rule.r", ["update"], rule, moved)))
    [row] = result.network
    assert row["added"] == ["egress tcp 443-443 10.1.0.0/16"] and row["removed"] == ["egress tcp 443-443 10.0.0.0/16"]
    assert row["flags"] == [] and result.verdict == "REVIEW"


STATEFUL_SAMPLE = [
    "aws_db_instance",
    "aws_rds_cluster",
    "aws_efs_file_system",
    "aws_dynamodb_table",
    "aws_kms_key",
    "aws_s3_bucket",
    "aws_secretsmanager_secret",
    "aws_ebs_volume",
    "aws_kinesis_stream",
    "aws_glacier_vault",
    "aws_backup_vault",
    "aws_opensearch_domain",
    "aws_elasticsearch_domain",
    "aws_cognito_user_pool",
    "aws_fsx_lustre_file_system",
    "aws_redshift_cluster",
    "aws_elasticache_replication_group",
    "aws_docdb_cluster",
    "aws_msk_cluster",
    "aws_mq_broker",
    "aws_acm_certificate",
    "aws_route53_zone",
    "aws_eip",
    "aws_timestreamwrite_table",
    "aws_qldb_ledger",
]


def test_every_schema_type_has_a_class_from_the_committed_rule() -> None:
    """The committed table equals what the rule gives the mirrored provider's own schema, type for type."""
    from tools import resource_classes

    if not (resource_classes.REPO / "build" / "terraformrc").exists():
        pytest.skip("needs build/terraformrc (the provider mirror's CLI config): run `make setup` first")

    version, types = resource_classes.schema_types()
    committed = resource_classes.table()
    assert (committed["provider"], committed["version"]) == (resource_classes.PROVIDER, version)
    assert sorted(committed["classes"]) == types and len(types) > 1400
    assert set(committed["classes"].values()) <= {"stateful", "stateless", "unknown"}
    assert committed == resource_classes.generate(version, types), "run `python -m tools.resource_classes`"


def test_destroying_any_stateful_type_blocks() -> None:
    changes = [rc(f"{t}.x", ["delete"], {}, None) for t in STATEFUL_SAMPLE]
    result = review(plan(*changes))
    assert result.verdict == "BLOCKING"
    assert sorted(f["address"].split(".")[0] for f in result.blocking) == sorted(STATEFUL_SAMPLE)


def test_unclassified_and_foreign_types_need_review_never_pass() -> None:
    foreign = rc("google_sql_database_instance.db", ["delete"], {}, None)
    foreign["provider_name"] = "registry.terraform.io/hashicorp/google"
    unknown = rc("aws_network_interface.eni", ["create", "delete"], {}, {})
    stateless = rc("aws_iam_role_policy.p", ["delete"], {}, None)
    result = review(plan(foreign, unknown, stateless))
    assert result.verdict == "REVIEW" and not result.blocking
    assert {f["address"] for f in result.unclassified} == {
        "google_sql_database_instance.db",
        "aws_network_interface.eni",
    }
    assert all("unclassified type" in f["why"] for f in result.unclassified)
    assert "unclassified type google\\_sql\\_database\\_instance" in plan_review.markdown(result)


def test_every_action_terraform_can_plan_has_its_section() -> None:
    moved = rc("aws_sqs_queue.new", ["no-op"], {}, {})
    moved["previous_address"] = "aws_sqs_queue.old"
    imported = rc("aws_s3_bucket.adopted", ["no-op"], {}, {}, change={"importing": {"id": "legacy-bucket"}})
    forgotten = rc("aws_kms_key.kept", ["forget"], {}, None)
    tainted = rc("aws_sqs_queue.t", ["delete", "create"], {}, {})
    tainted["action_reason"] = "replace_because_tainted"
    requested = rc("aws_sns_topic.r", ["create", "delete"], {}, {})
    requested["action_reason"] = "replace_by_request"
    shrunk = rc("aws_sns_topic.n[1]", ["delete"], {}, None)
    shrunk["action_reason"] = "delete_because_count_index"
    deferred = dict(rc("aws_iam_policy_document.d", ["read"], None, {}), mode="data")
    deferred["action_reason"] = "read_because_config_unknown"
    p = plan(moved, imported, forgotten, tainted, requested, shrunk, deferred)
    p["output_changes"] = {
        "secret": {
            "actions": ["update"],
            "before": "a",
            "after": "b",
            "before_sensitive": True,
            "after_sensitive": True,
        },
        "url": {"actions": ["create"], "before": None, "after": None, "after_unknown": True},
        "same": {"actions": ["no-op"], "before": 1, "after": 1},
    }
    p["resource_drift"] = [rc("aws_sqs_queue.x", ["update"], {"a": 1}, {"a": 2})]
    result = review(p)
    counts = {k: v for k, v in result.counts.items() if v}
    assert counts == {"replace": 2, "destroy": 1, "forget": 1, "move": 1, "import": 1, "read": 1}
    assert result.moves == [{"from": "aws_sqs_queue.old", "to": "aws_sqs_queue.new"}]
    assert result.imports == [{"address": "aws_s3_bucket.adopted", "id": "legacy-bucket"}]
    assert [(f["address"], f["stateful"]) for f in result.forgets] == [("aws_kms_key.kept", True)]
    reasons = {c["address"]: c.get("reason") for c in result.changes}
    assert reasons["aws_sqs_queue.t"] == "tainted" and reasons["aws_sns_topic.r"] == "requested with -replace"
    assert reasons["aws_sns_topic.n[1]"] == "count shrank"
    assert result.deferred_reads == [
        {"address": "aws_iam_policy_document.d", "reason": "config known only after apply"}
    ]
    assert result.outputs == [
        {"name": "secret", "action": "change", "before": "(sensitive)", "after": "(sensitive)"},
        {"name": "url", "action": "add", "before": None, "after": "(known after apply)"},
    ]
    assert result.drift == [{"address": "aws_sqs_queue.x", "actions": ["update"]}]
    text = plan_review.markdown(result)
    for heading in ("### Forgotten", "### Moved", "### Imported", "### Outputs", "### Data sources read", "### Drift"):
        assert heading in text
    assert "orphaned and still billed" in text and "`b`" not in text  # the sensitive value never shows
    assert result.verdict == "BLOCKING"  # the tainted SQS queue (stateful) is replaced
    assert review(plan(forgotten)).verdict == "REVIEW"  # a stateful resource left orphaned needs a reviewer


def test_json_report_lists_every_finding_with_rule_and_address(tmp_path: Path) -> None:
    stateful = rc("aws_dynamodb_table.t", ["delete"], {}, None)
    unknown = rc("aws_network_interface.e", ["delete"], {}, None)
    widened = rc(
        "aws_iam_role_policy.p",
        ["update"],
        {"policy": policy(allow(["s3:GetObject"], [BUCKET_ARN]))},
        {"policy": policy(allow(["s3:*"], ["*"]))},
    )
    code, summary, _ = run_main(tmp_path, plan(stateful, unknown, widened))
    assert code == 2
    rules = {(f["rule"], f["address"]) for f in summary["findings"]}
    assert rules == {
        ("stateful-destroy", "aws_dynamodb_table.t"),
        ("unclassified-destroy", "aws_network_interface.e"),
        ("iam-widening", "aws_iam_role_policy.p"),
    }
    assert (tmp_path / "r.part-1.md").read_text() == (tmp_path / "r.md").read_text()


def test_one_redaction_applies_sensitive_marks_at_any_depth() -> None:
    value = {"a": ["x", {"k": "secret"}], "doc": '{"ExternalId": "secret"}', "n": 1, "m": {"deep": ["s"]}}
    marks = {"a": [False, {"k": True}], "doc": True, "m": {"deep": [True]}}
    assert plan_review.redact(value, marks) == {
        "a": ["x", {"k": "(sensitive)"}],
        "doc": "(sensitive)",
        "n": 1,
        "m": {"deep": ["(sensitive)"]},
    }
    assert plan_review.redact("secret", {"any": True}) == "(sensitive)", "a partly marked scalar is hidden whole"
    assert plan_review.redact(value, None) == value and plan_review.redact(value, False) == value


def test_drift_and_prior_state_values_are_redacted() -> None:
    drift = rc("aws_ssm_parameter.p", ["update"], {"value": "old"}, {"value": "new-secret"})
    drift["change"].update(before_sensitive={"value": True}, after_sensitive={"value": True})
    items, ignored = drift_report.drifted(drift_plan(drift))
    assert "new-secret" not in json.dumps([items, ignored]) and "new-secret" not in drift_report.markdown("t", items)


def test_escaping_makes_plan_text_inert() -> None:
    esc = plan_review.esc
    assert esc("a|b") == "a\\|b" and esc("<!--") == "\\<\\!--" and esc("`x`") == "\\`x\\`"
    assert esc("@octocat #12") == "\\@\u200boctocat \\#\u200b12"
    assert esc("a\nb\u202ec\x1b") == "a\\\\nb\\\\u202ec\\\\u001b"
    assert esc("::error::x", markdown=False) == "::error::x" and "\n" not in esc("x\n::error::y", markdown=False)
    assert esc("v" * 1000, limit=10) == "vvvvvvvvvv... \\(1,000 chars\\)"
    assert esc({"k": ["v"]}) == '\\{"k": \\["v"\\]\\}'


@pytest.mark.parametrize("name", ["aws", "hashicorp/aws", "registry.terraform.io/-/aws", "-/aws", None])
def test_legacy_provider_names_map_to_the_same_classes(name: str | None) -> None:
    from tools import resource_classes

    assert resource_classes.classify("aws_db_instance", name) == "stateful"
    assert resource_classes.classify("aws_iam_role_policy", name) == "stateless"
    assert resource_classes.classify("aws_db_instance", "registry.terraform.io/evil/aws") == "unknown"


def test_every_stateless_family_has_its_reason_and_data_holders_are_stateful() -> None:
    from tools import resource_classes

    assert all(len(reason) > 40 for reason in resource_classes.STATELESS_FAMILY_REASONS)
    for type_ in (
        "aws_eks_cluster",
        "aws_emr_cluster",
        "aws_mwaa_environment",
        "aws_organizations_organization",
        "aws_dx_connection",
        "aws_cloudwatch_log_stream",
        "aws_glue_registry",
        "aws_swf_domain",
    ):
        assert resource_classes.classify(type_) == "stateful" and resource_classes.rule_class(type_) == "stateful"
    classes = resource_classes.table()["classes"]
    assert all(classes[t] == "stateful" for t in resource_classes.STATEFUL_TYPES)


def test_the_ci_artifact_holds_no_plan_json_or_binary_plan() -> None:
    workflow = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / ".github/workflows/pull-request.yml").read_text()
    )
    steps = workflow["jobs"]["plan"]["steps"]
    [upload] = [s for s in steps if "upload-artifact" in s.get("uses", "")]
    paths = upload["with"]["path"].split("\n")
    paths = [p.strip() for p in paths if p.strip()]
    assert sorted(Path(p).name for p in paths) == ["plan.txt", "review.json", "review.md"]
    plan_step = next(s for s in steps if s.get("id") == "plan")
    assert 'FAIL_ON="$FAIL_ON"' in plan_step["run"] and "review" in workflow["jobs"]["plan"]["env"]["FAIL_ON"]


def _mutations():
    from hypothesis import strategies as st

    leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    junk = st.recursive(
        leaf,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
        max_leaves=6,
    )
    return st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), junk), min_size=1, max_size=3)


def _nodes(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, (*path, i))


def test_broken_structure_is_one_line_never_a_traceback(tmp_path_factory) -> None:
    """Fuzz: any node of a rich plan replaced by any JSON value gives a review or one error line, exit 1."""
    from hypothesis import HealthCheck, given, settings

    from tests.plans import hostile

    base = hostile.cases()["injection-pr-text"]
    base["resource_changes"] += hostile.cases()["update-retention-cut"]["resource_changes"]
    base["deferred_changes"] = hostile.cases()["incomplete-deferred-db-destroy"]["deferred_changes"]
    paths = [p for p in _nodes(base) if p]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_mutations())
    def check(mutations) -> None:
        import copy
        import io
        from contextlib import redirect_stderr

        plan = copy.deepcopy(base)
        for index, junk in mutations:
            path = paths[index % len(paths)]
            node = plan
            try:
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = junk
            except (KeyError, IndexError, TypeError):
                continue
        folder = tmp_path_factory.mktemp("fuzz")
        (folder / "plan.json").write_text(json.dumps(plan))
        err = io.StringIO()
        with redirect_stderr(err):
            code = plan_review.main([str(folder / "plan.json"), "--markdown", str(folder / "r.md")])
        assert code in (0, 1, 2)
        if code == 1:
            lines = err.getvalue().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), lines

    check()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--max-parts", "-1"], "--max-parts must be 1 or more"),
        (["--max-parts", "0"], "--max-parts must be 1 or more"),
        (["--approvals", "."], "is a folder; pass the plan-approvals.yaml file"),
    ],
)
def test_bad_options_are_one_line_that_says_what_to_pass(args: list[str], says: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan(rc("aws_sqs_queue.q", ["create"], None, {"name": "q"}))))
    code = plan_review.main([str(path), "--markdown", str(tmp_path / "r.md"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and says in err
