"""Review a Terraform plan for a pull request: what changes, what is dangerous, what it costs.

    python -m tools.plan_review plan.json [--markdown review.md] [--json review.json] [--title T]
                                          [--allow-destroy ADDR,ADDR] [--prices conf/prices/eu-north-1.json]

``plan.json`` is ``terraform show -json <planfile>``. The review finds:

- counts of every action Terraform plans (add, change, replace, destroy, forget, move, import,
  deferred data read) and every changed address with its action and Terraform's reason (a
  replace because the resource cannot be updated, is tainted, was requested with ``-replace`` or
  by ``replace_triggered_by``; a destroy because its config, count/for_each key or module went);
- moves (old -> new address), imports, forgets (``removed`` blocks: a stateful resource left
  unmanaged needs review), output changes (sensitive values masked) and the plan's own drift;
- BLOCKING: destroy or replace of a stateful resource (data would be lost), unless each address
  is named in ``--allow-destroy`` or the ``ALLOW_DESTROY`` environment variable (exit code 2).
  Every type of the provider schema has a class (``tools/resource_classes.json``); a destroy or
  replace of an unclassified type, or of any other provider's type, needs review, never passes;
- IAM and resource-policy changes as statements added / removed, with widening ones flagged;
- security-group, public-access and bucket-policy changes;
- an estimated monthly cost delta and a per-job-hour Batch figure from a dated price table.

Works on any plan JSON; imports nothing of the CDKTF app. Exit codes: 0 reviewed, 2 blocking,
1 unreadable input.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conf.prices import job_hour_usd
from tools import cli, resource_classes

# The dated price table lives with the configuration (conf/prices/); any table of that shape works.
DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "conf" / "prices" / "eu-north-1.json"

# Why a destroy of these common stateful types hurts (the class itself comes from the table).
STATEFUL_REASONS = {
    "aws_s3_bucket": "S3 bucket: its objects are deleted with it",
    "aws_kms_key": "KMS key: everything encrypted with it becomes unreadable",
    "aws_kms_replica_key": "KMS replica key: replicated data becomes unreadable",
    "aws_dynamodb_table": "DynamoDB table: its items are deleted with it",
    "aws_ecr_repository": "ECR repository: its images are deleted with it",
    "aws_cloudwatch_log_group": "log group: its log events are deleted with it",
    "aws_efs_file_system": "EFS file system: its files are deleted with it",
    "aws_db_instance": "RDS instance: its data is deleted with it",
    "aws_rds_cluster": "RDS cluster: its data is deleted with it",
    "aws_secretsmanager_secret": "secret: its value is deleted with it",
    "aws_sqs_queue": "SQS queue: its pending messages are deleted with it",
}

# Where policy documents live: resource type -> attribute holding the JSON document.
POLICY_ATTRIBUTES = {
    "aws_iam_role": ("assume_role_policy",),
    "aws_iam_role_policy": ("policy",),
    "aws_iam_policy": ("policy",),
    "aws_iam_user_policy": ("policy",),
    "aws_iam_group_policy": ("policy",),
    "aws_s3_bucket_policy": ("policy",),
    "aws_sns_topic_policy": ("policy",),
    "aws_sns_topic": ("policy",),
    "aws_sqs_queue_policy": ("policy",),
    "aws_kms_key": ("policy",),
    "aws_ecr_repository_policy": ("policy",),
    "aws_cloudwatch_event_bus_policy": ("policy",),
    "aws_lambda_layer_version_permission": ("policy",),
}
RESOURCE_POLICY_TYPES = {
    "aws_s3_bucket_policy",
    "aws_sns_topic_policy",
    "aws_sns_topic",
    "aws_sqs_queue_policy",
    "aws_kms_key",
    "aws_ecr_repository_policy",
    "aws_cloudwatch_event_bus_policy",
}
NETWORK_TYPES = {
    "aws_security_group",
    "aws_security_group_rule",
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_network_acl",
    "aws_network_acl_rule",
}
PUBLIC_ACCESS_TYPES = {"aws_s3_bucket_public_access_block", "aws_s3_account_public_access_block", "aws_s3_bucket_acl"}
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}


ACTIONS = ("add", "change", "replace", "destroy", "forget", "move", "import", "read")


class PlanError(Exception):
    """The input is not a plan this tool can read; ``str()`` is the one-line message."""


@dataclass
class Review:
    title: str
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("add", "change", "replace", "destroy", "forget", "move", "import", "read"), 0
        )
    )
    changes: list[dict] = field(default_factory=list)
    blocking: list[dict] = field(default_factory=list)
    allowed: list[dict] = field(default_factory=list)
    unclassified: list[dict] = field(default_factory=list)
    moves: list[dict] = field(default_factory=list)
    imports: list[dict] = field(default_factory=list)
    forgets: list[dict] = field(default_factory=list)
    deferred_reads: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    unused_allowances: list[str] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)
    network: list[dict] = field(default_factory=list)
    cost: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.blocking:
            return "BLOCKING"
        # Every bucket-policy and network-rule change needs a reviewer, widening or not.
        flagged = any(p["widening"] or p["type"] == "aws_s3_bucket_policy" for p in self.policies)
        orphaned = any(f["stateful"] for f in self.forgets)
        return "REVIEW" if flagged or self.network or self.allowed or self.unclassified or orphaned else "OK"

    def findings(self) -> list[dict]:
        """Every finding with its rule id and address, for tools that consume the JSON report."""
        out = [{"rule": "stateful-destroy", "severity": "blocking", **f} for f in self.blocking]
        out += [{"rule": "stateful-destroy-allowed", "severity": "review", **f} for f in self.allowed]
        out += [{"rule": "unclassified-destroy", "severity": "review", **f} for f in self.unclassified]
        out += [
            {"rule": "forget-stateful", "severity": "review", "address": f["address"], "why": "left orphaned"}
            for f in self.forgets
            if f["stateful"]
        ]
        for policy in self.policies:
            if policy["widening"]:
                out.append(
                    {
                        "rule": "iam-widening",
                        "severity": "review",
                        "address": policy["address"],
                        "why": "; ".join(policy["widening"]),
                    }
                )
            elif policy["type"] == "aws_s3_bucket_policy":
                out.append(
                    {
                        "rule": "bucket-policy-change",
                        "severity": "review",
                        "address": policy["address"],
                        "why": "bucket policy changed",
                    }
                )
        out += [
            {"rule": "network-change", "severity": "review", "address": n["address"], "why": "; ".join(n["flags"])}
            for n in self.network
        ]
        return out

    def as_dict(self) -> dict:
        return {
            "title": self.title,
            "verdict": self.verdict,
            "counts": self.counts,
            "changes": self.changes,
            "blocking": self.blocking,
            "allowed_destroys": self.allowed,
            "unclassified_destroys": self.unclassified,
            "moves": self.moves,
            "imports": self.imports,
            "forgets": self.forgets,
            "deferred_reads": self.deferred_reads,
            "outputs": self.outputs,
            "drift": self.drift,
            "findings": self.findings(),
            "unused_allowances": self.unused_allowances,
            "policies": self.policies,
            "network": self.network,
            "cost": self.cost,
        }


def action_of(actions: list[str]) -> str | None:
    """Terraform's action list as one word; None for no-op and data-source reads."""
    match sorted(actions):
        case ["create"]:
            return "add"
        case ["update"]:
            return "change"
        case ["create", "delete"]:
            return "replace"
        case ["delete"]:
            return "destroy"
        case ["forget"]:
            return "forget"
    return None


