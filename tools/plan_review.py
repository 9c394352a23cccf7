"""Review a Terraform plan for a pull request: what changes, what is dangerous, what it costs.

    python -m tools.plan_review plan.json [--markdown review.md] [--json review.json] [--title T]
        [--approvals plan-approvals.yaml] [--fail-on blocking|review] [--max-parts 5] [--prices P]

``plan.json`` is ``terraform show -json <planfile>``; anything else (a state, an errored plan, a
plan Terraform calls not applyable, format 2.x, broken structure) is refused in one line naming
what it is or the JSON path that is wrong. The review finds:

- counts of every action Terraform plans (add, change, replace, destroy, forget, move, import,
  deferred data read) and every changed address with its action and Terraform's reason;
- moves, imports, forgets (a stateful resource left unmanaged needs review), changes deferred to a
  later plan, output changes and the plan's own drift;
- BLOCKING: destroy or replace of a stateful resource, an in-place update that deletes data
  (retention or expiry cut, PITR off), an action list it does not know, an incomplete plan, a
  deferred stateful destroy; unless the change is approved by address and digest in
  ``plan-approvals.yaml`` (then REVIEW). Every type of the provider schema has a class
  (``tools/resource_classes.json``); an unclassified or foreign type's destroy needs review;
- REVIEW: protection against a later loss removed, widening IAM and resource policies,
  security-group, public-access and bucket-policy changes;
- an estimated monthly cost delta and a per-job-hour Batch figure from a dated price table.

Every value is redacted by its sensitive marks before it is read (``redact``) and every string of
the plan is printed through ``esc``; see docs/plan-review.md. Works on any plan JSON; imports
nothing of the CDKTF app. Exit codes: 0 reviewed, 1 refused input, 2 blocking, 3 REVIEW with
``--fail-on review``.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable
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
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    changes: list[dict] = field(default_factory=list)
    blocking: list[dict] = field(default_factory=list)
    allowed: list[dict] = field(default_factory=list)
    unclassified: list[dict] = field(default_factory=list)
    moves: list[dict] = field(default_factory=list)
    imports: list[dict] = field(default_factory=list)
    forgets: list[dict] = field(default_factory=list)
    deferred_reads: list[dict] = field(default_factory=list)
    deferred: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    # Other findings: {"rule", "severity" (blocking/review), "address", "why"}: unknown actions, an
    # incomplete plan, a deferred stateful destroy, data-losing in-place updates.
    flags: list[dict] = field(default_factory=list)
    unused_approvals: list[dict] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)
    network: list[dict] = field(default_factory=list)
    cost: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        findings = self.findings()
        if any(f["severity"] == "blocking" for f in findings):
            return "BLOCKING"
        if findings:
            return "REVIEW"
        # Terraform calls a plan without changes not applyable; it is reported as such, never as "ok".
        touched = self.changes or self.outputs or self.drift or self.moves or self.imports or self.deferred_reads
        return "OK" if touched else "NO CHANGES"

    def findings(self) -> list[dict]:
        """Every finding with its rule id, severity and address, for tools that consume the JSON report."""
        out = [{"rule": "stateful-destroy", "severity": "blocking", **f} for f in self.blocking]
        out += [f for f in self.flags if f["severity"] == "blocking"]
        out += [{"rule": "stateful-destroy-approved", "severity": "review", **f} for f in self.allowed]
        out += [{"rule": "unclassified-destroy", "severity": "review", **f} for f in self.unclassified]
        out += [f for f in self.flags if f["severity"] != "blocking"]
        out += [
            {"rule": "forget-stateful", "severity": "review", "address": f["address"], "why": f["why"]}
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
            {
                "rule": "network-change",
                "severity": "review",
                "address": n["address"],
                "why": "; ".join(n["flags"]) or "network rule or public access changed",
            }
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
            "approved_destroys": self.allowed,
            "unclassified_destroys": self.unclassified,
            "moves": self.moves,
            "imports": self.imports,
            "forgets": self.forgets,
            "deferred_reads": self.deferred_reads,
            "deferred_changes": self.deferred,
            "outputs": self.outputs,
            "drift": self.drift,
            "findings": self.findings(),
            "approvals_needed": [
                {"address": f["address"], "digest": f["digest"]}
                for f in self.findings()
                if f["severity"] == "blocking" and f.get("digest")
            ],
            "unused_approvals": self.unused_approvals,
            "policies": self.policies,
            "network": self.network,
            "cost": self.cost,
        }


# Terraform's action lists (json-format: "change representation"), as one word. ["forget"] (a
# ``removed`` block with ``destroy = false``, Terraform 1.7+) and ["create", "forget"] (the old
# object of a replace forgotten instead of destroyed) delete nothing in AWS: the object stays,
# unmanaged; a stateful one needs review (orphaned, still billed), never a block.
KNOWN_ACTIONS = {
    ("create",): "add",
    ("update",): "change",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    ("delete",): "destroy",
    ("forget",): "forget",
    ("create", "forget"): "replace-forget",
    ("no-op",): None,
    ("read",): None,
}


def action_of(actions: list[str]) -> str | None:
    """Terraform's action list as one word; None for no-op and reads; ``unknown`` for any other list."""
    return KNOWN_ACTIONS.get(tuple(actions), "unknown")


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


SENSITIVE = "(sensitive)"
UNKNOWN = "(known after apply)"


