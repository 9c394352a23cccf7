"""The Odins Ravne pipeline stack, identical in shape for every environment."""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from constructs import Construct

from conf import Profile
from modules.backend import configure_backend
from modules.encryption import PipelineKey, PipelineKeyProps
from modules.provider import pipeline_provider


def pipeline_stack_id(profile: Profile) -> str:
    return f"pipeline-{profile.name}"


class PipelineStack(TerraformStack):
    """Composes the pipeline's modules from one profile; nothing here branches on the env name."""

    def __init__(self, scope: Construct, profile: Profile) -> None:
        stack_id = pipeline_stack_id(profile)
        super().__init__(scope, stack_id)
        self.profile = profile
        configure_backend(self, stack_id, profile)
        pipeline_provider(self, profile)
        account_id = profile.account_id or DataAwsCallerIdentity(self, "caller").account_id

        self.key = PipelineKey(
            self,
            "pipeline-key",
            PipelineKeyProps(
                prefix=profile.prefix,
                account_id=account_id,
                region=profile.region,
                prevent_destroy=profile.is_cloud and not profile.data_lake.force_destroy,
            ),
        )
        TerraformOutput(self, "pipeline_key_arn", value=self.key.key_arn, description="Pipeline KMS key ARN")