# Terraform's action_reason values, as a reviewer reads them.
REASONS = {
    "replace_because_cannot_update": "cannot be updated in place",
    "replace_because_tainted": "tainted",
    "replace_by_request": "requested with -replace",
    "replace_by_triggers": "replace_triggered_by",
    "delete_because_no_resource_config": "removed from the configuration",
    "delete_because_wrong_repetition": "count/for_each changed form",
    "delete_because_count_index": "count shrank",
    "delete_because_each_key": "for_each key removed",
    "delete_because_no_module": "its module was removed",
    "delete_because_no_move_target": "moved out of scope",
    "read_because_config_unknown": "config known only after apply",
    "read_because_dependency_pending": "a dependency has pending changes",
    "read_because_check_nested": "read by a check block",
}


def _masked(value: Any, sensitive: Any) -> Any:
    return "(sensitive)" if sensitive is True else value


def plan_level_changes(plan: dict, result: Review) -> None:
    """Output changes (sensitive values masked) and the plan's resource_drift, beside the changes."""
    for name, change in sorted((plan.get("output_changes") or {}).items()):
        action = action_of(change.get("actions", []))
        if action:
            result.outputs.append(
                {
                    "name": name,
                    "action": action,
                    "before": _masked(change.get("before"), change.get("before_sensitive")),
                    "after": "(known after apply)"
                    if change.get("after_unknown") is True
                    else _masked(change.get("after"), change.get("after_sensitive")),
                }
            )
    for rc in plan.get("resource_drift") or []:
        result.drift.append({"address": rc["address"], "actions": rc["change"]["actions"]})