def redact(value: Any, marks: Any) -> Any:
    """``value`` with every part Terraform marks sensitive replaced by ``(sensitive)``, at any depth.

    ``marks`` is a ``before_sensitive`` / ``after_sensitive`` / ``sensitive_values`` tree of the
    same shape (``true`` = this whole value). A string (e.g. a ``jsonencode()`` policy document)
    marked wholly or in any part is hidden whole: its secret sits somewhere inside the text.
    The one place a plan value is made safe to print; everything the review reads went through it.
    """
    if value is None:  # nothing to hide (a destroyed object's after, an unset attribute)
        return None
    if marks is True:
        return SENSITIVE
    if not marks:
        return value
    if isinstance(value, dict) and isinstance(marks, dict):
        return {k: redact(v, marks.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(marks, list):
        return [redact(v, marks[i] if i < len(marks) else None) for i, v in enumerate(value)]
    # A scalar under a partial mark, or marks not of the value's shape (a map of marks on a list):
    # hide it whole rather than guess which part is the secret.
    return SENSITIVE


def _redact_change(change: dict) -> dict:
    return dict(
        change,
        before=redact(change.get("before"), change.get("before_sensitive")),
        after=redact(change.get("after"), change.get("after_sensitive")),
    )


def _redact_module(module: dict) -> dict:
    return dict(
        module,
        resources=[
            dict(r, values=redact(r.get("values"), r.get("sensitive_values"))) for r in module.get("resources") or []
        ],
        child_modules=[_redact_module(m) for m in module.get("child_modules") or []],
    )


def sanitized(plan: dict) -> dict:
    """The plan with every sensitive value redacted (resources, drift, deferred, outputs, planned and
    prior state) and ``variables`` dropped (Terraform writes sensitive variables there in clear)."""
    out = {k: v for k, v in plan.items() if k != "variables"}
    for key in ("resource_changes", "resource_drift"):
        out[key] = [dict(rc, change=_redact_change(rc["change"])) for rc in plan.get(key) or []]
    out["deferred_changes"] = [
        dict(d, resource_change=dict(d["resource_change"], change=_redact_change(d["resource_change"]["change"])))
        for d in plan.get("deferred_changes") or []
    ]
    out["output_changes"] = {k: _redact_change(v) for k, v in (plan.get("output_changes") or {}).items()}
    for key in ("planned_values", "prior_state"):
        values = plan.get(key) or {}
        if key == "prior_state":
            values = values.get("values") or {}
        redacted = dict(values, root_module=_redact_module(values.get("root_module") or {}))
        if "outputs" in values:
            redacted["outputs"] = {
                k: dict(o, value=SENSITIVE if o.get("sensitive") else o.get("value"))
                for k, o in (values.get("outputs") or {}).items()
            }
        out[key] = redacted if key == "planned_values" else dict(plan.get(key) or {}, values=redacted)
    return out


def plan_level_changes(plan: dict, result: Review) -> None:
    """Output changes and the plan's resource_drift, beside the changes (values already redacted)."""
    for name, change in sorted((plan.get("output_changes") or {}).items()):
        action = action_of(change.get("actions", []))
        if action == "unknown":
            result.flags.append(_unknown_actions(f"output.{name}", "(root module)", change.get("actions")))
        if action:
            result.outputs.append(
                {
                    "name": name,
                    "action": action,
                    "before": change.get("before"),
                    "after": UNKNOWN if change.get("after_unknown") is True else change.get("after"),
                }
            )
    for rc in plan.get("resource_drift") or []:
        result.drift.append({"address": rc["address"], "actions": rc["change"]["actions"]})


# --- printing what came from the plan -------------------------------------------------------------

MAX_TEXT = 160  # characters of one value shown; the rest is cut and its length given
# Markdown-active characters backslash-escaped; @ and # also followed by a zero-width space.
_MARKDOWN = tuple((c, "\\" + c + ("\u200b" if c in "@#" else "")) for c in "\\`*_{}[]()<>#+!|~&^=$@")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What GitHub turns into a link in plain text, each broken by a zero-width space: a scheme's "://"
# and "mailto:"/"xmpp:", "www.", "GH-<n>", and a hex run a commit SHA could be (7+, a letter and a digit).
_LINKS = re.compile(r"(?i)(?<=[a-z])(?=:/)|(?<=\bmailto)(?=:)|(?<=\bxmpp)(?=:)|(?<=\bwww)(?=\.)|(?<=\bgh)(?=-\d)")
_HEX = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,}\b", re.IGNORECASE)


def _unlinked(text: str) -> str:
    text = _LINKS.sub("\u200b", text)
    return _HEX.sub(lambda m: "\u200b".join(m[0][i : i + 6] for i in range(0, len(m[0]), 6)), text)


def _visible(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in {"Zl", "Zp"}:
        return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
    return ch


def esc(value: Any, limit: int = MAX_TEXT, *, markdown: bool = True) -> str:
    """Anything that came from the plan (keys, values, ids, paths, messages), made inert text.

    Inert in GitHub-flavoured Markdown and in the Actions log: every Markdown-active character is
    backslash-escaped (no HTML, no fence, comment, table or link breakout), ``@`` and ``#`` get a
    zero-width space after them (no mentions, no issue links), so do URL schemes, ``www.``, ``GH-n``
    and SHA-like hex runs (no autolinks), control, format and bidi characters
    are shown as ``\\uXXXX`` escapes (no new lines, so no ``::`` command at a line start), and a value
    longer than ``limit`` is cut with its length given. ``markdown=False``: for a plain log line
    (the Markdown escapes left out, the rest kept).
    """
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text):,} chars)"
    if not (text.isascii() and text.isprintable()):
        text = "".join(map(_visible, text))
    if markdown:
        text = _unlinked(text)
        for char, escaped in _MARKDOWN:  # the backslash first; str.replace is ~5x str.translate here
            if char in text:
                text = text.replace(char, escaped)
    return text


# --- what the input is -------------------------------------------------------------------------

_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}


