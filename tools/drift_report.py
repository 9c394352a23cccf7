"""Summarise drift from a refresh-only plan: which resources changed outside Terraform, and how.

    python -m tools.drift_report drift.json [--config cdk.tf.json] [--markdown drift.md] [--json summary.json]

``drift.json`` is ``terraform show -json`` of a ``plan -refresh-only`` file. Exit code 2 when
something drifted, 0 when nothing did, 1 on unreadable input. Imports nothing of the CDKTF app.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tools import cli
from tools.plan_review import PlanError, config_resources, esc, load_plan, sanitized
from tools.plan_review import drift_flatten as flatten

MAX_VALUE = 80
# Falsy values a provider writes back on refresh for an attribute that was never set.
EMPTY = (None, "", False, 0, {}, [])

# Attributes that only mirror a separate resource of the configuration: the provider fills them
# on refresh from that resource (e.g. a role's ``inline_policy`` from its ``aws_iam_role_policy``).
# A real change shows up as drift of the separate resource itself, so here they are noise.
MIRRORS: dict[str, dict[str, tuple[str, ...]]] = {
    "aws_iam_role": {
        "inline_policy": ("aws_iam_role_policy",),
        "managed_policy_arns": ("aws_iam_role_policy_attachment",),
    },
    "aws_route_table": {"route": ("aws_route",)},
    "aws_security_group": {
        "ingress": ("aws_security_group_rule", "aws_vpc_security_group_ingress_rule"),
        "egress": ("aws_security_group_rule", "aws_vpc_security_group_egress_rule"),
    },
    "aws_s3_bucket": {
        "lifecycle_rule": ("aws_s3_bucket_lifecycle_configuration",),
        "server_side_encryption_configuration": ("aws_s3_bucket_server_side_encryption_configuration",),
        "versioning": ("aws_s3_bucket_versioning",),
        "logging": ("aws_s3_bucket_logging",),
        "replication_configuration": ("aws_s3_bucket_replication_configuration",),
        "policy": ("aws_s3_bucket_policy",),
        "acl": ("aws_s3_bucket_acl",),
        "grant": ("aws_s3_bucket_acl",),
        "object_lock_configuration": ("aws_s3_bucket_object_lock_configuration",),
    },
    "aws_sns_topic": {"policy": ("aws_sns_topic_policy",)},
    "aws_sqs_queue": {"policy": ("aws_sqs_queue_policy",)},
    "aws_eip": {
        key: ("aws_nat_gateway", "aws_eip_association")
        for key in ("association_id", "network_interface", "private_ip", "private_dns", "instance")
    },
}


def _short(value: Any) -> str:
    return esc(value, limit=MAX_VALUE)


# Computed attributes that only count changes of another one (an SSM parameter's ``version`` goes
# up with every write of ``value``): ignored wherever that attribute's changes are ignored.
FOLLOWS = {"aws_ssm_parameter": {"version": "value"}}


def ignored_attributes(config: dict) -> dict[str, set[str]]:
    """Address -> ``lifecycle.ignore_changes`` of a JSON config: values the stack lets others write."""
    return {
        f"{kind}.{name}": set((body.get("lifecycle") or {}).get("ignore_changes") or [])
        for kind, items in (config.get("resource") or {}).items()
        for name, body in items.items()
        if (body.get("lifecycle") or {}).get("ignore_changes")
    }


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def drifted(plan: dict, ignore_changes: dict[str, set[str]] | None = None) -> tuple[list[dict], list[dict]]:
    """Resources changed outside Terraform with the attributes that differ, and the ignored noise.

    Noise: an empty value turning into another empty value, attributes that mirror a separate
    resource of the same configuration (see ``MIRRORS``), and attributes the configuration lets
    others change (``ignore_changes``, e.g. the kill switch the budget shutdown writes).
    """
    ignore_changes = ignore_changes or {}
    plan = sanitized(plan)
    root = (plan.get("configuration") or {}).get("root_module") or {}
    configured = {r["type"] for r in config_resources(root).values()}
    found, ignored = [], []
    for rc in plan.get("resource_drift", []):
        change = rc["change"]
        if change["actions"] == ["delete"] or change.get("after") is None:
            found.append({"address": rc["address"], "kind": "deleted outside Terraform", "attributes": []})
            continue
        mirrors = {attr for attr, owners in MIRRORS.get(rc["type"], {}).items() if configured.intersection(owners)}
        let_go = ignore_changes.get(rc["address"], set())
        mirrors |= let_go | {attr for attr, source in FOLLOWS.get(rc["type"], {}).items() if source in let_go}
        before, after = flatten(change.get("before") or {}), flatten(change.get("after") or {})
        attributes = []
        for path in sorted(set(before) | set(after)):
            old, new = before.get(path), after.get(path)
            if old == new:
                continue
            row = {"path": path, "recorded": old, "actual": new}
            noise = (old in EMPTY and new in EMPTY) or _top(path) in mirrors
            (ignored if noise else attributes).append(dict(row, address=rc["address"]) if noise else row)
        if attributes:
            found.append({"address": rc["address"], "kind": "changed outside Terraform", "attributes": attributes})
    return found, ignored


def markdown(title: str, items: list[dict]) -> str:
    if not items:
        return f"## Drift: {esc(title)}\n\nNo drift: the real resources match the recorded state.\n"
    out = [f"## Drift: {esc(title)}", "", f"**{len(items)} resource(s) drifted.**", ""]
    for item in items:
        out.append(f"- {esc(item['address'])}: {item['kind']}")
        out += [
            f"  - {esc(a['path'])}: recorded {_short(a['recorded'])}, actual {_short(a['actual'])}"
            for a in item["attributes"]
        ]
    out += ["", "Fix: `make deploy ENV=<env>` puts the recorded configuration back, or change the code to match."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drift_report", description=__doc__.split("\n")[0])
    parser.add_argument("plan", type=Path, help="terraform show -json of a refresh-only plan")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--title")
    parser.add_argument("--config", type=Path, help="the stack's cdk.tf.json, for lifecycle.ignore_changes")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    config = json.loads(args.config.read_text()) if args.config else {}
    items, ignored = drifted(plan, ignored_attributes(config))
    report = markdown(args.title or args.plan.resolve().parent.name, items)
    report += (
        f"\n{len(ignored)} refresh-only difference(s) ignored as noise "
        "(empty values, mirrored attributes, ignore_changes).\n"
    )
    if args.markdown:
        args.markdown.write_text(report)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"drifted": items, "ignored": ignored}, indent=2) + "\n")
    return 2 if items else 0


if __name__ == "__main__":
    cli.run(main)