def load_plan(path: Path) -> dict:
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file; make it with `terraform show -json <planfile> > {path}`") from None
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno}); pass `terraform show -json` output"
        ) from None
    if not isinstance(plan, dict) or "format_version" not in plan or "terraform_version" not in plan:
        raise PlanError(f"{path}: not a Terraform plan (no format_version); pass `terraform show -json <planfile>`")
    return plan


# --- policies -------------------------------------------------------------------------------


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def normalise_statement(stmt: dict) -> dict:
    out: dict = {"Effect": stmt.get("Effect", "Allow")}
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        if key in stmt:
            out[key] = sorted(_as_list(stmt[key]))
    for key in ("Principal", "NotPrincipal"):
        if key in stmt:
            principal = stmt[key]
            out[key] = (
                {k: sorted(_as_list(v)) for k, v in sorted(principal.items())}
                if isinstance(principal, dict)
                else principal
            )
    if stmt.get("Condition"):
        out["Condition"] = stmt["Condition"]
    if stmt.get("Sid"):
        out["Sid"] = stmt["Sid"]
    return out


def statements(document: Any) -> list[dict] | None:
    """Normalised statements of a policy JSON string; None when the value is unknown until apply."""
    if document in (None, ""):
        return []
    if not isinstance(document, str):
        return None
    try:
        parsed = json.loads(document)
    except json.JSONDecodeError:
        return None
    return [normalise_statement(s) for s in _as_list(parsed.get("Statement"))]


def _key(stmt: dict) -> str:
    return json.dumps({k: v for k, v in stmt.items() if k != "Sid"}, sort_keys=True)


def _pairs(stmts: list[dict], effect: str) -> set[tuple[str, str]]:
    return {
        (action.lower(), resource)
        for s in stmts
        if s["Effect"] == effect
        for action in s.get("Action", [])
        for resource in s.get("Resource", ["*"] if "Principal" in s else [])
    }


def _covered(pair: tuple[str, str], by: set[tuple[str, str]]) -> bool:
    action, resource = pair
    return any(fnmatch.fnmatchcase(action, a) and fnmatch.fnmatchcase(resource, r) for a, r in by)


def _principals(stmt: dict) -> list[str]:
    principal = stmt.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return [f"{kind}:{value}" for kind, values in principal.items() for value in values]
    return []


def widening(before: list[dict], after: list[dict]) -> list[str]:
    """Why ``after`` grants more than ``before`` (wildcard-aware), one reason per finding."""
    reasons: list[str] = []
    before_keys = {_key(s) for s in before}
    for stmt in after:
        if stmt["Effect"] != "Allow" or _key(stmt) in before_keys:
            continue
        if any(a == "*" or a.endswith(":*") for a in stmt.get("Action", [])):
            reasons.append(f"new wildcard action {', '.join(stmt['Action'])}")
        if "*" in stmt.get("Resource", []):
            reasons.append(f'new Resource "*" for {", ".join(stmt.get("Action", stmt.get("NotAction", [])))}')
        if "NotAction" in stmt or "NotResource" in stmt:
            reasons.append("new Allow with NotAction/NotResource (allows everything not listed)")
        if "*" in _principals(stmt) or "AWS:*" in _principals(stmt):
            reasons.append('new Principal "*" (anyone)')
    old_allow, new_allow = _pairs(before, "Allow"), _pairs(after, "Allow")
    new_actions = sorted({a for a, r in new_allow if not _covered((a, r), old_allow)})
    if new_actions:
        reasons.append(f"new actions or resources for {', '.join(new_actions)}")
    old_principals = {p for s in before if s["Effect"] == "Allow" for p in _principals(s)}
    new_principals = sorted({p for s in after if s["Effect"] == "Allow" for p in _principals(s)} - old_principals)
    if new_principals:
        reasons.append(f"new principals {', '.join(new_principals)}")
    lost_denies = [p for p in _pairs(before, "Deny") if not _covered(p, _pairs(after, "Deny"))]
    if lost_denies:
        reasons.append(f"Deny removed for {', '.join(sorted({a for a, _ in lost_denies}))}")
    return list(dict.fromkeys(reasons))