def _expect(value: Any, kind: type, path: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        got = "null" if value is None else _TYPES.get(type(value), type(value).__name__)
        raise PlanError(f"{path} is {got}, expected {_TYPES[kind]}: not `terraform show -json` output of a plan")


def _check_change(rc: Any, path: str) -> None:
    _expect(rc, dict, path, optional=False)
    for key in ("address", "type"):
        _expect(rc.get(key), str, f"{path}.{key}", optional=False)
    for key in ("mode", "name", "provider_name", "previous_address", "action_reason", "module_address"):
        _expect(rc.get(key), str, f"{path}.{key}")
    change = rc.get("change")
    _expect(change, dict, f"{path}.change", optional=False)
    _expect(change.get("actions"), list, f"{path}.change.actions", optional=False)
    for i, action in enumerate(change["actions"]):
        _expect(action, str, f"{path}.change.actions[{i}]", optional=False)
    if rc.get("mode", "managed") == "managed":
        for key in ("before", "after"):
            _expect(change.get(key), dict, f"{path}.change.{key}")
    _expect(change.get("importing"), dict, f"{path}.change.importing")
    _expect(change.get("replace_paths"), list, f"{path}.change.replace_paths")
    for i, item in enumerate(change.get("replace_paths") or []):
        _expect(item, list, f"{path}.change.replace_paths[{i}]", optional=False)


def _check_module(module: Any, path: str) -> None:
    _expect(module, dict, path)
    module = module or {}
    _expect(module.get("resources"), list, f"{path}.resources")
    for i, res in enumerate(module.get("resources") or []):
        _expect(res, dict, f"{path}.resources[{i}]", optional=False)
        _expect(res.get("type"), str, f"{path}.resources[{i}].type")
        _expect(res.get("address"), str, f"{path}.resources[{i}].address")
        _expect(res.get("values"), dict, f"{path}.resources[{i}].values")
        _expect(res.get("expressions"), dict, f"{path}.resources[{i}].expressions")
    _expect(module.get("child_modules"), list, f"{path}.child_modules")
    for i, child in enumerate(module.get("child_modules") or []):
        _check_module(child, f"{path}.child_modules[{i}]")
    _expect(module.get("module_calls"), dict, f"{path}.module_calls")
    for name, call in (module.get("module_calls") or {}).items():
        _expect(call, dict, f"{path}.module_calls.{name}", optional=False)
        _check_module(call.get("module"), f"{path}.module_calls.{name}.module")


def check_plan(plan: Any, source: str) -> dict:
    """The plan if it is an applyable, error-free plan of a known format version; else PlanError naming
    what it is or which JSON path is wrong (fields: developer.hashicorp.com/terraform/internals/json-format)."""
    if not isinstance(plan, dict) or "format_version" not in plan:
        raise PlanError(f"{source}: not a Terraform plan (no format_version); pass `terraform show -json <planfile>`")
    version = str(plan["format_version"])
    if version.split(".")[0] != "1":
        raise PlanError(f"{source}: JSON format_version {version} is not 1.x, which this review reads; refusing it")
    if "values" in plan and not any(k in plan for k in ("resource_changes", "planned_values", "output_changes")):
        raise PlanError(
            f"{source}: a Terraform state, not a plan (it has `values`, no `resource_changes`/`planned_values`); "
            "pass `terraform show -json <planfile>`"
        )
    missing = [k for k in ("terraform_version", "planned_values", "configuration") if k not in plan]
    if missing:  # `terraform show -json` of a plan always writes these; `show -json` of no plan does not
        raise PlanError(
            f"{source}: not a complete Terraform plan (no {', '.join(missing)}); "
            "pass `terraform show -json <planfile>` of a saved plan"
        )
    _expect(plan["terraform_version"], str, "terraform_version", optional=False)
    if plan.get("errored") is True:
        raise PlanError(
            f"{source}: an errored plan (errored: true: a failed precondition or provider error stopped planning); "
            "fix the error `terraform plan` printed and plan again"
        )
    for key in ("resource_changes", "resource_drift", "deferred_changes"):
        _expect(plan.get(key), list, key, optional=key not in plan)
    for i, rc in enumerate(plan.get("resource_changes") or []):
        _check_change(rc, f"resource_changes[{i}]")
    for i, rc in enumerate(plan.get("resource_drift") or []):
        _check_change(rc, f"resource_drift[{i}]")
    for i, deferred in enumerate(plan.get("deferred_changes") or []):
        _expect(deferred, dict, f"deferred_changes[{i}]", optional=False)
        _expect(deferred.get("reason"), str, f"deferred_changes[{i}].reason")
        _check_change(deferred.get("resource_change"), f"deferred_changes[{i}].resource_change")
    _expect(plan.get("output_changes"), dict, "output_changes", optional="output_changes" not in plan)
    for name, change in (plan.get("output_changes") or {}).items():
        _expect(change, dict, f"output_changes.{name}", optional=False)
        _expect(change.get("actions"), list, f"output_changes.{name}.actions", optional=False)
        for i, action in enumerate(change["actions"]):
            _expect(action, str, f"output_changes.{name}.actions[{i}]", optional=False)
    for key in ("planned_values", "configuration"):
        _expect(plan.get(key), dict, key)
        _check_module((plan.get(key) or {}).get("root_module"), f"{key}.root_module")
    _expect(plan.get("prior_state"), dict, "prior_state")
    _expect((plan.get("prior_state") or {}).get("values"), dict, "prior_state.values")
    _check_module(
        ((plan.get("prior_state") or {}).get("values") or {}).get("root_module"), "prior_state.values.root_module"
    )
    changes = [rc for rc in plan.get("resource_changes") or [] if set(rc["change"]["actions"]) - {"no-op", "read"}]
    if plan.get("applyable") is False and changes:
        raise PlanError(f"{source}: Terraform marks this plan not applyable (applyable: false) although it has changes")
    return plan


def load_plan(path: Path) -> dict:
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file; make it with `terraform show -json <planfile> > {path}`") from None
    except UnicodeDecodeError:
        raise PlanError(f"{path}: not UTF-8 text; pass `terraform show -json <planfile>` output") from None
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno}); pass `terraform show -json` output"
        ) from None
    except RecursionError:
        raise PlanError(f"{path}: JSON nested too deeply to be a plan") from None
    try:
        return check_plan(plan, str(path))
    except RecursionError:
        raise PlanError(f"{path}: modules nested too deeply to be a plan") from None


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
    except (json.JSONDecodeError, RecursionError):
        return None
    found = _as_list(parsed.get("Statement")) if isinstance(parsed, dict) else None
    if found is None or not all(isinstance(s, dict) for s in found):
        return None
    return [normalise_statement(s) for s in found]


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


_WILD = re.compile(r"[*?\[]")


class _Grants:
    """(action, resource) patterns indexed both ways, so a covered-by check costs one set test after
    each distinct action and resource is matched once against the old wildcards, not a match against
    every old pair (a managed policy near its 6 KB limit has thousands of pairs: that took minutes)."""

    def __init__(self, pairs: set[tuple[str, str]]) -> None:
        self.by_action: dict[str, set[str]] = {}
        for action, resource in pairs:
            self.by_action.setdefault(action, set()).add(resource)
        self._wild_actions = [a for a in self.by_action if _WILD.search(a)]
        self._wild_resources = sorted({r for rs in self.by_action.values() for r in rs if _WILD.search(r)})
        self._actions: dict[str, list[set[str]]] = {}
        self._resources: dict[str, set[str]] = {}

    def covers(self, action: str, resource: str) -> bool:
        granted = self._actions.get(action)
        if granted is None:
            patterns = {a for a in self._wild_actions if fnmatch.fnmatchcase(action, a)}
            patterns |= {action} & self.by_action.keys()
            granted = self._actions[action] = [self.by_action[a] for a in patterns]
        if not granted:
            return False
        matching = self._resources.get(resource)
        if matching is None:  # the same text covers itself, wildcards or not
            matching = {resource, *(r for r in self._wild_resources if fnmatch.fnmatchcase(resource, r))}
            self._resources[resource] = matching
        return any(not resources.isdisjoint(matching) for resources in granted)


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
    # A statement also in ``before`` grants nothing new: only the added statements' pairs are checked.
    added = [s for s in after if _key(s) not in before_keys]
    old_allow = _Grants(_pairs(before, "Allow"))
    new_actions: set[str] = set()
    for action, resource in _pairs(added, "Allow"):
        if action not in new_actions and not old_allow.covers(action, resource):
            new_actions.add(action)
    if new_actions:
        reasons.append(f"new actions or resources for {', '.join(sorted(new_actions))}")
    old_principals = {p for s in before if s["Effect"] == "Allow" for p in _principals(s)}
    new_principals = sorted({p for s in after if s["Effect"] == "Allow" for p in _principals(s)} - old_principals)
    if new_principals:
        reasons.append(f"new principals {', '.join(new_principals)}")
    after_keys = {_key(s) for s in after}
    new_deny = _Grants(_pairs(after, "Deny"))
    removed = [s for s in before if _key(s) not in after_keys]
    lost_denies = [(a, r) for a, r in _pairs(removed, "Deny") if not new_deny.covers(a, r)]
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
        if SENSITIVE in (old_doc, new_doc):
            note = "the document is sensitive: its statements are not shown"
            found.append(_policy_row(rc, attr, action, [], [], ["sensitive policy changed: review the source"], note))
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
    """Open to the internet, or not knowable: a sensitive CIDR may be 0.0.0.0/0."""
    cidrs = set(_as_list(rule.get("cidr_blocks")) + _as_list(rule.get("ipv6_cidr_blocks")))
    cidrs |= {rule.get("cidr_ipv4"), rule.get("cidr_ipv6")}
    return bool(cidrs & (OPEN_CIDRS | {SENSITIVE}))


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


