"""Write the hand-made hostile and broken plans of the corpus: what no emulator run produces.

    python -m tests.plans.hostile        # (re)writes tests/plans/hand/<case>.json

Each is the smallest ``terraform show -json`` shape (developer.hashicorp.com/terraform/internals/
json-format) that shows one attack or breakage of issue 28: refusals (state, errored, not
applyable, incomplete, format 2.x, broken structure), unknown and forget actions, deferred
changes, legacy provider names, stateful families, data-losing updates, sensitive values marked
inside attributes, and PR text that would hide the review. What the review must say of each is
written by hand in ``tests/plans/expected.json``. ``big_plan`` makes the 20,000-change plan at
test time (too big to commit).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "hand"
AWS = "registry.terraform.io/hashicorp/aws"
# Strings that appear only under a sensitive mark: no output of the review may contain them.
SECRETS = (
    "XID-hand-7731",
    "198.51.100.23/32",
    "arn:aws:execute-api:eu-north-1:111111111111:secretapi",
    "s3cr3t-output-hand",
    "drift-secret-hand",
    "prior-secret-hand",
    "planned-secret-hand",
    "condition-secret-hand",
    "SECRET-CIDR-LEAK-hand",
    "scalar-under-partial-mark-hand",
)


def rc(address: str, actions: list[str], before=None, after=None, *, provider: str = AWS, **extra) -> dict:
    type_, name = address.split("[")[0].split(".")[-2:]
    change = {"actions": actions, "before": before, "after": after, "after_unknown": {}}
    change.update(extra.pop("change", {}))
    return {
        "address": address,
        "mode": "managed",
        "type": type_,
        "name": name,
        "provider_name": provider,
        "change": change,
        **extra,
    }


def plan(*changes: dict, **top) -> dict:
    return {
        "format_version": "1.2",
        "terraform_version": "1.11.4",
        "applyable": True,
        "complete": True,
        "errored": False,
        "resource_changes": list(changes),
        "planned_values": {"root_module": {"resources": []}},
        "configuration": {"root_module": {"resources": []}},
        **top,
    }


DB = rc("aws_db_instance.main", ["delete"], {"identifier": "main"}, None)
QUEUE = rc("aws_sqs_queue.q", ["create"], None, {"name": "q"})


def broken(path: list, value) -> dict:
    """A valid plan with the node at ``path`` replaced (``...`` removes it)."""
    p = plan(copy.deepcopy(QUEUE))
    p["resource_drift"] = [rc("aws_sqs_queue.q", ["update"], {"name": "q"}, {"name": "q2"})]
    node = p
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return p


def sensitive() -> dict:
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": SECRETS[0]}},
                }
            ],
        }
    )
    bucket_policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/*",
                    "Condition": {"StringEquals": {"aws:Referer": SECRETS[7]}},
                }
            ],
        }
    )
    role = rc(
        "aws_iam_role.partner",
        ["create"],
        None,
        {"name": "partner", "assume_role_policy": trust},
        change={"after_sensitive": {"assume_role_policy": True}},
    )
    rule = rc(
        "aws_security_group_rule.office",
        ["create"],
        None,
        {"type": "ingress", "protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": [SECRETS[1]]},
        change={"after_sensitive": {"cidr_blocks": [True]}},
    )
    permission = rc(
        "aws_lambda_permission.api",
        ["create"],
        None,
        {"action": "lambda:InvokeFunction", "principal": "apigateway.amazonaws.com", "source_arn": SECRETS[2]},
        change={"after_sensitive": {"source_arn": True}},
    )
    policy = rc(
        "aws_s3_bucket_policy.b",
        ["update"],
        {"policy": bucket_policy.replace(SECRETS[7], "old")},
        {"policy": bucket_policy},
        change={"before_sensitive": {}, "after_sensitive": {"policy": True}},
    )
    p = plan(role, rule, permission, policy)
    p["variables"] = {"external_id": {"value": SECRETS[0]}}
    p["output_changes"] = {
        "nested": {
            "actions": ["update"],
            "before": {"a": ["x", "old"]},
            "after": {"a": ["x", SECRETS[3]]},
            "before_sensitive": {"a": [False, True]},
            "after_sensitive": {"a": [False, True]},
        }
    }
    p["resource_drift"] = [
        rc(
            "aws_ssm_parameter.p",
            ["update"],
            {"value": "old", "name": "p"},
            {"value": SECRETS[4], "name": "p"},
            change={"before_sensitive": {"value": True}, "after_sensitive": {"value": True}},
        )
    ]
    p["prior_state"] = {
        "format_version": "1.0",
        "values": {
            "root_module": {
                "resources": [
                    {
                        "address": "aws_ssm_parameter.p",
                        "type": "aws_ssm_parameter",
                        "values": {"value": SECRETS[5]},
                        "sensitive_values": {"value": True},
                    }
                ]
            }
        },
    }
    p["planned_values"]["root_module"]["resources"] = [
        {
            "address": "aws_batch_job_definition.j",
            "type": "aws_batch_job_definition",
            "values": {"name": SECRETS[6], "container_properties": "{}"},
            "sensitive_values": {"name": True},
        }
    ]
    return p


HOSTILE_KEY = 'aws_sqs_queue.q["a|b` @octocat #12 ::error file=x::pwned \u202eevil\u202c <details> <!-- x"]'


def injection() -> dict:
    """Keys, ids, paths and outputs that would hide or fold the review, ping people or run workflow commands."""
    keyed = rc(HOSTILE_KEY, ["create"], None, {"name": "q"})
    imported = rc(
        'aws_s3_bucket.adopted["</details>\\n## Verdict: ok"]',
        ["no-op"],
        {},
        {},
        change={"importing": {"id": "x\n```\n@everyone\n::add-mask::\n<!--"}},
    )
    replaced = rc(
        "aws_sqs_queue.r",
        ["delete", "create"],
        {"name": "r"},
        {"name": "r2"},
        change={"replace_paths": [["name`|@admin"], ["tags", "</table>"]]},
    )
    moved = rc("aws_sns_topic.new", ["no-op"], {}, {}, previous_address="aws_sns_topic.old\n::error::moved")
    p = plan(keyed, imported, replaced, moved)
    p["output_changes"] = {
        "note": {"actions": ["create"], "before": None, "after": "ok\n<!--\n\n### fake section\n```"},
        "folded": {"actions": ["create"], "before": None, "after": "<details><summary>x</summary>"},
        "mention`": {"actions": ["create"], "before": None, "after": "`@octocat` and @org/team, see #1 &#64;x"},
        "html": {"actions": ["create"], "before": None, "after": "<img src=x onerror=alert(1)>[click](javascript:x)"},
        "links": {
            "actions": ["create"],
            "before": None,
            "after": "https://evil.example/login www.evil.example GH-12 3f2a9c1d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1 "
            "https://github.com/o/r/issues/1 mailto:a@b.example",
        },
        "www.evil.example/https://x.example GH-7": {"actions": ["create"], "before": None, "after": "ok"},
    }
    p["resource_drift"] = [rc("aws_sqs_queue.d", ["update"], {"a": 1}, {"a": "\n::warning::drift"})]
    return p


def cost_injection() -> dict:
    """A Lambda whose FAN_OUT (what ``pipeline_ops.cost --append`` prices) carries text that would fold
    the comment, ping people or run a workflow command."""
    step = {"images_per_second": 500.0, "on_demand_usd_per_hour": 0.0924, "per_shard": False, "usd_per_hour": 0.0323}
    fan_out = {
        "concurrency": 25,
        "execution_timeout_seconds": 7200,
        "fleet_start_seconds": 420,
        "images_per_shard": 1000,
        "job_overhead_seconds": 90,
        "margin_seconds": 720,
        "price_date": "x\n::error::pwned",
        "reserve_seconds": 960,
        "retry_interval_seconds": 30,
        "steps": [
            dict(step, name="stage0 <details><summary>x</summary> @octocat", throughput_source="<!-- hide"),
            dict(step, name="stage1 https://evil.example/login", per_shard=True, throughput_source="GH-12"),
        ],
    }
    values = {"function_name": "plan", "environment": [{"variables": {"FAN_OUT": json.dumps(fan_out)}}]}
    p = plan(rc("aws_lambda_function.plan", ["create"], None, values))
    p["planned_values"]["root_module"]["resources"] = [
        {"address": "aws_lambda_function.plan", "mode": "managed", "type": "aws_lambda_function", "values": values}
    ]
    return p


def long_value() -> dict:
    p = plan(rc("aws_ssm_parameter.big", ["create"], None, {"name": "big", "value": "v" * 100_000}))
    p["output_changes"] = {"big": {"actions": ["create"], "before": None, "after": "x" * 100_000}}
    return p


def big_plan(count: int = 20_000, blocking: int = 12, review: int = 30) -> dict:
    """``count`` changes in 40 modules: mostly creates, ``blocking`` stateful destroys and ``review``
    unclassified destroys spread over them; long for_each keys as real plans have."""
    changes = []
    for i in range(count):
        module = f"module.site_{i % 40}"
        if i < blocking:
            changes.append(rc(f'{module}.aws_s3_bucket.data["{i}"]', ["delete"], {"bucket": f"b{i}"}, None))
        elif i < blocking + review:
            changes.append(rc(f'{module}.aws_network_interface.eni["{i}"]', ["delete"], {"id": f"eni-{i}"}, None))
        else:
            key = f"camera-trap-{i:06d}-" + "k" * 40
            changes.append(rc(f'{module}.aws_sqs_queue.q["{key}"]', ["create"], None, {"name": f"q{i}"}))
        changes[-1]["module_address"] = module
    return plan(*changes)


def cases() -> dict[str, dict]:
    state = {"format_version": "1.0", "terraform_version": "1.11.4", "values": {"root_module": {"resources": []}}}
    deferred_db = rc("aws_db_instance.main", ["delete"], {"identifier": "main"}, None)
    return {
        "refuse-errored": plan(QUEUE, errored=True, applyable=False, complete=False),
        "refuse-not-applyable": plan(QUEUE, applyable=False),
        "refuse-format-2": dict(plan(QUEUE), format_version="2.0"),
        "refuse-state": state,
        "refuse-top-level-list": [plan(QUEUE)],
        # `terraform show -json` with no plan file in an empty directory prints exactly this.
        "refuse-show-no-plan": {"format_version": "1.0"},
        "refuse-outputs-only": {
            "format_version": "1.2",
            "output_changes": {"x": {"actions": ["create"], "before": None, "after": "y", "after_unknown": False}},
        },
        "broken-resource-changes-null": broken(["resource_changes"], None),
        "broken-resource-changes-dict": broken(["resource_changes"], {"aws_sqs_queue.q": QUEUE}),
        "broken-entry-no-change": broken(["resource_changes", 0, "change"], ...),
        "broken-entry-no-actions": broken(["resource_changes", 0, "change", "actions"], ...),
        "broken-entry-no-type": broken(["resource_changes", 0, "type"], ...),
        "broken-entry-no-address": broken(["resource_changes", 0, "address"], ...),
        "broken-actions-string": broken(["resource_changes", 0, "change", "actions"], "create"),
        "broken-drift-no-change": broken(["resource_drift", 0, "change"], ...),
        "broken-after-string": broken(["resource_changes", 0, "change", "after"], "q"),
        "incomplete-deferred-db-destroy": plan(
            QUEUE,
            complete=False,
            deferred_changes=[{"reason": "resource_config_unknown", "resource_change": deferred_db}],
        ),
        "unknown-action-purge": plan(rc("aws_sqs_queue.q", ["purge"], {"name": "q"}, None)),
        "create-then-forget-key": plan(rc("aws_kms_key.k", ["create", "forget"], {"key_id": "1"}, {})),
        "legacy-provider-short": plan(dict(DB, provider_name="aws")),
        "legacy-provider-dash": plan(dict(DB, provider_name="registry.terraform.io/-/aws")),
        "legacy-provider-no-host": plan(dict(DB, provider_name="hashicorp/aws")),
        "stateful-families-destroyed": plan(
            *(
                rc(f"{t}.x", ["delete"], {"id": "x"}, None)
                for t in (
                    "aws_eks_cluster",
                    "aws_emr_cluster",
                    "aws_mwaa_environment",
                    "aws_organizations_organization",
                    "aws_dx_connection",
                )
            )
        ),
        # Destroys that lose findings, whole stacks, identities, generated secrets or delegated name servers.
        "losing-destroys-misclassed": plan(
            *(
                rc(f"{t}.x", ["delete"], {"id": "x"}, None)
                for t in (
                    "aws_guardduty_detector",
                    "aws_detective_graph",
                    "aws_securityhub_account",
                    "aws_macie2_account",
                    "aws_ssmincidents_replication_set",
                    "aws_cloudformation_stack",
                    "aws_servicecatalog_provisioned_product",
                    "aws_iam_role",
                    "aws_cognito_user_pool_client",
                    "aws_grafana_workspace_api_key",
                    "aws_wafv2_api_key",
                    "aws_service_discovery_public_dns_namespace",
                    "aws_route53_delegation_set",
                )
            )
        ),
        # Sensitivity marks not of the value's shape: a map of marks on a list, a partial mark on a scalar.
        "marks-of-another-shape": dict(
            plan(
                rc(
                    "aws_security_group_rule.r",
                    ["create"],
                    None,
                    {"type": "ingress", "cidr_blocks": ["SECRET-CIDR-LEAK-hand"], "from_port": 1, "to_port": 1},
                    change={"after_sensitive": {"cidr_blocks": {"0": True}}},
                ),
            ),
            output_changes={
                "token": {
                    "actions": ["update"],
                    "before": "old",
                    "after": "scalar-under-partial-mark-hand",
                    "after_unknown": False,
                    "after_sensitive": {"part": True},
                }
            },
        ),
        "data-source-delete": plan(dict(DB, mode="data")),
        "output-unknown-action": dict(
            plan(),
            output_changes={"o": {"actions": ["purge"], "before": "a", "after": None, "after_unknown": False}},
        ),
        "opentofu-provider-destroy": plan(dict(DB, provider_name="registry.opentofu.org/hashicorp/aws")),
        "update-guards-off": plan(
            rc("aws_db_instance.db", ["update"], {"deletion_protection": True}, {"deletion_protection": False}),
            rc("aws_s3_bucket.b", ["update"], {"force_destroy": False}, {"force_destroy": True}),
            rc("aws_rds_cluster.c", ["update"], {"skip_final_snapshot": False}, {"skip_final_snapshot": True}),
            rc("aws_kms_key.k", ["update"], {"deletion_window_in_days": 30}, {"deletion_window_in_days": 7}),
            rc(
                "aws_s3_bucket_versioning.v",
                ["update"],
                {"versioning_configuration": [{"status": "Enabled"}]},
                {"versioning_configuration": [{"status": "Suspended"}]},
            ),
        ),
        "update-retention-cut": plan(
            rc("aws_cloudwatch_log_group.l", ["update"], {"retention_in_days": 0}, {"retention_in_days": 30}),
            rc("aws_db_instance.db", ["update"], {"backup_retention_period": 35}, {"backup_retention_period": 1}),
            rc(
                "aws_dynamodb_table.t",
                ["update"],
                {"point_in_time_recovery": [{"enabled": True}]},
                {"point_in_time_recovery": [{"enabled": False}]},
            ),
            rc(
                "aws_s3_bucket_lifecycle_configuration.lc",
                ["update"],
                {"rule": [{"id": "raw", "expiration": [{"days": 365}]}]},
                {"rule": [{"id": "raw", "expiration": [{"days": 7}]}]},
            ),
        ),
        "update-losses-missed": plan(
            rc(
                "aws_cognito_user_pool.p",
                ["update"],
                {"deletion_protection": "ACTIVE"},
                {"deletion_protection": "INACTIVE"},
            ),
            rc("aws_ecr_repository.r", ["update"], {"force_delete": False}, {"force_delete": True}),
            rc(
                "aws_secretsmanager_secret.s",
                ["update"],
                {"recovery_window_in_days": 30},
                {"recovery_window_in_days": 0},
            ),
            rc("aws_dynamodb_table.t", ["update"], {"ttl": [{"enabled": False}]}, {"ttl": [{"enabled": True}]}),
            rc(
                "aws_s3_bucket_lifecycle_configuration.off",
                ["update"],
                {"rule": [{"id": "raw", "status": "Disabled", "expiration": [{"days": 30}]}]},
                {"rule": [{"id": "raw", "status": "Enabled", "expiration": [{"days": 30}]}]},
            ),
            rc(
                "aws_s3_bucket_lifecycle_configuration.wide",
                ["update"],
                {
                    "rule": [
                        {"id": "tmp", "status": "Enabled", "filter": [{"prefix": "tmp/"}], "expiration": [{"days": 1}]}
                    ]
                },
                {"rule": [{"id": "tmp", "status": "Enabled", "filter": [{"prefix": ""}], "expiration": [{"days": 1}]}]},
            ),
            rc(
                "aws_s3_bucket_lifecycle_configuration.reordered",
                ["update"],
                {"rule": [{"id": "a", "expiration": [{"days": 7}]}, {"id": "b", "expiration": [{"days": 365}]}]},
                {
                    "rule": [
                        {"id": "b", "expiration": [{"days": 365}]},
                        {"id": "a", "expiration": [{"days": 7}]},
                        {"id": "c", "status": "Enabled"},
                    ]
                },
            ),
            rc(
                "aws_db_instance.db",
                ["update"],
                {"delete_automated_backups": False},
                {"delete_automated_backups": True},
            ),
            rc("aws_kms_key.k", ["update"], {"is_enabled": True}, {"is_enabled": False}),
            rc(
                "aws_cloudwatch_log_group.l",
                ["update"],
                {"retention_in_days": 365},
                {},
                change={"after_unknown": {"retention_in_days": True}},
            ),
        ),
        "update-retention-raised": plan(
            rc("aws_cloudwatch_log_group.l", ["update"], {"retention_in_days": 7}, {"retention_in_days": 0}),
            rc("aws_db_instance.db", ["update"], {"deletion_protection": False}, {"deletion_protection": True}),
        ),
        "sensitive-inside-attributes": sensitive(),
        "injection-pr-text": injection(),
        "long-values": long_value(),
        "cost-fan-out-injection": cost_injection(),
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, body in cases().items():
        (OUT / f"{name}.json").write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"hand: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