def policy_changes(rc: dict, action: str, configured: set[str] | None = None) -> list[dict]:
    """Statements added/removed per policy document. ``configured``: attributes the config sets
    (None: unknown); an unknown document the config does not set is AWS's default, not ours."""
    change = rc["change"]
    before, after = change.get("before") or {}, change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    found = []
    documents: list[tuple[str, Any, Any, bool]] = [
        (attr, before.get(attr), after.get(attr), bool(unknown.get(attr)))
        for attr in POLICY_ATTRIBUTES.get(rc["type"], ())
    ]
    if rc["type"] == "aws_iam_role":
        old_inline = {p.get("name"): p.get("policy") for p in before.get("inline_policy") or []}
        new_inline = {p.get("name"): p.get("policy") for p in after.get("inline_policy") or []}
        documents += [
            (f"inline_policy[{name}]", old_inline.get(name), new_inline.get(name), False)
            for name in sorted(set(old_inline) | set(new_inline), key=str)
        ]
    for attr, old_doc, new_doc, is_unknown in documents:
        if old_doc == new_doc and not is_unknown:
            continue
        old, new = statements(old_doc), ([] if action == "destroy" else statements(new_doc))
        if is_unknown or new is None:
            if configured is not None and attr not in configured:
                continue
            found.append(_policy_row(rc, attr, action, [], [], ["policy known only after apply: review the source"]))
            continue
        old = old or []
        old_keys, new_keys = {_key(s) for s in old}, {_key(s) for s in new}
        added = [s for s in new if _key(s) not in old_keys]
        removed = [s for s in old if _key(s) not in new_keys]
        if added or removed:
            found.append(_policy_row(rc, attr, action, added, removed, widening(old, new)))
    if rc["type"] == "aws_iam_role_policy_attachment" and action in {"add", "replace", "destroy"}:
        arn = (after or before).get("policy_arn") or "(known after apply)"
        verb = "detached" if action == "destroy" else "attached"
        flag = [] if action == "destroy" else [f"managed policy {arn} attached"]
        found.append(_policy_row(rc, "policy_arn", action, [], [], flag, note=f"managed policy {verb}: {arn}"))
    if rc["type"] == "aws_lambda_permission" and action != "destroy":
        principal = after.get("principal")
        flag = ['Lambda invocable by "*"'] if principal == "*" else []
        if not after.get("source_arn") and principal and principal.endswith(".amazonaws.com"):
            flag.append(f"{principal} may invoke without a source_arn (any account's resource)")
        note = f"{after.get('action')} for {principal} from {after.get('source_arn') or 'any source'}"
        found.append(_policy_row(rc, "permission", action, [], [], flag, note=note))
    return found


def _policy_row(rc: dict, attr: str, action: str, added, removed, reasons, note: str = "") -> dict:
    kind = "resource policy" if rc["type"] in RESOURCE_POLICY_TYPES else "IAM"
    if rc["type"] == "aws_iam_role" and attr == "assume_role_policy":
        kind = "trust policy"
    return {
        "address": rc["address"],
        "type": rc["type"],
        "attribute": attr,
        "kind": kind,
        "action": action,
        "added": added,
        "removed": removed,
        "widening": reasons,
        "note": note,
    }


# --- network and public access ------------------------------------------------------------


def _rule_text(rule: dict, direction: str) -> str:
    cidrs = _as_list(rule.get("cidr_blocks")) + _as_list(rule.get("ipv6_cidr_blocks"))
    cidrs += [c for c in (rule.get("cidr_ipv4"), rule.get("cidr_ipv6")) if c]
    peers = cidrs + _as_list(rule.get("security_groups")) + _as_list(rule.get("prefix_list_ids"))
    peers += [p for p in (rule.get("referenced_security_group_id"), rule.get("source_security_group_id")) if p]
    ports = f"{rule.get('from_port')}-{rule.get('to_port')}"
    return f"{direction} {rule.get('protocol') or rule.get('ip_protocol')} {ports} {', '.join(map(str, peers)) or '-'}"


def _open_ingress(rule: dict) -> bool:
    cidrs = set(_as_list(rule.get("cidr_blocks")) + _as_list(rule.get("ipv6_cidr_blocks")))
    cidrs |= {rule.get("cidr_ipv4"), rule.get("cidr_ipv6")}
    return bool(cidrs & OPEN_CIDRS)


def _group_rules(values: dict) -> dict[str, dict]:
    return {_rule_text(r, d): r for d in ("ingress", "egress") for r in values.get(d) or []}