# --- in-place updates that lose data ---------------------------------------------------------------

# (attribute path pattern with list indexes dropped, what counts as the loss, severity, why). BLOCKING:
# the apply itself deletes data (records past a shorter retention or expiry, PITR history);
# REVIEW: a guard against a later loss goes (protection off, force_destroy on, ...).
LIFECYCLE_TYPES = ("aws_s3_bucket_lifecycle_configuration", "aws_s3control_bucket_lifecycle_configuration")
KMS_KEY_TYPES = ("aws_kms_key", "aws_kms_replica_key", "aws_kms_external_key", "aws_kms_replica_external_key")
DATA_LOSS_RULES: tuple[tuple[re.Pattern, str, str, str, tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), loss, severity, why, *(types or [()]))
    for pattern, loss, severity, why, *types in (
        (
            r"(^|\.)(retention_in_days|message_retention_seconds|backup_retention_period|retention_period"
            r"|retention_period_hours|retention_period_in_days|snapshot_retention_limit|data_retention_in_hours"
            r"|log_retention_days|retention_days|retention)$",
            "cut",
            "blocking",
            "retention cut: data older than the new period is deleted",
        ),
        (
            r"(^|\.)(expiration\.days|noncurrent_version_expiration\.noncurrent_days|lifecycle\.delete_after"
            r"|expiration_in_days)$",
            "cut",
            "blocking",
            "expiry shortened or added: objects or backups past it are deleted",
        ),
        (r"(^|\.)point_in_time_recovery\.enabled$", "off", "blocking", "point-in-time recovery turned off"),
        (
            r"^ttl\.enabled$",
            "on",
            "blocking",
            "TTL turned on: items past their expiry attribute are deleted",
            ("aws_dynamodb_table",),
        ),
        (
            r"^rule\.status$",
            "enabled",
            "blocking",
            "lifecycle rule enabled: objects past its expiration are deleted",
            LIFECYCLE_TYPES,
        ),
        (
            r"^rule\.filter\.(and\.)?prefix$|^rule\.prefix$",
            "widened",
            "blocking",
            "lifecycle rule's filter widened: its expiration now deletes objects under more keys",
            LIFECYCLE_TYPES,
        ),
        (r"(^|\.)deletion_protection(_enabled)?$", "off", "review", "deletion protection turned off"),
        (
            r"(^|\.)(force_destroy|force_delete)$",
            "on",
            "review",
            "force_destroy/force_delete turned on: a destroy deletes the contents too",
        ),
        (r"(^|\.)skip_final_snapshot$", "on", "review", "skip_final_snapshot turned on: no snapshot on delete"),
        (
            r"(^|\.)delete_automated_backups$",
            "on",
            "review",
            "delete_automated_backups turned on: a destroy deletes the automated backups too",
        ),
        (r"(^|\.)deletion_window_in_days$", "cut", "review", "KMS key deletion window shortened"),
        (
            r"^recovery_window_in_days$",
            "cut",
            "review",
            "secret recovery window shortened (0: a delete is immediate, no recovery)",
            ("aws_secretsmanager_secret",),
        ),
        (
            r"^is_enabled$",
            "off",
            "review",
            "KMS key disabled: data encrypted under it cannot be read until it is enabled again",
            KMS_KEY_TYPES,
        ),
        (r"(^|\.)versioning_configuration\.status$", "suspended", "review", "versioning suspended"),
        (r"^versioning\.enabled$", "off", "review", "versioning turned off"),
    )
)
# A retention of 0 or none means "keep forever" for these (e.g. CloudWatch Logs retention_in_days).
FOREVER_WHEN_ZERO = ("retention_in_days", "expiration.days", "noncurrent_days", "delete_after")
# Guards written as a string (Cognito deletion_protection ACTIVE/INACTIVE, S3 status Enabled).
_ON = {True, "ACTIVE", "Enabled", "ENABLED"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _is_on(value: Any) -> bool:
    return isinstance(value, (bool, str)) and value in _ON


def _lost(loss: str, path: str, old: Any, new: Any) -> bool:
    if loss == "off":
        return _is_on(old) and not _is_on(new)
    if loss in {"on", "enabled"}:
        return _is_on(new) and not _is_on(old)
    if loss == "suspended":
        return old == "Enabled" and new != "Enabled"
    if loss == "widened":
        return isinstance(old, str) and bool(old) and (not new or (isinstance(new, str) and old.startswith(new)))
    before, after = _number(old), _number(new)
    forever = path.endswith(FOREVER_WHEN_ZERO)
    if forever:
        before, after = before or None, after or None
        return after is not None and (before is None or after < before)
    return before is not None and after is not None and after < before


# A list index, or the id a list of identified objects is keyed by (``rule.[id="raw"]``), in a path.
_LIST_INDEX = re.compile(r'\.?\[(?:\d+|id="(?:[^"\\]|\\.)*")\]')


def _by_id(value: Any) -> Any:
    """Lists of objects with distinct ``id`` strings (lifecycle rules) keyed by id, so a reordered list
    compares each rule with itself, not with whichever rule took its index."""
    if isinstance(value, dict):
        return {k: _by_id(v) for k, v in value.items()}
    if isinstance(value, list):
        ids = [item.get("id") for item in value if isinstance(item, dict)]
        if value and len(ids) == len(value) and all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids):
            return {f"[id={json.dumps(i)}]": _by_id(item) for i, item in zip(ids, value, strict=True)}
        return [_by_id(v) for v in value]
    return value


_RULE = re.compile(r'^rule(?:\[\d+\]|\.\[id="(?:[^"\\]|\\.)*"\])\.')


def _has_expiry(flat: dict[str, Any], path: str) -> bool:
    """Whether the lifecycle rule holding ``path`` expires objects (has a non-empty expiration)."""
    rule = _RULE.match(path)
    return rule is None or any(
        k.startswith(rule.group(0))
        and re.match(r"(noncurrent_version_)?expiration\b", k[rule.end() :])
        and v not in (None, [], {}, False)
        for k, v in flat.items()
    )


