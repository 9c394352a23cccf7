"""AWS Batch for the image stages: GPU spot and CPU compute that scale to zero, three queues,
one job definition per stage, and the roles they run under.

The high/normal/low queues try the GPU spot environment first and the CPU environment second
(the seed's order) and take the GPU stages; the ``cpu`` queue has the CPU environment alone and
takes the CPU stages, so a CPU job never starts a GPU instance. Every queue cancels jobs that sit
RUNNABLE for want of capacity instead of waiting forever. Everything Batch launches (instances,
their volumes and network interfaces) carries the cost allocation tags the budget filters on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf import Token
from cdktf_cdktf_provider_aws.batch_compute_environment import (
    BatchComputeEnvironment,
    BatchComputeEnvironmentComputeResources,
    BatchComputeEnvironmentComputeResourcesEc2Configuration,
    BatchComputeEnvironmentComputeResourcesLaunchTemplate,
)
from cdktf_cdktf_provider_aws.batch_job_definition import (
    BatchJobDefinition,
    BatchJobDefinitionRetryStrategy,
    BatchJobDefinitionRetryStrategyEvaluateOnExit,
    BatchJobDefinitionTimeout,
)
from cdktf_cdktf_provider_aws.batch_job_queue import (
    BatchJobQueue,
    BatchJobQueueComputeEnvironmentOrder,
    BatchJobQueueJobStateTimeLimitAction,
)
from cdktf_cdktf_provider_aws.iam_instance_profile import IamInstanceProfile
from cdktf_cdktf_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateMetadataOptions,
    LaunchTemplateTagSpecifications,
)
from constructs import Construct

from conf.pipeline import PipelineSpec, Resources, Step
from conf.profile import BatchSettings
from modules.container_registry import StageRepositories
from modules.data_lake import DataLake
from modules.encryption import PipelineKey
from modules.iam import GrantableRole, GrantableRoleProps, statement
from modules.logs import LogGroup, LogGroupProps

QUEUE_PRIORITIES = {"high": 100, "normal": 50, "low": 10}  # GPU first, CPU second
PRIORITY_QUEUES = tuple(QUEUE_PRIORITIES)  # an execution's ``priority`` names one of these
CPU_QUEUE = "cpu"  # the CPU environment alone, for stages that need no GPU
# Launch-template resource types every instance has (a spot-instances-request spec would make the
# on-demand launches of a shared template fail; the request costs nothing, the instance is tagged).
LAUNCHED_TAGGED = ("instance", "volume", "network-interface")
# AWS services a Batch instance calls beyond what every ECS instance needs (tools/preflight.py reads it).
STAGE_SERVICES = ("s3", "sts", "logs")
ECS_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
# Batch's service-linked role: with it (and an updatable allocation strategy) Batch changes a compute
# environment's instance types, bid, tags or launch template in place; with a role of our own it cannot,
# and provider 5.100 replaces the environment (internal/service/batch/compute_environment.go,
# isUpdatableComputeEnvironment). https://docs.aws.amazon.com/batch/latest/userguide/infrastructure-updates.html
# Provider 5.100 updates in place only BEST_FIT_PROGRESSIVE and SPOT_CAPACITY_OPTIMIZED environments
# (isUpdatableAllocationStrategy), though AWS also updates SPOT_PRICE_CAPACITY_OPTIMIZED ones.
SPOT_STRATEGY = "SPOT_CAPACITY_OPTIMIZED"
ON_DEMAND_STRATEGY = "BEST_FIT_PROGRESSIVE"
# Spot reclaims surface as "Host EC2 (instance i-...) terminated."; they and the stages' own
# "transient" exit code (images/README.md) are worth a retry, nothing else is.
RETRY_ON_STATUS_REASON = "Host EC2*"
RETRY_EXIT_CODE = "75"
RETRY_ATTEMPTS = 3


@dataclass(frozen=True)
class BatchComputeProps:
    prefix: str
    environment: str
    region: str
    account_id: str
    settings: BatchSettings
    spec: PipelineSpec
    subnet_ids: list[str]
    security_group_ids: list[str]
    data_lake: DataLake
    repositories: StageRepositories
    log_retention_days: int
    key: PipelineKey
    log_level: str
    cost_tags: dict[str, str]


class BatchCompute(Construct):
    def __init__(self, scope: Construct, id_: str, props: BatchComputeProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        p = props.prefix
        self.instance_role = GrantableRole(
            self,
            "instance-role",
            GrantableRoleProps(
                name=f"{p}-batch-instance",
                service="ec2.amazonaws.com",
                description="ECS agent on Batch instances (pull images, ship logs)",
                managed_policy_arns=(ECS_INSTANCE_POLICY,),
            ),
        )
        self.instance_profile = IamInstanceProfile(
            self, "instance-profile", name=f"{p}-batch-instance", role=self.instance_role.role_name
        )
        props.repositories.grant_pull(self.instance_role)
        self.log_group = LogGroup(
            self,
            "logs",
            LogGroupProps(
                name=f"/aws/batch/{p}",
                retention_days=props.log_retention_days,
                key=props.key,
            ),
        )
        self.log_group.grant_write(self.instance_role)
        launch_template = LaunchTemplate(
            self,
            "launch-template",
            name=f"{p}-batch",
            update_default_version=True,
            # default_tags reach the template itself, not what is launched from it.
            tag_specifications=[
                LaunchTemplateTagSpecifications(resource_type=kind, tags=props.cost_tags) for kind in LAUNCHED_TAGGED
            ],
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                LaunchTemplateBlockDeviceMappings(
                    device_name="/dev/xvda",
                    # The AWS-managed EBS key: a customer key would need a grant for the EC2 fleet's
                    # service-linked role before Batch could launch anything.
                    ebs=LaunchTemplateBlockDeviceMappingsEbs(
                        encrypted="true", volume_type="gp3", volume_size=100, delete_on_termination="true"
                    ),
                )
            ],
        )
        settings = props.settings
        self.gpu = self._compute_environment(
            "gpu",
            launch_template,
            spot=True,
            instance_types=settings.gpu_instance_types,
            max_vcpus=settings.max_vcpus,
            image_type="ECS_AL2023_NVIDIA",
        )
        self.cpu = self._compute_environment(
            "cpu",
            launch_template,
            spot=settings.cpu_spot,
            instance_types=settings.cpu_instance_types,
            max_vcpus=settings.cpu_max_vcpus,
            image_type="ECS_AL2023",
        )
        gpu_arn, cpu_arn = self.gpu.arn, self.cpu.arn  # read once: each read is a round trip to jsii
        self.queues: dict[str, BatchJobQueue] = {
            name: self._queue(name, priority, [gpu_arn, cpu_arn]) for name, priority in QUEUE_PRIORITIES.items()
        }
        self.queues[CPU_QUEUE] = self._queue(CPU_QUEUE, QUEUE_PRIORITIES["normal"], [cpu_arn])
        self.resources = settings.resources(props.spec)
        self.job_roles: dict[str, GrantableRole] = {}
        self.job_definitions: dict[str, BatchJobDefinition] = {}
        for step in props.spec.batch_steps:
            self.job_roles[step.name] = self._job_role(step)
            self.job_definitions[step.name] = self._job_definition(step, self.resources[step.name])
        self.compute_environments: dict[str, str] = {"gpu": gpu_arn, "cpu": cpu_arn}
        self.compute_environment_arns: list[str] = [gpu_arn, cpu_arn]
        self.queue_arns: dict[str, str] = {name: queue.arn for name, queue in self.queues.items()}
        self._read: dict[tuple[str, str], str] = {}

    def _queue(self, name: str, priority: int, environments: list[str]) -> BatchJobQueue:
        return BatchJobQueue(
            self,
            f"queue-{name}",
            name=f"{self.props.prefix}-{name}",
            priority=priority,
            state="ENABLED",
            compute_environment_order=[
                BatchJobQueueComputeEnvironmentOrder(order=index, compute_environment=arn)
                for index, arn in enumerate(environments, start=1)
            ],
            job_state_time_limit_action=[
                BatchJobQueueJobStateTimeLimitAction(
                    action="CANCEL",
                    max_time_seconds=self.props.settings.runnable_timeout_seconds,
                    reason="CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
                    state="RUNNABLE",
                )
            ],
        )

    def queues_for(self, stage: str) -> tuple[str, ...]:
        """The queues a stage's jobs may go to: the three priority queues (GPU first) for GPU stages,
        ``cpu`` for the rest."""
        return PRIORITY_QUEUES if self.resources[stage].gpus else (CPU_QUEUE,)

    def _compute_environment(
        self,
        kind: str,
        launch_template: LaunchTemplate,
        *,
        spot: bool,
        instance_types: tuple[str, ...],
        max_vcpus: int,
        image_type: str,
    ) -> BatchComputeEnvironment:
        settings = self.props.settings
        environment = BatchComputeEnvironment(
            self,
            f"ce-{kind}",
            compute_environment_name=f"{self.props.prefix}-{kind}",
            type="MANAGED",
            state="ENABLED",
            # No service_role: Batch uses the account's AWSServiceRoleForBatch and creates it when missing
            # (an account that ever used Batch has it, so a stack creating it fails there).
            # An environment created before its roles can hold their policies comes up INVALID (and
            # can stick in DELETING on destroy): Terraform sees no reference to the attachments.
            depends_on=[*self.instance_role.attachments, self.instance_profile],
            compute_resources=BatchComputeEnvironmentComputeResources(
                type="SPOT" if spot else "EC2",
                allocation_strategy=SPOT_STRATEGY if spot else ON_DEMAND_STRATEGY,
                bid_percentage=settings.spot_bid_percentage if spot else None,
                instance_type=list(instance_types),
                min_vcpus=settings.min_vcpus,
                desired_vcpus=settings.desired_vcpus,
                max_vcpus=max_vcpus,
                subnets=self.props.subnet_ids,
                security_group_ids=self.props.security_group_ids,
                instance_role=self.instance_profile.arn,
                tags=self.props.cost_tags,
                ec2_configuration=[BatchComputeEnvironmentComputeResourcesEc2Configuration(image_type=image_type)],
                # A pinned version: "$Latest" is resolved only at an infrastructure update, so a new
                # template version alone would never reach the environment.
                launch_template=BatchComputeEnvironmentComputeResourcesLaunchTemplate(
                    launch_template_id=launch_template.id, version=Token.as_string(launch_template.latest_version)
                ),
            ),
        )
        # A Terraform JSON comment (ignored by Terraform): what tools/preflight.py must prove reachable.
        environment.add_override("//.needs_services", list(STAGE_SERVICES))
        return environment

    def _job_role(self, step: Step) -> GrantableRole:
        role = GrantableRole(
            self,
            f"job-role-{step.name}",
            GrantableRoleProps(
                name=f"{self.props.prefix}-{step.name}-job",
                service="ecs-tasks.amazonaws.com",
                description=f"Batch job role of {step.name}: reads its inputs, writes its output prefix",
                source_account=self.props.account_id,
            ),
        )
        for location in step.reads:
            self.props.data_lake.bucket(location.bucket).grant_read(role, location.prefix)
        if step.writes:
            self.props.data_lake.bucket(step.writes.bucket).grant_write(role, step.writes.prefix)
        return role

    def _job_definition(self, step: Step, spec: Resources) -> BatchJobDefinition:
        props, stage = self.props, step.name
        lake = props.data_lake
        resources = [{"type": "VCPU", "value": str(spec.vcpus)}, {"type": "MEMORY", "value": str(spec.memory_mib)}]
        if spec.gpus:
            resources.append({"type": "GPU", "value": str(spec.gpus)})
        environment = {
            "PIPELINE_ENV": props.environment,
            "STAGE": stage,
            "LOG_LEVEL": props.log_level,
            "LOG_FORMAT": "json",
            "RAW_BUCKET": lake.raw.bucket_name,
            "PROCESSED_BUCKET": lake.processed.bucket_name,
            "CURATED_BUCKET": lake.curated.bucket_name,
            "INPUT_PREFIXES": ",".join(map(str, step.reads)),
            "OUTPUT_PREFIX": str(step.writes or ""),
            # The runtime sizes its prefetch queue and inference batches from these (stage_runtime.Feed).
            "STAGE_VCPUS": str(spec.vcpus),
            "STAGE_MEMORY_MIB": str(spec.memory_mib),
            "INFERENCE_BATCH_SIZE": str(spec.batch_size),
        }
        container = {
            "image": f"{props.repositories.url(stage)}:{spec.image_tag}",
            "command": ["Ref::manifest", "Ref::execution_id", "Ref::shard"],
            "jobRoleArn": self.job_roles[stage].role_arn,
            "resourceRequirements": resources,
            "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group.name,
                    "awslogs-region": props.region,
                    "awslogs-stream-prefix": stage,
                },
            },
            "readonlyRootFilesystem": False,
            "privileged": False,
            "user": "10001",
        }
        return BatchJobDefinition(
            self,
            f"jobdef-{stage}",
            name=f"{props.prefix}-{stage}",
            type="container",
            platform_capabilities=["EC2"],
            propagate_tags=True,  # to the ECS task: the CUR's split cost lines carry the Stage tag
            tags={"Stage": stage},
            container_properties=json.dumps(container),
            parameters={"manifest": "none", "execution_id": "none", "shard": "0"},
            timeout=BatchJobDefinitionTimeout(attempt_duration_seconds=spec.timeout_seconds),
            retry_strategy=BatchJobDefinitionRetryStrategy(
                attempts=RETRY_ATTEMPTS,
                evaluate_on_exit=[
                    BatchJobDefinitionRetryStrategyEvaluateOnExit(
                        on_status_reason=RETRY_ON_STATUS_REASON, action="RETRY"
                    ),
                    BatchJobDefinitionRetryStrategyEvaluateOnExit(on_exit_code=RETRY_EXIT_CODE, action="RETRY"),
                    BatchJobDefinitionRetryStrategyEvaluateOnExit(on_reason="*", action="EXIT"),
                ],
            ),
        )

    def queue_arn(self, name: str) -> str:
        return self.queue_arns[name]

    def job_definition_arn(self, stage: str) -> str:
        return self._definition_attribute(stage, "arn")

    def job_definition_arn_prefix(self, stage: str) -> str:
        """The definition's ARN without its revision (``...:job-definition/<name>``)."""
        return self._definition_attribute(stage, "arn_prefix")

    def _definition_attribute(self, stage: str, name: str) -> str:
        """A job definition's attribute, read from jsii once (each read is a round trip)."""
        if (stage, name) not in self._read:
            self._read[stage, name] = getattr(self.job_definitions[stage], name)
        return self._read[stage, name]

    def grant_observe(self, role: GrantableRole) -> None:
        """List the queues' jobs and read the compute environments' vCPUs (queue-depth metrics)."""
        role.add_statements(
            # ListJobs and Describe* of Batch support no resource-level permissions.
            statement(["batch:ListJobs", "batch:DescribeComputeEnvironments"], ["*"]),
        )

    def grant_scale(self, role: GrantableRole) -> None:
        """Enable/disable the queues and change the compute environments' vCPU limits (budget shutdown)."""
        role.add_statements(
            statement(["batch:UpdateJobQueue"], list(self.queue_arns.values())),
            statement(["batch:UpdateComputeEnvironment"], self.compute_environment_arns),
            # Describe* calls of Batch support no resource-level permissions.
            statement(["batch:DescribeComputeEnvironments"], ["*"]),
        )

    def grant_stop_jobs(self, role: GrantableRole) -> None:
        """List the queues' jobs and terminate them (budget shutdown)."""
        role.add_statements(
            # ListJobs supports no resource-level permissions.
            statement(["batch:ListJobs"], ["*"]),
            statement(["batch:TerminateJob"], [f"arn:aws:batch:{self.props.region}:{self.props.account_id}:job/*"]),
        )