def network_changes(rc: dict, action: str) -> dict | None:
    change = rc["change"]
    before, after = change.get("before") or {}, change.get("after") or {}
    kind = rc["type"]
    if kind in PUBLIC_ACCESS_TYPES:
        flags = [
            f"{key} turned off"
            for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
            if before.get(key) and not after.get(key)
        ]
        if kind == "aws_s3_bucket_acl" and "public" in str(after.get("acl", "")):
            flags.append(f"bucket ACL {after.get('acl')}")
        return {"address": rc["address"], "action": action, "added": [], "removed": [], "flags": flags}
    if kind not in NETWORK_TYPES:
        return None
    if kind == "aws_security_group":
        old, new = _group_rules(before), _group_rules(after)
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        flags = [
            f"ingress open to the internet: {t}" for t in added if t.startswith("ingress") and _open_ingress(new[t])
        ]
    else:
        direction = (
            after.get("type")
            or before.get("type")
            or ("ingress" if "ingress" in kind else "egress" if "egress" in kind else "rule")
        )
        rule_after, rule_before = _rule_text(after, direction), _rule_text(before, direction)
        added = [] if action == "destroy" else [rule_after]
        removed = [] if action == "add" else [rule_before]
        if added == removed:
            added = removed = []
        flags = (
            [f"ingress open to the internet: {rule_after}"] if direction == "ingress" and _open_ingress(after) else []
        )
    return {"address": rc["address"], "action": action, "added": added, "removed": removed, "flags": flags}


# --- cost ------------------------------------------------------------------------------------


def config_resources(module: dict) -> dict[str, dict]:
    """Address -> resource of a plan's ``configuration`` module, child modules included."""
    found = {r["address"]: r for r in module.get("resources", [])}
    for call in (module.get("module_calls") or {}).values():
        found |= config_resources(call.get("module") or {})
    return found


def _referenced(expression: dict | None) -> int:
    """How many distinct resources an expression refers to (``aws_subnet.a.id`` and ``aws_subnet.a`` count once)."""
    refs = (expression or {}).get("references") or []
    return len({".".join(r.split(".")[:2]) for r in refs if not r.startswith(("var.", "local."))})


def monthly_cost(rc_type: str, values: dict, config: dict, prices: dict) -> tuple[float, str] | None:
    """Estimated monthly USD of one resource and how it was counted; None when it has no fixed price."""
    hours = prices["hours_per_month"]
    hourly, monthly = prices["hourly"], prices["monthly"]
    if rc_type == "aws_nat_gateway":
        return hours * hourly["nat_gateway"], f"{hours} h x {hourly['nat_gateway']} (data processed not included)"
    if rc_type == "aws_vpc_endpoint" and values.get("vpc_endpoint_type") == "Interface":
        subnets = values.get("subnet_ids")
        azs = (
            len(subnets)
            if isinstance(subnets, list) and subnets
            else _referenced((config.get("expressions") or {}).get("subnet_ids")) or 1
        )
        rate = hourly["interface_endpoint_per_az"]
        return hours * rate * azs, f"{azs} AZ x {hours} h x {rate}"
    if rc_type in {"aws_kms_key", "aws_kms_replica_key"}:
        return monthly["kms_key"], "1 key-month"
    if rc_type == "aws_cloudwatch_metric_alarm":
        if values.get("threshold_metric_id"):
            return monthly["cloudwatch_alarm_anomaly_detection"], "anomaly-detection alarm"
        metrics = [q for q in values.get("metric_query") or [] if q.get("metric")]
        count = max(len(metrics), 1)
        return count * monthly["cloudwatch_alarm_per_metric"], f"{count} metric(s)"
    if rc_type == "aws_cloudwatch_composite_alarm":
        return monthly["cloudwatch_composite_alarm"], "composite alarm"
    if rc_type == "aws_cloudwatch_dashboard":
        return monthly["cloudwatch_dashboard"], "1 dashboard"
    if rc_type == "aws_ssm_parameter" and values.get("tier") == "Advanced":
        return monthly["ssm_parameter_advanced"], "advanced parameter"
    if rc_type == "aws_secretsmanager_secret":
        return monthly["secretsmanager_secret"], "1 secret"
    return None


def cost_delta(plan: dict, prices: dict) -> dict:
    config = config_resources((plan.get("configuration") or {}).get("root_module") or {})
    items, total = [], 0.0
    for rc in plan.get("resource_changes", []):
        action = action_of(rc["change"]["actions"])
        if action is None or rc.get("mode") == "data":
            continue
        conf = config.get(rc["address"].split("[")[0], {})
        old = monthly_cost(rc["type"], rc["change"].get("before") or {}, conf, prices) if action != "add" else None
        new = monthly_cost(rc["type"], rc["change"].get("after") or {}, conf, prices) if action != "destroy" else None
        delta = (new[0] if new else 0.0) - (old[0] if old else 0.0)
        if old or new:
            basis = (new or old)[1]
            items.append({"address": rc["address"], "action": action, "monthly_usd": round(delta, 2), "basis": basis})
            total += delta
    return {
        "monthly_delta_usd": round(total, 2),
        "items": items,
        "per_job_hour": per_job_hour(plan, prices),
        "price_date": prices["date"],
        "region": prices["region"],
        "source": prices["source"],
    }