def data_loss_updates(rc: dict) -> list[dict]:
    """In-place updates that delete data or drop a guard against losing it, one finding each; a
    guarded value that becomes unknown until apply is flagged for review (it may be any value)."""
    change = rc["change"]
    before = drift_flatten(_by_id(change.get("before") or {}))
    after = drift_flatten(_by_id(change.get("after") or {}))
    unknown = {p for p, v in drift_flatten(_by_id(change.get("after_unknown") or {})).items() if v is True}
    found = []
    for path in sorted(set(before) | set(after) | unknown):
        old, new = before.get(path), after.get(path)
        if old == new and path not in unknown:
            continue
        bare = _LIST_INDEX.sub("", path)
        for pattern, loss, severity, why, types in DATA_LOSS_RULES:
            if not pattern.search(bare) or (types and rc["type"] not in types):
                continue
            if path in unknown:
                if old is None:
                    break
                shown, severity, why = f"{json.dumps(old)} -> {UNKNOWN}", "review", f"{why}? known only after apply"
            elif _lost(loss, bare, old, new) and (loss not in {"enabled", "widened"} or _has_expiry(after, path)):
                shown = f"{json.dumps(old)} -> {json.dumps(new)}"
            else:
                break
            found.append(
                {
                    "rule": "data-loss-update",
                    "severity": severity,
                    "address": rc["address"],
                    "why": f"{why} ({path}: {shown})",
                }
            )
            break
    return found


def drift_flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1]}}`` -> ``{"a.b[0]": 1}``; empty containers stay as leaves."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(drift_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(drift_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


# --- approvals ------------------------------------------------------------------------------------


def change_digest(rc: dict) -> str:
    """What an approval names besides the address: a hash of the whole change (address, type, actions,
    the redacted prior and planned values and what is unknown until apply), stable across re-plans of
    the same change, different for any other: an approval of "retention 365 -> 90" does not approve
    "365 -> 1", one of a replace does not approve a replace into different values."""
    change = rc["change"]
    body = {k: rc.get(k) for k in ("address", "type")}
    body.update(
        actions=change["actions"],
        before=change.get("before"),
        after=change.get("after"),
        after_unknown=change.get("after_unknown"),
    )
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def load_approvals(path: Path | None, title: str) -> list[dict]:
    """``plan-approvals.yaml``'s entries for this stack: ``{<stack>: [{address, digest, reason}]}``."""
    if path is None or not path.exists():
        return []
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping of stack name -> list of approvals")
    entries = data.get(title) or []
    if not isinstance(entries, list):
        raise PlanError(f"{path}: {title} is not a list of approvals")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("address", "digest")):
            raise PlanError(f"{path}: {title}[{i}] needs `address` and `digest` strings (from review.json)")
    return entries


# --- the review ------------------------------------------------------------------------------


_MODULE = re.compile(r'^((?:module\.[A-Za-z0-9_-]+(?:\[(?:\d+|"(?:[^"\\]|\\.)*")\])?\.)*)')


def module_of(address: str) -> str:
    """``module.a["k.1"].aws_x.y`` -> ``module.a["k.1"]``; the root module's resources -> ``(root module)``."""
    return _MODULE.match(address).group(1).rstrip(".") or "(root module)"


def _module_of(rc: dict) -> str:
    return rc.get("module_address") or module_of(rc["address"])


def _review_change(rc: dict, result: Review, configs: dict, approved: set[tuple[str, str]]) -> None:
    change = rc["change"]
    action = action_of(change["actions"])
    if rc.get("mode") == "data":
        if change["actions"] == ["read"]:  # a data source deferred to apply time
            result.counts["read"] += 1
            reason = REASONS.get(rc.get("action_reason", ""), rc.get("action_reason", ""))
            result.deferred_reads.append({"address": rc["address"], "reason": reason})
        elif change["actions"] != ["no-op"]:  # a data source is only ever read: anything else is not a plan's
            result.flags.append(_unknown_action(rc))
        return
    if rc.get("previous_address") and rc["previous_address"] != rc["address"]:
        result.counts["move"] += 1
        result.moves.append({"from": rc["previous_address"], "to": rc["address"]})
    if change.get("importing") is not None:
        result.counts["import"] += 1
        result.imports.append({"address": rc["address"], "id": change["importing"].get("id")})
    if action is None:
        return
    if action == "unknown":
        result.flags.append(_unknown_action(rc))
        result.changes.append(
            {"address": rc["address"], "type": rc["type"], "action": "unknown", "module": _module_of(rc)}
        )
        return
    kind = resource_classes.classify(rc["type"], rc.get("provider_name"))
    for counted in ("add", "forget") if action == "replace-forget" else (action,):
        result.counts[counted] += 1
    row = {"address": rc["address"], "type": rc["type"], "action": action, "module": _module_of(rc)}
    if rc.get("action_reason"):
        row["reason"] = REASONS.get(rc["action_reason"], rc["action_reason"])
    result.changes.append(row)
    if action in {"forget", "replace-forget"}:
        stateful = kind != "stateless"
        why = "left in AWS, unmanaged: it stays, orphaned and still billed"
        result.forgets.append({"address": rc["address"], "type": rc["type"], "stateful": stateful, "why": why})
    if action in {"destroy", "replace"} and kind in {"stateful", "unknown"}:
        lost = resource_classes.STATEFUL_TYPES.get(rc["type"])
        why = (
            STATEFUL_REASONS.get(rc["type"])
            or (f"{rc['type']}: {lost}" if lost else None)
            or (
                f"{rc['type']}: holds data or identity that a destroy loses (tools/resource_classes.json)"
                if kind == "stateful"
                else f"unclassified type {rc['type']} ({rc.get('provider_name', 'unknown provider')}): "
                "check what its destroy loses"
            )
        )
        finding = {"address": rc["address"], "action": action, "why": why, "module": _module_of(rc)}
        if action == "replace":
            finding["forced_by"] = [".".join(map(str, p)) for p in change.get("replace_paths") or []]
        finding["digest"] = change_digest(rc)
        if kind == "unknown":
            result.unclassified.append(finding)
        else:
            (result.allowed if (rc["address"], finding["digest"]) in approved else result.blocking).append(finding)
    if action == "change":
        for flag in data_loss_updates(rc):
            flag.update(module=_module_of(rc), digest=change_digest(rc))
            if flag["severity"] == "blocking" and (rc["address"], flag["digest"]) in approved:
                flag.update(severity="review", rule="data-loss-update-approved")
            result.flags.append(flag)
    config = configs.get(re.sub(r"\[[^\]]*\]", "", rc["address"]))
    result.policies += policy_changes(rc, action, set(config.get("expressions") or {}) if config else None)
    net = network_changes(rc, action)
    if net and (net["added"] or net["removed"] or net["flags"]):
        result.network.append(net)


def _unknown_action(rc: dict) -> dict:
    return _unknown_actions(rc["address"], _module_of(rc), rc["change"]["actions"])


def _unknown_actions(address: str, module: str, actions: Any) -> dict:
    return {
        "rule": "unknown-action",
        "severity": "blocking",
        "address": address,
        "module": module,
        "why": f"action list {json.dumps(actions)} is not one this review knows: read the plan before applying",
    }


