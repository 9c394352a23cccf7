"""The pipeline workflow: GuardBudget -> Stage0 -> Stage1 -> Stage2 -> WeatherEnrichment -> WriteParquet.

The definition is built in Python from ``modules/asl.py``. Every Task retries transient errors
with backoff and jitter and catches everything else into NotifyFailure (an SNS message with the
execution id and the failing state) and a Fail state. Stage1 and Stage2 run one Batch job per
shard, in parallel, in Map states. An execution times out after 2 hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktf_cdktf_provider_aws.cloudwatch_event_target import (
    CloudwatchEventTarget,
    CloudwatchEventTargetInputTransformer,
)
from cdktf_cdktf_provider_aws.sfn_state_machine import (
    SfnStateMachine,
    SfnStateMachineEncryptionConfiguration,
    SfnStateMachineLoggingConfiguration,
    SfnStateMachineTracingConfiguration,
)
from constructs import Construct

from conf.profile import WorkflowSettings
from modules import asl
from modules.alerting import AlertTopic
from modules.batch_compute import BatchCompute
from modules.encryption import PipelineKey
from modules.functions import PythonFunction
from modules.iam import GrantableRole, GrantableRoleProps, statement
from modules.logs import LogGroup, LogGroupProps

EXECUTION_TIMEOUT_SECONDS = 7200
BATCH_EVENTS_RULE = "StepFunctionsGetEventsForBatchJobsRule"
STAGES = ("Stage0", "Stage1", "Stage2")
EXECUTION_ID = "$$.Execution.Name"  # the short id; S3 prefixes and every log line carry it


@dataclass(frozen=True)
class WorkflowProps:
    prefix: str
    region: str
    account_id: str
    settings: WorkflowSettings
    key: PipelineKey
    alerts: AlertTopic
    batch: BatchCompute
    guard_budget: PythonFunction
    weather_enrichment: PythonFunction
    write_parquet: PythonFunction
    log_retention_days: int
    raw_bucket_name: str


def build_definition(
    *,
    guard_arn: str,
    weather_arn: str,
    parquet_arn: str,
    topic_arn: str,
    queue_arns: dict[str, str],
    job_definitions: dict[str, str],
    job_timeouts: dict[str, int],
    lambda_timeouts: dict[str, int],
    settings: WorkflowSettings,
) -> dict:
    """The ASL document as a dict (pure: unit-testable without synth)."""
    attempts = settings.max_attempts
    states: dict[str, dict] = {}

    def task(name: str, state: dict, transient: list[str], next_state: str) -> None:
        """A Task (or Map) with retries and a catch that reports this state's name."""
        states[name] = asl.then(
            asl.catching(asl.retrying(state, transient, max_attempts=attempts), f"{name}Failed"), next_state
        )
        states[f"{name}Failed"] = asl.mark_failed(name, "NotifyFailure")

    def lambda_step(name: str, arn: str, payload: dict, selector: dict, result_path: str, next_state: str) -> None:
        task(
            name,
            asl.lambda_task(
                arn, payload, result_selector=selector, result_path=result_path, timeout=lambda_timeouts[name] + 30
            ),
            asl.LAMBDA_TRANSIENT,
            next_state,
        )

    def batch_job(stage: str, shard: dict[str, str]) -> dict:
        """One job of ``stage``; Batch retries spot reclaims itself, the workflow retries once more."""
        job = asl.batch_job_task(
            job_name=stage.lower(),
            queue_arn=queue_arns[stage.lower()],
            job_definition_arn=job_definitions[stage.lower()],
            parameters={"manifest.$": "$.manifest", "execution_id.$": "$.execution_id", **shard},
            environment=[{"Name": "EXECUTION_ID", "Value.$": "$.execution_id"}],
            timeout=job_timeouts[stage.lower()] * 3 + 600,
        )
        return asl.retrying(job, ["States.TaskFailed"], max_attempts=1, interval=30)

    ids = {"execution_id.$": EXECUTION_ID, "manifest.$": "$.manifest"}
    lambda_step(
        "GuardBudget",
        guard_arn,
        ids,
        {
            "allowed.$": "$.Payload.allowed",
            "reason.$": "$.Payload.reason",
            "spent.$": "$.Payload.spent",
            "limit.$": "$.Payload.limit",
        },
        "$.guard",
        "BudgetAllowed",
    )
    states["BudgetAllowed"] = asl.boolean_choice("$.guard.allowed", if_true="Prepare", otherwise="NotifyBudgetExceeded")
    states["NotifyBudgetExceeded"] = asl.then(
        asl.catching(
            asl.retrying(
                asl.sns_publish_task(
                    topic_arn,
                    subject="Odins Ravne: execution refused by the budget guard",
                    message_format="Execution {} refused: {}",
                    message_args=[EXECUTION_ID, "$.guard.reason"],
                ),
                asl.SNS_TRANSIENT,
                max_attempts=attempts,
            ),
            "BudgetExceeded",
        ),
        "BudgetExceeded",
    )
    states["BudgetExceeded"] = {
        "Type": "Fail",
        "Error": "BudgetExceeded",
        "Cause": "The budget guard refused the execution (see the alert topic)",
    }
    states["Prepare"] = {
        "Type": "Pass",
        "Parameters": {
            "manifest.$": "$.manifest",
            "execution_id.$": EXECUTION_ID,
            "guard.$": "$.guard",
            "shards": list(range(settings.shard_count)),
        },
        "Next": "Stage0",
    }
    task("Stage0", batch_job("Stage0", {"shard": "0"}), asl.BATCH_TRANSIENT, "Stage1")
    for stage, next_state in (("Stage1", "Stage2"), ("Stage2", "WeatherEnrichment")):
        shard_state = f"{stage}Shard"
        task(
            stage,
            asl.map_state(
                items_path="$.shards",
                item_selector={
                    "manifest.$": "$.manifest",
                    "execution_id.$": "$.execution_id",
                    "shard.$": "States.Format('{}', $$.Map.Item.Value)",
                },
                processor_start=shard_state,
                processor_states={shard_state: asl.then(batch_job(stage, {"shard.$": "$.shard"}), None)},
                max_concurrency=settings.max_concurrency,
            ),
            asl.BATCH_TRANSIENT,
            next_state,
        )
    counts = {"execution_id.$": "$.execution_id", "shard_count": settings.shard_count}
    lambda_step(
        "WeatherEnrichment",
        weather_arn,
        counts,
        {"enriched.$": "$.Payload.enriched", "failed.$": "$.Payload.failed"},
        "$.weather",
        "WriteParquet",
    )
    lambda_step(
        "WriteParquet",
        parquet_arn,
        counts,
        {"objects.$": "$.Payload.objects", "rows.$": "$.Payload.rows"},
        "$.parquet",
        "Succeeded",
    )
    states["Succeeded"] = {"Type": "Succeed"}
    states["NotifyFailure"] = asl.then(
        asl.catching(
            asl.retrying(
                asl.sns_publish_task(
                    topic_arn,
                    subject="Odins Ravne: pipeline execution failed",
                    message_format="Execution {} failed in state {}: {}",
                    message_args=[EXECUTION_ID, "$.failed_state", "$.error.Error"],
                ),
                asl.SNS_TRANSIENT,
                max_attempts=attempts,
            ),
            "Failed",
        ),
        "Failed",
    )
    states["Failed"] = {
        "Type": "Fail",
        "Error": "PipelineFailed",
        "Cause": "A pipeline state failed (see the alert topic)",
    }
    return {
        "Comment": "Odins Ravne: GuardBudget -> Stage0 -> Stage1 -> Stage2 -> WeatherEnrichment -> WriteParquet",
        "StartAt": "GuardBudget",
        "TimeoutSeconds": EXECUTION_TIMEOUT_SECONDS,
        "States": states,
    }