def value_resources(module: dict) -> list[dict]:
    """Resources of a values module (``planned_values`` or a state's ``values``), child modules included."""
    found = list(module.get("resources", []))
    for child in module.get("child_modules", []):
        found += value_resources(child)
    return found


def per_job_hour(plan: dict, prices: dict) -> list[dict]:
    """What one job-hour of each Batch job definition costs on the cheapest instance that fits it."""
    planned = value_resources((plan.get("planned_values") or {}).get("root_module") or {})
    instances = prices["instances"]
    pools = {"gpu": [], "cpu": []}
    for res in planned:
        if res["type"] != "aws_batch_compute_environment":
            continue
        compute = ((res.get("values") or {}).get("compute_resources") or [{}])[0]
        for itype in compute.get("instance_type") or []:
            if itype in instances:
                pools["gpu" if instances[itype]["gpus"] else "cpu"].append(itype)
    rows = []
    fraction = prices["spot_typical_fraction_of_on_demand"]
    for res in planned:
        if res["type"] != "aws_batch_job_definition":
            continue
        props = json.loads((res.get("values") or {}).get("container_properties") or "{}")
        need = {r["type"]: float(r["value"]) for r in props.get("resourceRequirements", [])}
        vcpus, memory, gpus = need.get("VCPU", 1), need.get("MEMORY", 0), need.get("GPU", 0)
        found = job_hour_usd(vcpus, memory, gpus, tuple(pools["gpu" if gpus else "cpu"]), prices)
        if found is None:
            rows.append({"job_definition": res["values"].get("name"), "instance_type": None})
            continue
        cheapest, on_demand = found
        rows.append(
            {
                "job_definition": res["values"].get("name"),
                "instance_type": cheapest,
                "on_demand_usd": round(on_demand, 4),
                "spot_usd": round(on_demand * fraction, 4),
            }
        )
    return rows


# --- the review ------------------------------------------------------------------------------


def review(plan: dict, *, title: str, allow_destroy: set[str], prices: dict) -> Review:
    result = Review(title=title)
    configs = config_resources((plan.get("configuration") or {}).get("root_module") or {})
    for rc in plan.get("resource_changes", []):
        change = rc["change"]
        if rc.get("mode") == "data":
            if change["actions"] == ["read"]:  # a data source deferred to apply time
                result.counts["read"] += 1
                reason = REASONS.get(rc.get("action_reason", ""), rc.get("action_reason", ""))
                result.deferred_reads.append({"address": rc["address"], "reason": reason})
            continue
        if rc.get("previous_address") and rc["previous_address"] != rc["address"]:
            result.counts["move"] += 1
            result.moves.append({"from": rc["previous_address"], "to": rc["address"]})
        if change.get("importing") is not None:
            result.counts["import"] += 1
            result.imports.append({"address": rc["address"], "id": change["importing"].get("id")})
        action = action_of(change["actions"])
        if action is None:
            continue
        result.counts[action] += 1
        row = {"address": rc["address"], "type": rc["type"], "action": action}
        if rc.get("action_reason"):
            row["reason"] = REASONS.get(rc["action_reason"], rc["action_reason"])
        result.changes.append(row)
        if action == "forget":
            stateful = resource_classes.classify(rc["type"], rc.get("provider_name")) != "stateless"
            result.forgets.append({"address": rc["address"], "type": rc["type"], "stateful": stateful})
        kind = (
            resource_classes.classify(rc["type"], rc.get("provider_name")) if action in {"destroy", "replace"} else ""
        )
        if kind in {"stateful", "unknown"}:
            why = STATEFUL_REASONS.get(rc["type"]) or (
                f"{rc['type']}: holds data or identity that a destroy loses (tools/resource_classes.json)"
                if kind == "stateful"
                else f"unclassified type {rc['type']} ({rc.get('provider_name', 'unknown provider')}): "
                "check what its destroy loses"
            )
            finding = {"address": rc["address"], "action": action, "why": why}
            if action == "replace":
                paths = rc["change"].get("replace_paths") or []
                finding["forced_by"] = [".".join(map(str, p)) for p in paths]
            if kind == "unknown":
                result.unclassified.append(finding)
            else:
                (result.allowed if rc["address"] in allow_destroy else result.blocking).append(finding)
        config = configs.get(re.sub(r"\[[^\]]*\]", "", rc["address"]))
        result.policies += policy_changes(rc, action, set(config.get("expressions", {})) if config else None)
        net = network_changes(rc, action)
        if net and (net["added"] or net["removed"] or net["flags"]):
            result.network.append(net)
    touched = {f["address"] for f in result.blocking + result.allowed}
    result.unused_allowances = sorted(allow_destroy - touched)
    result.cost = cost_delta(plan, prices)
    plan_level_changes(plan, result)
    return result