BROKEN = (AttributeError, KeyError, TypeError, ValueError, IndexError, RecursionError)


def review(plan: dict, *, title: str, approvals: list[dict] | None = None, prices: dict) -> Review:
    """The review of a plan that passed ``check_plan``; a value of an unexpected shape deeper down
    is a PlanError naming the part of the plan it is in, never a traceback."""
    try:
        return _review(plan, title=title, approvals=approvals or [], prices=prices)
    except BROKEN as exc:
        raise PlanError(f"a value of an unexpected shape in the plan ({type(exc).__name__}: {exc})") from None


def _review(plan: dict, *, title: str, approvals: list[dict], prices: dict) -> Review:
    """Every value redacted first (``sanitized``), then each change, deferred change and output."""
    plan = sanitized(plan)
    result = Review(title=title)
    approved = {(a["address"], a["digest"]) for a in approvals}
    configs = config_resources((plan.get("configuration") or {}).get("root_module") or {})
    for index, rc in enumerate(plan.get("resource_changes") or []):
        try:
            _review_change(rc, result, configs, approved)
        except BROKEN as exc:
            raise PlanError(
                f"resource_changes[{index}] ({rc.get('address')}): "
                f"a value of an unexpected shape ({type(exc).__name__})"
            ) from None
    for deferred in plan.get("deferred_changes") or []:
        rc = deferred["resource_change"]
        action = action_of(rc["change"]["actions"])
        row = {
            "address": rc["address"],
            "action": action,
            "reason": deferred.get("reason", ""),
            "module": _module_of(rc),
        }
        result.deferred.append(row)
        stateful = resource_classes.classify(rc["type"], rc.get("provider_name")) != "stateless"
        if action in {"destroy", "replace", "unknown"} and stateful:
            why = (
                f"deferred {action} of {rc['type']} ({deferred.get('reason', '')}): data would be lost in a later apply"
            )
            result.flags.append(
                {
                    "rule": "deferred-stateful-destroy",
                    "severity": "blocking",
                    "address": rc["address"],
                    "module": row["module"],
                    "why": why,
                }
            )
    if plan.get("complete") is False:
        result.flags.append(
            {
                "rule": "incomplete-plan",
                "severity": "blocking",
                "address": "(plan)",
                "module": "(root module)",
                "why": f"the plan is incomplete (complete: false, {len(result.deferred)} deferred change(s)): "
                "apply, plan again and review the rest before trusting it",
            }
        )
    used = {(f["address"], f["digest"]) for f in result.allowed}
    used |= {(f["address"], f["digest"]) for f in result.flags if f["rule"] == "data-loss-update-approved"}
    result.unused_approvals = [a for a in approvals if (a["address"], a["digest"]) not in used]
    for stale in result.unused_approvals:  # left in, it would approve the same change if it came back
        result.flags.append(
            {
                "rule": "stale-approval",
                "severity": "blocking",
                "address": stale["address"],
                "module": module_of(stale["address"]),
                "why": f"plan-approvals.yaml approves {stale['digest']}, which matches no change of this plan "
                "(the change differs or is gone): remove the entry, or approve the digest review.json gives now",
            }
        )
    try:
        result.cost = cost_delta(plan, prices)
    except BROKEN as exc:
        raise PlanError(
            f"planned_values: a resource the cost estimate reads has an unexpected value ({type(exc).__name__})"
        ) from None
    plan_level_changes(plan, result)
    return result


# --- the Markdown --------------------------------------------------------------------------------


@dataclass
class Section:
    """A part of the report: a heading, lines, and a table header repeated when a part re-opens it."""

    heading: str
    lines: list[str]
    header: list[str] = field(default_factory=list)
    intro: list[str] = field(default_factory=list)


def _stmt_text(stmt: dict) -> str:
    return esc({k: v for k, v in stmt.items() if k != "Sid"}, limit=400)


def _finding_line(f: dict) -> str:
    forced = f" (forced by {', '.join(esc(p) for p in f['forced_by'])})" if f.get("forced_by") else ""
    action = f" **{esc(f['action'])}**" if f.get("action") else ""
    return f"- {esc(f['address'])}{action}: {esc(f['why'], limit=300)}{forced}"


FINDINGS_BUDGET = 40_000  # of part 1's characters, for the blocking and review items


_INSTANCE_KEY = re.compile(r'\[(?:\d+|"(?:[^"\\]|\\.)*")\]')


def module_call(module: str) -> str:
    """``module.site["a"].module.db[0]`` -> ``module.site[*].module.db[*]``: all instances of a call."""
    return _INSTANCE_KEY.sub("[*]", module)


def findings_section(result: Review) -> list[Section]:
    """Every blocking and review item grouped by module; if too long for part 1, counted per module
    call (for_each/count instances together) and rule, or per rule alone, so part 1 accounts for all."""
    sections = []
    for severity, heading in (("blocking", "BLOCKING"), ("review", "Needs review")):
        items = [f for f in result.findings() if f["severity"] == severity]
        if not items:
            continue
        by_module: dict[str, list[dict]] = {}
        for f in items:
            by_module.setdefault(f.get("module") or module_of(f["address"]), []).append(f)
        lines = []
        for module, found in sorted(by_module.items()):
            lines += [f"**{esc(module)}**", ""] + [_finding_line(f) for f in found] + [""]
        if sum(map(len, lines)) > FINDINGS_BUDGET // 2:
            lines = _counted(items, lambda f: module_call(f.get("module") or module_of(f["address"])))
        if sum(map(len, lines)) > FINDINGS_BUDGET // 2:
            lines = _counted(items, lambda f: "every module")
        sections.append(Section(f"### {heading}: {len(items)} item(s)", lines))
    return sections


