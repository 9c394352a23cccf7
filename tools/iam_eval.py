"""AWS's policy evaluation for one request, for ``tools.iam_check`` (our own code: principalmapper, the
simulator the issue suggested, is AGPL-3.0, unmaintained since 2021 and unsound in four ways the review
of issue 26 found: resources matched case-insensitively, negated operators false on an absent key, the
boundary skipped when a resource policy names the role, ``+`` in an ARN not escaped).

What it implements, each from the AWS page cited at the function:
- matching of Action/NotAction (case-insensitive), Resource/NotResource (case-sensitive, per ARN
  segment, ``*`` and ``?``), Principal/NotPrincipal, policy variables ``${key}`` from the request;
- every condition operator with ``...IfExists``, ``ForAnyValue:``/``ForAllValues:``, ``Null``, and the
  negated operators' rule that an absent key matches;
- the same-account decision: an explicit deny anywhere wins; a resource policy that names the role
  (or ``*``) allows without an identity policy, one that names the account only delegates to the
  identity policies; a permissions boundary caps both; a KMS key policy must allow the role or
  delegate to the account. SCPs and session policies do not apply to this check.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

Context = dict[str, Any]  # condition key -> value or list of values (keys compared case-insensitively)


class PolicyError(ValueError):
    """A policy element this evaluator does not know: refused rather than guessed."""


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def lowered(context: Context) -> Context:
    return {k.lower(): v for k, v in context.items()}


# -- matching ----------------------------------------------------------------------------------

POLICY_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def substitute(text: str, context: Context) -> str | None:
    """Policy variables ``${aws:username}``, ``${*}``, ``${?}``, ``${$}`` replaced from the request; None when
    a variable's key is absent (then nothing matches). ``${...}`` without a colon (an unresolved Terraform
    reference) stays as text.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html"""
    missing = False

    def one(match: re.Match) -> str:
        nonlocal missing
        key = match.group(1)
        if key in ("*", "?", "$"):
            return "\0" + key  # a literal character, not a wildcard (marked for the glob)
        if ":" not in key:
            return match.group(0)
        value = context.get(key.lower())
        if value is None or isinstance(value, list):
            missing = True
            return ""
        return str(value).replace("*", "\0*").replace("?", "\0?")

    out = POLICY_VARIABLE.sub(one, text)
    return None if missing else out


def glob(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """``*`` any run of characters, ``?`` one; everything else literal (``+``, ``.`` included)."""
    parts = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\0" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.fullmatch("".join(parts), text, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def action_matches(pattern: str, action: str) -> bool:
    """Action names are case-insensitive.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html"""
    return glob(str(pattern), action, ignore_case=True)


def arn_matches(pattern: str, arn: str, context: Context | None = None) -> bool:
    """Case-sensitive; each of the first five colon-separated ARN segments matched on its own, the
    resource part (which may hold colons) as a whole.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_ARN"""
    pattern = substitute(str(pattern), context or {})
    if pattern is None:
        return False
    if pattern == "*":
        return True
    wanted, given = pattern.split(":", 5), arn.split(":", 5)
    if len(wanted) != 6 or len(given) != 6:
        return glob(pattern, arn)
    return all(glob(w, g) for w, g in zip(wanted, given, strict=True))


# -- conditions ----------------------------------------------------------------------------------


def _date(value: Any) -> float:
    text = str(value)
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


def _ip(request: Any, policy: Any) -> bool:
    try:
        return ipaddress.ip_address(str(request)) in ipaddress.ip_network(str(policy), strict=False)
    except ValueError:
        return False


def _binary(request: Any, policy: Any) -> bool:
    return base64.b64decode(str(policy)) == (request if isinstance(request, bytes) else base64.b64decode(str(request)))


# base operator -> (matches(request value, policy value, context), negated)
OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (lambda r, p, c: substitute(str(p), c) == str(r), False),
    "StringNotEquals": (lambda r, p, c: substitute(str(p), c) == str(r), True),
    "StringEqualsIgnoreCase": (lambda r, p, c: (substitute(str(p), c) or "\0").lower() == str(r).lower(), False),
    "StringNotEqualsIgnoreCase": (lambda r, p, c: (substitute(str(p), c) or "\0").lower() == str(r).lower(), True),
    "StringLike": (lambda r, p, c: (s := substitute(str(p), c)) is not None and glob(s, str(r)), False),
    "StringNotLike": (lambda r, p, c: (s := substitute(str(p), c)) is not None and glob(s, str(r)), True),
    "NumericEquals": (lambda r, p, c: float(r) == float(p), False),
    "NumericNotEquals": (lambda r, p, c: float(r) == float(p), True),
    "NumericLessThan": (lambda r, p, c: float(r) < float(p), False),
    "NumericLessThanEquals": (lambda r, p, c: float(r) <= float(p), False),
    "NumericGreaterThan": (lambda r, p, c: float(r) > float(p), False),
    "NumericGreaterThanEquals": (lambda r, p, c: float(r) >= float(p), False),
    "DateEquals": (lambda r, p, c: _date(r) == _date(p), False),
    "DateNotEquals": (lambda r, p, c: _date(r) == _date(p), True),
    "DateLessThan": (lambda r, p, c: _date(r) < _date(p), False),
    "DateLessThanEquals": (lambda r, p, c: _date(r) <= _date(p), False),
    "DateGreaterThan": (lambda r, p, c: _date(r) > _date(p), False),
    "DateGreaterThanEquals": (lambda r, p, c: _date(r) >= _date(p), False),
    "Bool": (lambda r, p, c: str(r).lower() == str(p).lower(), False),
    "BinaryEquals": (lambda r, p, c: _binary(r, p), False),
    "IpAddress": (lambda r, p, c: _ip(r, p), False),
    "NotIpAddress": (lambda r, p, c: _ip(r, p), True),
    "ArnEquals": (lambda r, p, c: arn_matches(p, str(r), c), False),
    "ArnLike": (lambda r, p, c: arn_matches(p, str(r), c), False),
    "ArnNotEquals": (lambda r, p, c: arn_matches(p, str(r), c), True),
    "ArnNotLike": (lambda r, p, c: arn_matches(p, str(r), c), True),
}


def operator_holds(operator: str, key: str, policy_values: Any, context: Context) -> bool:
    """One operator on one key, as the condition pages define it:
    - a single-valued operator: the request value matches any policy value (negated: none); a key the
      request lacks fails, except for ``...IfExists`` and the negated operators, where it matches;
    - ``ForAnyValue:``: some request value matches (absent or empty: fails); ``ForAllValues:``: every
      request value matches (absent or empty: holds);
    - ``Null``: ``true`` when the key is absent, ``false`` when present.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html"""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    base = base.removesuffix("IfExists") if if_exists else base
    value = context.get(key.lower())
    present = value is not None and value != []
    if base == "Null":
        return all((str(p).lower() == "true") != present for p in as_list(policy_values))
    if base not in OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise PolicyError(f"condition operator {operator!r} is not one this check evaluates")
    match, negated = OPERATORS[base]
    policy_values = as_list(policy_values)
    request_values = as_list(value)

    def one(request: Any) -> bool:
        hit = any(match(request, p, context) for p in policy_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(r) for r in request_values)
    if qualifier == "ForAnyValue":
        return (if_exists and not present) or any(one(r) for r in request_values)
    if not present:
        return if_exists or negated
    return any(one(r) for r in request_values) if not negated else all(one(r) for r in request_values)


def condition_holds(condition: dict | None, context: Context) -> bool:
    """Every operator's block holds, and within one every key (AND); a key's values are ORed."""
    context = lowered(context)
    return all(
        operator_holds(operator, key, values, context)
        for operator, block in (condition or {}).items()
        for key, values in block.items()
    )


# -- statements and principals ------------------------------------------------------------------


def principal_match(statement: dict, principal: str, account: str) -> str | None:
    """How a resource-policy statement's Principal names the requester: ``direct`` (the role itself, the
    service, or ``*``), ``account`` (the requester's account: a delegation to its identity policies),
    or None. ``NotPrincipal`` inverts it (``direct`` for everyone not listed).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html"""
    if "NotPrincipal" in statement:
        listed = _principal_in(statement["NotPrincipal"], principal, account)
        return None if listed else "direct"
    return _principal_in(statement.get("Principal"), principal, account)


def _principal_in(element: Any, principal: str, account: str) -> str | None:
    if element == "*":
        return "direct"
    if not isinstance(element, dict):
        return None
    is_service = principal.endswith(".amazonaws.com") or principal.endswith(".amazonaws.com.cn")
    if is_service:
        services = [str(s) for s in as_list(element.get("Service"))]
        return "direct" if principal in services or "*" in as_list(element.get("AWS")) else None
    found = None
    for value in (str(v) for v in as_list(element.get("AWS"))):
        if value == "*" or value == principal:
            return "direct"
        if value in (account, f"arn:aws:iam::{account}:root") and f":{account}:" in principal:
            found = "account"
    return found


def statement_applies(statement: dict, action: str, resource: str, context: Context) -> bool:
    """Action/NotAction, Resource/NotResource and Condition of one statement match the request."""
    context = lowered(context)
    if "NotAction" in statement:
        if any(action_matches(p, action) for p in as_list(statement["NotAction"])):
            return False
    elif not any(action_matches(p, action) for p in as_list(statement.get("Action"))):
        return False
    if "NotResource" in statement:
        if any(arn_matches(p, resource, context) for p in as_list(statement["NotResource"])):
            return False
    elif "Resource" in statement and not any(arn_matches(p, resource, context) for p in as_list(statement["Resource"])):
        return False
    return condition_holds(statement.get("Condition"), context)


def matching(
    statements: Iterable[dict],
    effect: str,
    action: str,
    resource: str,
    context: Context,
    principal: tuple[str, str] | None = None,
) -> list[tuple[dict, str]]:
    """The statements of ``effect`` that apply, each with how it names the principal (``principal``:
    (requester, account) for a resource policy; identity policies name none: ``direct``)."""
    found = []
    for statement in statements:
        if statement.get("Effect") != effect or not statement_applies(statement, action, resource, context):
            continue
        how = principal_match(statement, *principal) if principal else "direct"
        if how:
            found.append((statement, how))
    return found