def _stmt_text(stmt: dict) -> str:
    body = {k: v for k, v in stmt.items() if k != "Sid"}
    return f"`{json.dumps(body, sort_keys=True)}`"


def markdown(result: Review) -> str:
    c = result.counts
    icon = {"BLOCKING": "BLOCKING", "REVIEW": "needs review", "OK": "ok"}[result.verdict]
    out = [
        f"## Plan review: {result.title}",
        "",
        f"**Verdict: {icon}** - {c['add']} to add, {c['change']} to change, "
        f"{c['replace']} to replace, {c['destroy']} to destroy"
        + "".join(f", {c[k]} to {k}" for k in ("forget", "move", "import") if c[k])
        + (f", {c['read']} data reads deferred to apply" if c["read"] else "")
        + ".",
        "",
    ]
    if result.blocking:
        out += ["### BLOCKING: stateful resources destroyed or replaced", ""]
        out += [
            f"- `{f['address']}` **{f['action']}**: {f['why']}"
            + (f" (forced by {', '.join(f['forced_by'])})" if f.get("forced_by") else "")
            for f in result.blocking
        ]
        out += [
            "",
            "Data would be lost. If that is intended, re-run with "
            f"`ALLOW_DESTROY={','.join(f['address'] for f in result.blocking)}`.",
            "",
        ]
    if result.unclassified:
        out += ["### Unclassified types destroyed or replaced: review what each loses", ""]
        out += [f"- `{f['address']}` **{f['action']}**: {f['why']}" for f in result.unclassified]
        out += [""]
    if result.forgets:
        out += ["### Forgotten: Terraform stops managing these and leaves them in AWS", ""]
        out += [
            f"- `{f['address']}`" + (" - **stateful: it stays, orphaned and still billed**" if f["stateful"] else "")
            for f in result.forgets
        ] + [""]
    if result.moves:
        out += ["### Moved", ""] + [f"- `{m['from']}` -> `{m['to']}`" for m in result.moves] + [""]
    if result.imports:
        out += ["### Imported", ""] + [f"- `{i['address']}` from id `{i['id']}`" for i in result.imports] + [""]
    if result.allowed:
        out += ["### Allowed destroys (named in ALLOW_DESTROY)", ""]
        out += [f"- `{f['address']}` {f['action']}: {f['why']}" for f in result.allowed] + [""]
    if result.unused_allowances:
        out += [f"ALLOW_DESTROY names addresses this plan does not destroy: {', '.join(result.unused_allowances)}", ""]
    if result.policies:
        out += ["### IAM and resource policies", ""]
        for p in result.policies:
            flag = f" - **widening: {'; '.join(p['widening'])}**" if p["widening"] else ""
            if p["type"] == "aws_s3_bucket_policy":
                flag = " - **bucket policy changed**" + flag
            out.append(f"- `{p['address']}` {p['kind']} `{p['attribute']}` ({p['action']}){flag}")
            if p["note"]:
                out.append(f"  - {p['note']}")
            out += [f"  - added {_stmt_text(s)}" for s in p["added"]]
            out += [f"  - removed {_stmt_text(s)}" for s in p["removed"]]
        out.append("")
    if result.network:
        out += ["### Security groups, network ACLs and public access", ""]
        for n in result.network:
            flag = f" - **{'; '.join(n['flags'])}**" if n["flags"] else ""
            out.append(f"- `{n['address']}` ({n['action']}){flag}")
            out += [f"  - added {r}" for r in n["added"]] + [f"  - removed {r}" for r in n["removed"]]
        out.append("")
    cost = result.cost
    out += [
        "### Estimated cost",
        "",
        f"Estimated monthly delta: **{cost['monthly_delta_usd']:+.2f} USD** (fixed-price resources only; "
        f"usage such as data transfer, requests and compute is not included). "
        f"This is an estimate from the {cost['region']} price table dated {cost['price_date']}.",
        "",
    ]
    if cost["items"]:
        out += ["| address | action | USD/month | basis |", "|---|---|---:|---|"]
        out += [f"| `{i['address']}` | {i['action']} | {i['monthly_usd']:+.2f} | {i['basis']} |" for i in cost["items"]]
        out.append("")
    priced = [r for r in cost["per_job_hour"] if r.get("instance_type")]
    if priced:
        out += [
            "Per run (Batch, separate from the monthly figure): one job-hour of each stage on the cheapest "
            "instance that fits it.",
            "",
            "| job definition | instance | on-demand USD/h | spot USD/h (typical) |",
            "|---|---|---:|---:|",
        ]
        out += [
            f"| {r['job_definition']} | {r['instance_type']} | {r['on_demand_usd']:.4f} | {r['spot_usd']:.4f} |"
            for r in priced
        ]
        out += [
            f"| **one job-hour of every stage** | | {sum(r['on_demand_usd'] for r in priced):.4f} | "
            f"{sum(r['spot_usd'] for r in priced):.4f} |",
            "",
        ]
    if result.outputs:
        out += ["### Outputs", ""]
        out += [f"- `{o['name']}` {o['action']}: `{o['before']}` -> `{o['after']}`" for o in result.outputs] + [""]
    if result.deferred_reads:
        out += ["### Data sources read at apply time", ""]
        out += [f"- `{d['address']}`: {d['reason']}" for d in result.deferred_reads] + [""]
    if result.drift:
        out += ["### Drift Terraform found while planning (changed outside Terraform)", ""]
        out += [f"- `{d['address']}` ({', '.join(d['actions'])})" for d in result.drift] + [""]
    if result.changes:
        out += ["<details><summary>Every change</summary>", "", "| address | action | why |", "|---|---|---|"]
        out += [f"| `{ch['address']}` | {ch['action']} | {ch.get('reason', '')} |" for ch in result.changes]
        out += ["", "</details>", ""]
    return "\n".join(out)