def _counted(items: list[dict], group_of: Callable[[dict], str]) -> list[str]:
    """Items counted per group and rule, five named each; the full list is in review.json."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for f in items:
        groups.setdefault(group_of(f), {}).setdefault(f["rule"], []).append(f)
    lines = []
    for group, rules in sorted(groups.items()):
        lines.append(f"**{esc(group)}**: {sum(map(len, rules.values()))} item(s)")
        for rule, found in sorted(rules.items()):
            names = ", ".join(esc(f["address"], limit=60) for f in found[:5])
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            lines.append(f"- {len(found)} x {esc(rule)}: {names}{more} (all in review.json)")
    return [*lines, ""]


def _summary(result: Review) -> list[str]:
    c = result.counts
    icon = {"BLOCKING": "BLOCKING", "REVIEW": "needs review", "OK": "ok", "NO CHANGES": "no changes"}[result.verdict]
    line = (
        f"**Verdict: {icon}** - {c['add']} to add, {c['change']} to change, "
        f"{c['replace']} to replace, {c['destroy']} to destroy"
        + "".join(f", {c[k]} to {k}" for k in ("forget", "move", "import") if c[k])
        + (f", {c['read']} data reads deferred to apply" if c["read"] else "")
        + (f", {len(result.deferred)} change(s) deferred to a later plan" if result.deferred else "")
        + "."
    )
    out = [line, ""]
    needed = [f for f in result.findings() if f["severity"] == "blocking" and f.get("digest")]
    if needed:
        out += [
            f"{len(needed)} change(s) lose data. If intended, approve each in `plan-approvals.yaml` under "
            f"{esc(result.title)} (address and digest: `approvals_needed` in review.json), commit; CI reviews again.",
            "",
        ]
    if result.unused_approvals:
        out += [
            f"{len(result.unused_approvals)} approval(s) in plan-approvals.yaml match no change of this plan "
            "(address or digest differ): they block until removed, so none can approve a later change.",
            "",
        ]
    return out


def _listed(heading: str, lines: list[str]) -> list[Section]:
    """A bullet-list section, or none when there is nothing to list."""
    return [Section(heading, [*lines, ""])] if lines else []


def sections(result: Review) -> tuple[list[str], list[Section]]:
    """(the head of part 1, the sections in order); part 1 always holds the findings."""
    out = findings_section(result)
    out += _listed(
        "### Deferred to a later plan",
        [f"- {esc(d['address'])} {esc(d['action'])}: {esc(d['reason'])}" for d in result.deferred],
    )
    orphaned = " - **stateful: it stays, orphaned and still billed**"
    out += _listed(
        "### Forgotten: Terraform stops managing these and leaves them in AWS",
        [f"- {esc(f['address'])}{orphaned if f['stateful'] else ''}" for f in result.forgets],
    )
    out += _listed("### Moved", [f"- {esc(m['from'])} -> {esc(m['to'])}" for m in result.moves])
    out += _listed("### Imported", [f"- {esc(i['address'])} from id {esc(i['id'])}" for i in result.imports])
    lines = []
    for p in result.policies:
        flag = f" - **widening: {esc('; '.join(p['widening']), limit=400)}**" if p["widening"] else ""
        if p["type"] == "aws_s3_bucket_policy":
            flag = " - **bucket policy changed**" + flag
        lines.append(f"- {esc(p['address'])} {p['kind']} {esc(p['attribute'])} ({p['action']}){flag}")
        if p["note"]:
            lines.append(f"  - {esc(p['note'], limit=300)}")
        lines += [f"  - added {_stmt_text(s)}" for s in p["added"]]
        lines += [f"  - removed {_stmt_text(s)}" for s in p["removed"]]
    out += _listed("### IAM and resource policies", lines)
    lines = []
    for n in result.network:
        flag = f" - **{esc('; '.join(n['flags']), limit=300)}**" if n["flags"] else ""
        lines.append(f"- {esc(n['address'])} ({n['action']}){flag}")
        lines += [f"  - added {esc(r)}" for r in n["added"]] + [f"  - removed {esc(r)}" for r in n["removed"]]
    out += _listed("### Security groups, network ACLs and public access", lines)
    out += cost_sections(result.cost)
    out += _listed(
        "### Outputs",
        [f"- {esc(o['name'])} {o['action']}: {esc(o['before'])} -> {esc(o['after'])}" for o in result.outputs],
    )
    out += _listed(
        "### Data sources read at apply time",
        [f"- {esc(d['address'])}: {esc(d['reason'])}" for d in result.deferred_reads],
    )
    out += _listed(
        "### Drift Terraform found while planning (changed outside Terraform)",
        [f"- {esc(d['address'])} ({esc(', '.join(d['actions']))})" for d in result.drift],
    )
    if result.changes:
        out.append(
            Section(
                "### Every change",
                [f"| {esc(ch['address'])} | {ch['action']} | {esc(ch.get('reason', ''))} |" for ch in result.changes]
                + [""],
                header=["| address | action | why |", "|---|---|---|"],
            )
        )
    return _summary(result), out


def cost_sections(cost: dict) -> list[Section]:
    intro = [
        f"Estimated monthly delta: **{cost['monthly_delta_usd']:+.2f} USD** (fixed-price resources only; "
        f"usage such as data transfer, requests and compute is not included). "
        f"This is an estimate from the {esc(cost['region'])} price table dated {esc(cost['price_date'])}.",
        "",
    ]
    rows = [
        f"| {esc(i['address'])} | {i['action']} | {i['monthly_usd']:+.2f} | {esc(i['basis'])} |" for i in cost["items"]
    ]
    out = [
        Section(
            "### Estimated cost",
            rows + ([""] if rows else []),
            header=["| address | action | USD/month | basis |", "|---|---|---:|---|"] if rows else [],
            intro=intro,
        )
    ]
    priced = [r for r in cost["per_job_hour"] if r.get("instance_type")]
    if priced:
        rows = [
            f"| {esc(r['job_definition'])} | {esc(r['instance_type'])} | {r['on_demand_usd']:.4f} "
            f"| {r['spot_usd']:.4f} |"
            for r in priced
        ]
        rows += [
            f"| **one job-hour of every stage** | | {sum(r['on_demand_usd'] for r in priced):.4f} | "
            f"{sum(r['spot_usd'] for r in priced):.4f} |",
            "",
        ]
        out.append(
            Section(
                "### Per run (Batch)",
                rows,
                header=[
                    "| job definition | instance | on-demand USD/h | spot USD/h (typical) |",
                    "|---|---:|---:|---:|",
                ],
                intro=[
                    "One job-hour of each stage on the cheapest instance that fits it "
                    "(separate from the monthly figure).",
                    "",
                ],
            )
        )
    return out


COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
MAX_PARTS = 5
FULL_REVIEW = "the full review is review.md in this job's summary and in the plan artifact"


_TABLE_RULE = re.compile(r"^\|[-:| ]+\|$")


def _split_sections(text: str) -> tuple[list[str], list[Section]]:
    """Review Markdown back into (head, sections): a section starts at a ``### `` line; its table
    header is the row before the first ``|---|`` rule, re-opened wherever a part cuts the table."""
    head: list[str] = []
    found: list[Section] = []
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("### "):
            found.append(Section(line, []))
        elif found:
            sec = found[-1]
            if not sec.header and _TABLE_RULE.match(line) and sec.lines and sec.lines[-1].startswith("|"):
                sec.header = [sec.lines.pop(), line]
                sec.intro, sec.lines = sec.lines, []
            else:
                sec.lines.append(line)
        else:
            head.append(line)
    return head, found


def split_comment(
    text: str, title: str, limit: int = COMMENT_LIMIT, max_parts: int | None = MAX_PARTS, pointer: str | None = None
) -> list[str]:
    """Review Markdown as PR comments of at most ``limit`` characters, cut between lines: part 1 holds
    everything before the first section cut (the verdict, the counts, every blocking and review
    item); a section cut over parts re-opens with its heading (and its table header inside a table);
    after ``max_parts`` (None: no cap) the last part says where the full review is."""
    if len(text) <= limit:
        return [text]
    pointer = pointer or os.environ.get("PLAN_REVIEW_FULL_URL") or FULL_REVIEW
    head, secs = _split_sections(text)
    parts: list[list[str]] = [head]
    sizes = [sum(len(x) + 1 for x in head)]
    room = limit - 1_000  # the part header and the pointer

    def add(lines: list[str], new_part: bool = False) -> None:
        if new_part:
            parts.append([])
            sizes.append(0)
        parts[-1].extend(lines)
        sizes[-1] += sum(len(x) + 1 for x in lines)

    for sec in secs:
        opening = [sec.heading, *sec.intro, *sec.header]
        first = len(sec.lines[0]) if sec.lines else 0
        add(opening, new_part=sizes[-1] + sum(len(x) + 1 for x in opening) + first > room)
        for line in sec.lines:
            if len(line) > room // 2:  # never from the review (its values are cut); from an appended section
                line = f"{line[: room // 2]}... (line of {len(line):,} chars cut)"
            if sizes[-1] + len(line) + 1 > room:
                table = sec.header and line.startswith("|")
                add([f"{sec.heading} (continued)", "", *(sec.header if table else [])], new_part=True)
            add([line])
        if max_parts and len(parts) > max_parts:
            del parts[max_parts:]
            parts[-1] += ["", f"**Review cut after part {max_parts}: {esc(pointer, limit=300)}.**"]
            break
    texts = ["\n".join(p).rstrip("\n") + "\n" for p in parts]
    return [f"**Plan review: {esc(title)} (part {i}/{len(texts)})**\n\n{t}" for i, t in enumerate(texts, 1)]


def render(result: Review, limit: int = COMMENT_LIMIT, max_parts: int | None = MAX_PARTS) -> list[str]:
    """The review's PR comment parts (``split_comment`` of its Markdown)."""
    return split_comment(markdown(result), result.title, limit, max_parts)


