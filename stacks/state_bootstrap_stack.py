"""Per-account bootstrap: the S3 bucket holding the Terraform state of that account's environments."""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from constructs import Construct

from conf import Profile
from modules.backend import local_backend
from modules.provider import pipeline_provider
from modules.state_bucket import StateBucket, StateBucketProps


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
