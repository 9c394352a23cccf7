"""Activate the cost allocation tags the budget, the anomaly monitor and the cost reports select on:
``make cost-tags ENV=<env>``. Safe to repeat (activating an active key changes nothing).

Not part of any apply: a user-defined tag key can only be activated once tagged usage has made it
exist, up to 24 hours after the first tagged resource, and in an AWS Organization only the
management account may activate tags. Until then the tag-filtered budget, GuardBudget and the
anomaly monitor see 0 USD, so run this the day after the first deploy of an account (and again
until it reports every key active).

https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/activating-tags.html
https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_UpdateCostAllocationTagsStatus.html

    python -m pipeline_ops.cost_tags <env>
"""

from __future__ import annotations

import sys
from typing import Any

from tools import cli

# CostScope: the budget's and the anomaly monitor's one filter; Stage: cost per stage (cost reports).
TAG_KEYS = ("CostScope", "Stage")
ORGANIZATION_HINT = (
    "in an AWS Organization only the management account can activate cost allocation tags: "
    "run this with its credentials (or activate them in its Billing console)"
)


def activate(ce: Any, keys: tuple[str, ...] = TAG_KEYS) -> tuple[list[str], int]:
    """Lines to print and the exit code: 0 when every key is active, 1 otherwise."""
    found = {
        tag["TagKey"]: tag["Status"]
        for page in ce.get_paginator("list_cost_allocation_tags").paginate(TagKeys=list(keys), Type="UserDefined")
        for tag in page["CostAllocationTags"]
    }
    lines, missing = [], [k for k in keys if k not in found]
    inactive = [k for k in keys if found.get(k) == "Inactive"]
    errors = []
    if inactive:
        entries = [{"TagKey": k, "Status": "Active"} for k in inactive]
        errors = ce.update_cost_allocation_tags_status(CostAllocationTagsStatus=entries).get("Errors", [])
    failed = {e["TagKey"] for e in errors}
    lines += [f"cost-tags: {k} already active" for k in keys if found.get(k) == "Active"]
    lines += [f"cost-tags: {k} activated" for k in inactive if k not in failed]
    lines += [f"cost-tags: {e['TagKey']} not activated: {e.get('Code')}: {e.get('Message')}" for e in errors]
    if missing:
        lines.append(
            f"cost-tags: {', '.join(missing)} do(es) not exist yet: keys appear up to 24 h after the first "
            "tagged usage (deploy first, then run `make cost-tags` again tomorrow); until then the budget "
            "and the anomaly monitor see 0 USD"
        )
    return lines, 0 if not missing and not errors else 1


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipeline_ops.cost_tags <env>", file=sys.stderr)
        return 2
    from conf import load_profile

    profile = load_profile(argv[0])
    if not profile.monitoring.cost_allocation_tags:
        print(f"error: {argv[0]} has no Cost Explorer (monitoring.cost_allocation_tags: false)", file=sys.stderr)
        return 2
    import boto3
    from botocore.exceptions import ClientError

    try:
        lines, code = activate(boto3.client("ce", region_name="us-east-1"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in cli.REFUSED:
            print(
                f"error: {exc.response['Error'].get('Message', 'access denied')}; {ORGANIZATION_HINT}", file=sys.stderr
            )
            return 2
        raise
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