def _join(head: list[str], secs: list[Section]) -> str:
    lines = list(head)
    for sec in secs:
        lines += [sec.heading, "", *sec.intro, *sec.header, *sec.lines]
    return "\n".join(lines).rstrip("\n") + "\n"


def markdown(result: Review, built: tuple[list[str], list[Section]] | None = None) -> str:
    """The whole review in one document (review.md, the job summary)."""
    head, secs = built or sections(result)
    return _join([f"## Plan review: {esc(result.title)}", "", *head], secs)


def _fail_code(result: Review, fail_on: str) -> int:
    if result.verdict == "BLOCKING":
        return 2
    return 3 if fail_on == "review" and result.verdict == "REVIEW" else 0


SUMMARY_LIMIT = 1_000_000  # bytes: GitHub refuses a job summary over 1 MiB
SUMMARY_CUT = (
    "\n\n**Review cut here ({size:,} bytes; a job summary holds 1 MiB)**: the full review.md is in the plan artifact.\n"
)


def step_summary(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """The review for ``$GITHUB_STEP_SUMMARY``: whole if it fits in ``limit`` UTF-8 bytes, else cut
    at the last whole line that fits, with a line saying so and where the full review is."""
    size = len(text.encode())
    if size <= limit:
        return text
    note = SUMMARY_CUT.format(size=size)
    room = limit - len(note.encode())
    head = text.encode()[:room].decode(errors="ignore")
    return head[: head.rfind("\n") + 1] + note


def write_review(path: Path, text: str, title: str, max_parts: int | None = MAX_PARTS) -> None:
    """review.md, its PR-comment parts (review.part-N.md) and its job-summary cut (review.summary.md)."""
    path.write_text(text)
    for stale in path.parent.glob(f"{path.stem}.part-*.md"):
        stale.unlink()
    for index, part in enumerate(split_comment(text, title, max_parts=max_parts), 1):
        path.with_name(f"{path.stem}.part-{index}.md").write_text(part)
    path.with_name(f"{path.stem}.summary.md").write_text(step_summary(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan_review", description=__doc__.split("\n")[0])
    parser.add_argument("plan", type=Path, help="terraform show -json output")
    parser.add_argument("--markdown", type=Path, help="write the Markdown report here (default: stdout)")
    parser.add_argument("--json", type=Path, help="write the JSON summary here")
    parser.add_argument("--title", help="report title and plan-approvals.yaml key (default: the plan file's folder)")
    parser.add_argument("--approvals", type=Path, help="plan-approvals.yaml: destroys approved in the PR")
    parser.add_argument(
        "--fail-on", choices=["blocking", "review"], default="blocking", help="review: exit 3 on REVIEW"
    )
    parser.add_argument(
        "--max-parts", type=int, default=MAX_PARTS, help="PR comment parts at most, 1 or more (default 5)"
    )
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES, help="price table JSON")
    args = parser.parse_args(argv)
    title = args.title or args.plan.resolve().parent.name
    if args.max_parts < 1:
        print(f"error: --max-parts must be 1 or more (PR comment parts), got {args.max_parts}", file=sys.stderr)
        return 2
    if args.approvals is not None and args.approvals.is_dir():
        print(f"error: --approvals {args.approvals} is a folder; pass the plan-approvals.yaml file", file=sys.stderr)
        return 2
    try:
        plan = load_plan(args.plan)
        approvals = load_approvals(args.approvals, title)
        prices = json.loads(args.prices.read_text())
        result = review(plan, title=title, approvals=approvals, prices=prices)
    except PlanError as exc:
        print(f"error: {esc(str(exc), limit=400, markdown=False)}", file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: price table {args.prices}: {exc}", file=sys.stderr)
        return 1
    report = markdown(result)
    if args.markdown:
        write_review(args.markdown, report, title, max_parts=args.max_parts)
    else:
        print(report)
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    c = result.counts
    print(
        f"plan review: {result.verdict}: +{c['add']} ~{c['change']} -/+{c['replace']} -{c['destroy']}, "
        f"{sum(f['severity'] == 'blocking' for f in result.findings())} blocking, "
        f"{sum(bool(p['widening']) for p in result.policies)} widening policy "
        f"change(s), {sum(bool(n['flags']) for n in result.network)} flagged network change(s), "
        f"cost {result.cost['monthly_delta_usd']:+.2f} USD/month "
        f"(estimate, prices of {esc(result.cost['price_date'], markdown=False)})",
        file=sys.stderr,
    )
    for finding in result.findings()[:50]:
        if finding["severity"] == "blocking":
            print(
                f"BLOCKING: {esc(finding['address'], markdown=False)} ({esc(finding['why'], 200, markdown=False)})",
                file=sys.stderr,
            )
    return _fail_code(result, args.fail_on)


if __name__ == "__main__":
    cli.run(main)
