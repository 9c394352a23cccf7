"""Per-account bootstrap: the S3 bucket holding the Terraform state of that account's environments."""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.ce_cost_allocation_tag import CeCostAllocationTag
from constructs import Construct

from conf import Profile
from modules.backend import local_backend
from modules.provider import pipeline_provider
from modules.state_bucket import StateBucket, StateBucketProps

COST_ALLOCATION_TAGS = ("Project", "Environment", "CostCenter")


def bootstrap_stack_id(profile: Profile) -> str:
    return f"state-bootstrap-{profile.account_id}"


class StateBootstrapStack(TerraformStack):
    """Applied once per account with a local backend; every cloud env's S3 backend points here."""

    def __init__(self, scope: Construct, profile: Profile) -> None:
        stack_id = bootstrap_stack_id(profile)
        super().__init__(scope, stack_id)
        local_backend(self, stack_id, f".state/{stack_id}/terraform.tfstate")
        pipeline_provider(self, profile)
        bucket = StateBucket(
            self,
            "state",
            StateBucketProps(bucket_name=profile.state_backend.bucket),
        )
        TerraformOutput(self, "state_bucket", value=bucket.bucket_name)
        if profile.monitoring.cost_allocation_tags:
            # Account-wide, so here (once per account) rather than in each environment's stack.
            for tag in COST_ALLOCATION_TAGS:
                CeCostAllocationTag(self, f"cost-tag-{tag.lower()}", tag_key=tag, status="Active")
