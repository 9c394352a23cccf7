"""The Odins Ravne pipeline stack, identical in shape for every environment."""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from constructs import Construct

from conf import Profile
from modules.backend import configure_backend
from modules.batch_compute import BatchCompute, BatchComputeProps, StageIo
from modules.container_registry import StageRepositories, StageRepositoriesProps
from modules.data_lake import DataLake, DataLakeProps
from modules.encryption import PipelineKey, PipelineKeyProps
from modules.network import Network, NetworkProps
from modules.provider import pipeline_provider

# The stage data contract (images/README.md): each stage reads its inputs and writes one prefix.
STAGE_IO = {
    "stage0": StageIo(reads=(("raw", "manifests"), ("raw", "images")), writes=("processed", "stage0")),
    "stage1": StageIo(reads=(("processed", "stage0"),), writes=("processed", "stage1")),
    "stage2": StageIo(reads=(("processed", "stage1"),), writes=("processed", "stage2")),
}


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
        replica_region = profile.data_lake.replica_region
        replica_provider = (
            pipeline_provider(self, profile, region=replica_region, alias="replica") if (replica_region) else None
        )
        account_id = profile.account_id or DataAwsCallerIdentity(self, "caller").account_id
        prefix = profile.prefix

        self.key = PipelineKey(
            self,
            "pipeline-key",
            PipelineKeyProps(
                prefix=prefix,
                account_id=account_id,
                region=profile.region,
                prevent_destroy=profile.data_lake.prevent_destroy,
            ),
        )
        self.network = Network(
            self,
            "network",
            NetworkProps(
                prefix=prefix,
                region=profile.region,
                cidr=profile.network.cidr,
                az_count=profile.network.az_count,
                egress=profile.network.egress,
                log_retention_days=profile.logs.retention_days,
                kms_key_arn=self.key.key_arn,
                account_id=account_id,
            ),
        )
        self.data_lake = DataLake(
            self,
            "data-lake",
            DataLakeProps(
                prefix=prefix,
                account_id=account_id,
                region=profile.region,
                key=self.key,
                settings=profile.data_lake,
                replica_provider=replica_provider,
            ),
        )
        self.repositories = StageRepositories(
            self,
            "ecr",
            StageRepositoriesProps(
                prefix=prefix,
                stages=tuple(STAGE_IO),
                kms_key_arn=self.key.key_arn,
                keep_last_images=profile.ecr.keep_last_images,
                force_delete=profile.data_lake.force_destroy,
            ),
        )
        self.batch = BatchCompute(
            self,
            "batch",
            BatchComputeProps(
                prefix=prefix,
                environment=profile.name,
                region=profile.region,
                account_id=account_id,
                settings=profile.batch,
                stage_io=STAGE_IO,
                subnet_ids=self.network.private_subnet_ids,
                security_group_ids=[self.network.batch_security_group_id],
                data_lake=self.data_lake,
                repositories=self.repositories,
                log_retention_days=profile.logs.retention_days,
                kms_key_arn=self.key.key_arn,
                log_level=profile.log_level,
            ),
        )

        TerraformOutput(self, "pipeline_key_arn", value=self.key.key_arn, description="Pipeline KMS key ARN")
        for name, bucket in self.data_lake.buckets.items():
            TerraformOutput(self, f"bucket_{name}", value=bucket.bucket_name, description=f"{name} bucket")
        for name in self.batch.queues:
            TerraformOutput(self, f"job_queue_{name}_arn", value=self.batch.queue_arn(name))
        for stage in STAGE_IO:
            TerraformOutput(self, f"job_definition_{stage}_arn", value=self.batch.job_definition_arn(stage))
            TerraformOutput(self, f"ecr_{stage}_url", value=self.repositories.url(stage))
        TerraformOutput(self, "vpc_id", value=self.network.vpc.id)
        TerraformOutput(
            self,
            "stage_images",
            description="Image URI (with tag) each job definition runs",
            value={
                stage: f"{self.repositories.url(stage)}:{spec.image_tag}"
                for stage, spec in profile.batch.stages.items()
            },
        )