def parse_allow(values: list[str | None]) -> set[str]:
    return {a.strip() for v in values if v for a in v.split(",") if a.strip()}


COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters


def split_comment(text: str, title: str, limit: int = COMMENT_LIMIT) -> list[str]:
    """The report as numbered PR comments of at most ``limit`` characters, cut between lines."""
    if len(text) <= limit:
        return [text]
    room = limit - 200  # for the part header
    parts, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > room:  # a single line longer than a comment: cut it
            parts.append(current + line[: room - len(current)])
            line, current = line[room - len(current) :], ""
        if len(current) + len(line) > room:
            parts.append(current)
            current = ""
        current += line
    parts.append(current)
    total = len(parts)
    return [f"**Plan review: {title} (part {i}/{total})**\n\n{part}" for i, part in enumerate(parts, 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan_review", description=__doc__.split("\n")[0])
    parser.add_argument("plan", type=Path, help="terraform show -json output")
    parser.add_argument("--markdown", type=Path, help="write the Markdown report here (default: stdout)")
    parser.add_argument("--json", type=Path, help="write the JSON summary here")
    parser.add_argument("--title", help="report title (default: the plan file's folder)")
    parser.add_argument("--allow-destroy", default=None, help="comma-separated addresses allowed to be destroyed")
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES, help="price table JSON")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
        prices = json.loads(args.prices.read_text())
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: price table {args.prices}: {exc}", file=sys.stderr)
        return 1
    allow = parse_allow([args.allow_destroy, os.environ.get("ALLOW_DESTROY")])
    result = review(plan, title=args.title or args.plan.resolve().parent.name, allow_destroy=allow, prices=prices)
    report = markdown(result)
    if args.markdown:
        args.markdown.write_text(report)
        for stale in args.markdown.parent.glob(f"{args.markdown.stem}.part-*.md"):
            stale.unlink()
        for index, part in enumerate(split_comment(report, result.title), 1):
            args.markdown.with_name(f"{args.markdown.stem}.part-{index}.md").write_text(part)
    else:
        print(report)
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    c = result.counts
    print(
        f"plan review: {result.verdict}: +{c['add']} ~{c['change']} -/+{c['replace']} -{c['destroy']}, "
        f"{len(result.blocking)} blocking, {sum(bool(p['widening']) for p in result.policies)} widening policy "
        f"change(s), {sum(bool(n['flags']) for n in result.network)} flagged network change(s), "
        f"cost {result.cost['monthly_delta_usd']:+.2f} USD/month (estimate, prices of {result.cost['price_date']})",
        file=sys.stderr,
    )
    for finding in result.blocking:
        print(f"BLOCKING: {finding['action']} {finding['address']} ({finding['why']})", file=sys.stderr)
    return 2 if result.blocking else 0


if __name__ == "__main__":
    cli.run(main)
