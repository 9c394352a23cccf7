"""make cost-tags (pipeline_ops/cost_tags.py) against the responses Cost Explorer documents.

moto has no cost allocation tag API, so botocore's Stubber answers with the documented shapes
(it validates every request and response against the service model):
https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_ListCostAllocationTags.html
https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_UpdateCostAllocationTagsStatus.html
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_ops import cost_tags

KEYS = list(cost_tags.TAG_KEYS)


def listed(**status: str) -> dict:
    return {"CostAllocationTags": [{"TagKey": k, "Type": "UserDefined", "Status": v} for k, v in status.items()]}


@pytest.fixture
def ce():
    client = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_first_day_keys_do_not_exist_yet(ce) -> None:
    client, stub = ce
    stub.add_response("list_cost_allocation_tags", listed(), {"TagKeys": KEYS, "Type": "UserDefined"})
    lines, code = cost_tags.activate(client)
    assert code == 1 and len(lines) == 1
    assert "CostScope, Stage do(es) not exist yet" in lines[0] and "up to 24 h" in lines[0]


def test_activates_what_exists_and_is_safe_to_repeat(ce) -> None:
    client, stub = ce
    stub.add_response(
        "list_cost_allocation_tags", listed(CostScope="Inactive"), {"TagKeys": KEYS, "Type": "UserDefined"}
    )
    stub.add_response(
        "update_cost_allocation_tags_status",
        {"Errors": []},
        {"CostAllocationTagsStatus": [{"TagKey": "CostScope", "Status": "Active"}]},
    )
    stub.add_response(
        "list_cost_allocation_tags",
        listed(CostScope="Active", Stage="Active"),
        {"TagKeys": KEYS, "Type": "UserDefined"},
    )
    lines, code = cost_tags.activate(client)
    assert code == 1 and lines[0] == "cost-tags: CostScope activated" and "Stage do(es) not exist yet" in lines[1]
    lines, code = cost_tags.activate(client)  # the next day: nothing to change, no update call
    assert (code, lines) == (0, ["cost-tags: CostScope already active", "cost-tags: Stage already active"])


def test_an_error_per_key_is_told(ce) -> None:
    client, stub = ce
    stub.add_response(
        "list_cost_allocation_tags",
        listed(CostScope="Inactive", Stage="Active"),
        {"TagKeys": KEYS, "Type": "UserDefined"},
    )
    error = {"TagKey": "CostScope", "Code": "TagKeysNotFoundException", "Message": "Tag key not found"}
    stub.add_response(
        "update_cost_allocation_tags_status",
        {"Errors": [error]},
        {"CostAllocationTagsStatus": [{"TagKey": "CostScope", "Status": "Active"}]},
    )
    lines, code = cost_tags.activate(client)
    assert code == 1
    assert "cost-tags: CostScope not activated: TagKeysNotFoundException: Tag key not found" in lines


def test_member_account_is_told_to_use_the_management_account(ce, monkeypatch, capsys) -> None:
    """UNPROVEN: no AWS page documents what ListCostAllocationTags / UpdateCostAllocationTagsStatus
    answer a member account. AccessDeniedException is one of the common errors every action may
    return (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/CommonErrors.html);
    its message here is invented. Verify with `make cost-tags ENV=dev` from a member account."""
    client, stub = ce
    stub.add_client_error("list_cost_allocation_tags", "AccessDeniedException", "not the management account")
    monkeypatch.setattr(boto3, "client", lambda *a, **k: client)
    assert cost_tags.main(["dev"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: not the management account; in an AWS Organization only the management account")
    assert "\n" not in error