class Workflow(Construct):
    def __init__(self, scope: Construct, id_: str, props: WorkflowProps) -> None:
        super().__init__(scope, id_)
        name = f"{props.prefix}-pipeline"
        self.role = GrantableRole(
            self,
            "role",
            GrantableRoleProps(
                name=f"{name}-states",
                service="states.amazonaws.com",
                description="Runs the pipeline workflow",
                source_account=props.account_id,
            ),
        )
        for function in (props.guard_budget, props.weather_enrichment, props.write_parquet):
            function.grant_invoke(self.role)
        by_queue: dict[str, list[str]] = {}
        for stage in props.batch.job_definitions:
            by_queue.setdefault(props.batch.queue_for(stage), []).append(stage)
        for queue, stages in by_queue.items():
            props.batch.grant_submit(self.role, queue, stages)
        self.role.add_statements(
            # Batch supports no resource-level permissions for DescribeJobs; TerminateJob takes job ARNs.
            statement(["batch:DescribeJobs"], ["*"]),
            statement(["batch:TerminateJob"], [f"arn:aws:batch:{props.region}:{props.account_id}:job/*"]),
            statement(
                ["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                [f"arn:aws:events:{props.region}:{props.account_id}:rule/{BATCH_EVENTS_RULE}"],
            ),
            # CloudWatch Logs vended-log delivery APIs accept no resource ARN.
            statement(
                [
                    "logs:CreateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:DescribeLogGroups",
                    "logs:DescribeResourcePolicies",
                    "logs:GetLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:UpdateLogDelivery",
                ],
                ["*"],
            ),
            # X-Ray's write actions have no resource-level permissions.
            statement(
                [
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:PutTelemetryRecords",
                    "xray:PutTraceSegments",
                ],
                ["*"],
            ),
        )
        props.alerts.grant_publish(self.role)
        props.key.grant_encrypt_decrypt(self.role)
        self.log_group = LogGroup(
            self,
            "logs",
            LogGroupProps(
                name=f"/aws/vendedlogs/states/{name}",
                retention_days=props.log_retention_days,
                kms_key_arn=props.key.key_arn,
            ),
        )
        batch = props.batch
        self.definition = build_definition(
            guard_arn=props.guard_budget.function_arn,
            weather_arn=props.weather_enrichment.function_arn,
            parquet_arn=props.write_parquet.function_arn,
            topic_arn=props.alerts.topic_arn,
            queue_arns={s: batch.queue_arn(batch.queue_for(s)) for s in batch.job_definitions},
            job_definitions={s: batch.job_definition_arn(s) for s in batch.job_definitions},
            job_timeouts={s: spec.timeout_seconds for s, spec in batch.props.settings.stages.items()},
            lambda_timeouts={
                "GuardBudget": props.guard_budget.timeout_seconds,
                "WeatherEnrichment": props.weather_enrichment.timeout_seconds,
                "WriteParquet": props.write_parquet.timeout_seconds,
            },
            settings=props.settings,
        )
        self.state_machine = SfnStateMachine(
            self,
            "state-machine",
            name=name,
            type="STANDARD",
            role_arn=self.role.role_arn,
            definition=json.dumps(self.definition),
            logging_configuration=SfnStateMachineLoggingConfiguration(
                log_destination=f"{self.log_group.arn}:*",
                level=props.settings.log_level,
                include_execution_data=props.settings.include_execution_data,
            ),
            tracing_configuration=SfnStateMachineTracingConfiguration(enabled=True),
            encryption_configuration=SfnStateMachineEncryptionConfiguration(
                type="CUSTOMER_MANAGED_KMS_KEY", kms_key_id=props.key.key_arn, kms_data_key_reuse_period_seconds=300
            ),
            depends_on=[self.role],
        )
        self.state_machine_arn: str = self.state_machine.arn
        self.state_machine_name: str = self.state_machine.name
        if props.settings.start_on_new_manifest:
            self._start_on_manifest(props)

    def _start_on_manifest(self, props: WorkflowProps) -> None:
        """A new ``raw/manifests/*.json`` object starts one execution with its URI as input."""
        rule = CloudwatchEventRule(
            self,
            "on-manifest",
            name=f"{props.prefix}-on-manifest",
            description="Start the pipeline for each new manifest in the raw bucket",
            event_pattern=json.dumps(
                {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Created"],
                    "detail": {
                        "bucket": {"name": [props.raw_bucket_name]},
                        "object": {"key": [{"prefix": "manifests/"}]},
                    },
                }
            ),
        )
        role = GrantableRole(
            self,
            "events-role",
            GrantableRoleProps(
                name=f"{props.prefix}-start-pipeline",
                service="events.amazonaws.com",
                description="Lets EventBridge start the pipeline",
                source_account=props.account_id,
            ),
        )
        role.add_statements(statement(["states:StartExecution"], [self.state_machine_arn]))
        CloudwatchEventTarget(
            self,
            "start",
            rule=rule.name,
            arn=self.state_machine_arn,
            role_arn=role.role_arn,
            input_transformer=CloudwatchEventTargetInputTransformer(
                input_paths={"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
                input_template='{"manifest": "s3://<bucket>/<key>"}',
            ),
        )
