"""The Odins Ravne pipeline stack, identical in shape for every environment."""

from __future__ import annotations

import json

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from constructs import Construct

from conf import Profile
from conf.pipeline import PIPELINE, SUPPORT_FUNCTIONS, PipelineSpec, fan_out_settings
from modules.alerting import AlertTopic, AlertTopicProps
from modules.backend import configure_backend
from modules.batch_compute import BatchCompute, BatchComputeProps
from modules.budget import PipelineBudget, PipelineBudgetProps
from modules.container_registry import StageRepositories, StageRepositoriesProps
from modules.cost_reports import CostReports, CostReportsProps
from modules.data_lake import DataLake, DataLakeProps
from modules.dataset import Dataset, DatasetProps
from modules.encryption import PipelineKey, PipelineKeyProps
from modules.functions import PythonFunction, PythonFunctionProps
from modules.iam import apply_permissions_boundary, render_grants, statement
from modules.monitoring import METRIC_NAMESPACE, Monitoring, MonitoringProps
from modules.network import Network, NetworkProps
from modules.parameters import PipelineParameters, PipelineParametersProps
from modules.provider import COST_SCOPE_TAG, cost_scope, default_tags, pipeline_provider
from modules.spend_ledger import SpendLedger, SpendLedgerProps
from modules.workflow import Workflow, WorkflowProps


def pipeline_stack_id(profile: Profile) -> str:
    return f"pipeline-{profile.name}"


class PipelineStack(TerraformStack):
    """Composes the pipeline's modules from one profile and the pipeline spec (conf/pipeline.py);
    nothing here branches on the env name, and nothing names a step except the wiring a step's
    own code needs (the budget guard's budget, the weather provider's settings)."""

    def __init__(self, scope: Construct, profile: Profile, spec: PipelineSpec = PIPELINE) -> None:
        stack_id = pipeline_stack_id(profile)
        super().__init__(scope, stack_id)
        if profile.permissions_boundary_arn:
            apply_permissions_boundary(self, profile.permissions_boundary_arn)
        self.profile, self.spec = profile, spec
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
                key=self.key,
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
                stages=tuple(s.name for s in spec.batch_steps),
                key=self.key,
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
                spec=spec,
                subnet_ids=self.network.private_subnet_ids,
                security_group_ids=[self.network.batch_security_group_id],
                data_lake=self.data_lake,
                repositories=self.repositories,
                log_retention_days=profile.logs.retention_days,
                key=self.key,
                log_level=profile.log_level,
                cost_tags=default_tags(profile),
            ),
        )
        self.alerts = AlertTopic(
            self,
            "alerts",
            AlertTopicProps(
                prefix=prefix,
                account_id=account_id,
                key=self.key,
                email_subscribers=profile.budget.subscribers,
            ),
        )
        self.budget = PipelineBudget(
            self,
            "budget",
            PipelineBudgetProps(
                prefix=prefix,
                cost_scope_tag=COST_SCOPE_TAG,
                cost_scope=cost_scope(profile),
                account_id=account_id,
                settings=profile.budget,
                key=self.key,
            ),
        )
        self.ledger = SpendLedger(
            self,
            "spend-ledger",
            SpendLedgerProps(prefix=prefix, key=self.key, prevent_destroy=profile.data_lake.prevent_destroy),
        )
        self.parameters = PipelineParameters(
            self,
            "parameters",
            PipelineParametersProps(
                project=profile.project,
                environment=profile.name,
                region=profile.region,
                account_id=account_id,
                key=self.key,
                settings={f"bucket_{n}": b.bucket_name for n, b in self.data_lake.buckets.items()},
            ),
        )
        if profile.monitoring.anomaly_detection:
            self.budget.detect_anomalies(
                threshold_usd=profile.monitoring.anomaly_threshold_usd,
                alerts=self.alerts,
            )
        self.functions = self._functions(profile, account_id)
        self.workflow = Workflow(
            self,
            "workflow",
            WorkflowProps(
                prefix=prefix,
                region=profile.region,
                account_id=account_id,
                settings=profile.workflow,
                spec=spec,
                key=self.key,
                alerts=self.alerts,
                batch=self.batch,
                functions=self.functions,
                data_lake=self.data_lake,
                log_retention_days=profile.logs.retention_days,
            ),
        )

        self.monitoring = Monitoring(
            self,
            "monitoring",
            MonitoringProps(
                prefix=prefix,
                environment=profile.name,
                region=profile.region,
                settings=profile.monitoring,
                alerts=self.alerts,
                state_machine_arn=self.workflow.state_machine_arn,
                functions=self.functions,
                data_buckets={n: self.data_lake.bucket(n) for n in ("raw", "processed", "curated")},
                job_queues=self.batch.queue_arns,
                compute_environments=self.batch.compute_environments,
                metrics_function=self.functions["batch_metrics"],
                budget_limit_usd=profile.budget.amount_usd,
                trigger_rule_name=self.workflow.manifest_rule_name,
            ),
        )
        self.dataset = None
        if profile.data_lake.catalog:
            self.dataset = Dataset(
                self,
                "dataset",
                DatasetProps(
                    prefix=prefix,
                    region=profile.region,
                    account_id=account_id,
                    curated=self.data_lake.curated,
                    detections_prefix=self.spec.step("write_parquet").writes.prefix,
                    results=self.data_lake.processed,
                    key=self.key,
                    force_destroy=profile.data_lake.force_destroy,
                ),
            )
            TerraformOutput(self, "dataset_table", value=self.dataset.qualified_table)
            TerraformOutput(self, "dataset_workgroup", value=self.dataset.workgroup.name)
            TerraformOutput(self, "dataset_queries", value=self.dataset.query_names)
            TerraformOutput(self, "dataset_query_policy", value=self.dataset.query_policy.name)
        if profile.monitoring.cost_reports:
            self.cost_reports = CostReports(
                self,
                "cost-reports",
                CostReportsProps(
                    prefix=prefix,
                    environment=profile.name,
                    account_id=account_id,
                    region=profile.region,
                    log_target=self.data_lake.logs,
                    detections_table=self.dataset.qualified_table if self.dataset else None,
                    billing_provider=pipeline_provider(self, profile, region="us-east-1", alias="billing"),
                    force_destroy=profile.data_lake.force_destroy,
                    prevent_destroy=profile.data_lake.prevent_destroy,
                ),
            )
            TerraformOutput(self, "cost_report_queries", value=self.cost_reports.names)
            TerraformOutput(self, "cost_report_workgroup", value=self.cost_reports.workgroup.name)
        TerraformOutput(self, "dashboard_url", value=self.monitoring.dashboard_url)
        TerraformOutput(self, "state_machine_arn", value=self.workflow.state_machine_arn)
        TerraformOutput(self, "alert_topic_arn", value=self.alerts.topic_arn)
        TerraformOutput(self, "budget_topic_arn", value=self.budget.topic.topic_arn)
        TerraformOutput(self, "kill_switch_parameter", value=self.parameters.kill_switch.name)
        TerraformOutput(self, "budget_name", value=self.budget.budget_name)
        for name, function in self.functions.items():
            TerraformOutput(self, f"function_{name}", value=function.function_name)
        TerraformOutput(self, "pipeline_key_arn", value=self.key.key_arn, description="Pipeline KMS key ARN")
        for name, bucket in self.data_lake.buckets.items():
            TerraformOutput(self, f"bucket_{name}", value=bucket.bucket_name, description=f"{name} bucket")
        for name in self.batch.queues:
            TerraformOutput(self, f"job_queue_{name}_arn", value=self.batch.queue_arn(name))
        for stage in self.batch.job_definitions:
            TerraformOutput(self, f"job_definition_{stage}_arn", value=self.batch.job_definition_arn(stage))
            TerraformOutput(self, f"ecr_{stage}_url", value=self.repositories.url(stage))
        TerraformOutput(self, "vpc_id", value=self.network.vpc_id)
        TerraformOutput(
            self,
            "stage_images",
            description="Image URI (with tag) each job definition runs",
            value={
                stage: f"{self.repositories.url(stage)}:{resources.image_tag}"
                for stage, resources in self.batch.resources.items()
            },
        )
        render_grants()

    @staticmethod
    def _state_machine_arn(profile: Profile, account_id: str) -> str:
        """The workflow's state machine ARN from its name (modules/workflow.py names it ``<prefix>-pipeline``)."""
        return f"arn:aws:states:{profile.region}:{account_id}:stateMachine:{profile.prefix}-pipeline"

    def _manifests_environment(self) -> dict[str, str]:
        """Where manifests are: the location the planning step reads (conf/pipeline.py)."""
        location = self.spec.manifests
        if location is None:
            return {}
        return {
            "MANIFEST_BUCKET": self.data_lake.bucket(location.bucket).bucket_name,
            "MANIFEST_PREFIX": location.prefix,
        }

    @staticmethod
    def _planner_environment(profile: Profile, spec: PipelineSpec) -> dict[str, dict[str, str]]:
        """FAN_OUT for the step that plans the fan-out (its shard size, bound and estimate inputs)."""
        planner = spec.planner
        if planner is None:
            return {}
        settings = fan_out_settings(
            spec,
            profile.batch.resources(spec),
            images_per_shard=profile.workflow.images_per_shard,
            concurrency=profile.workflow.max_concurrency,
            job_overhead_seconds=profile.workflow.job_overhead_seconds,
            fleet_start_seconds=profile.workflow.fleet_start_seconds,
            retry_interval_seconds=profile.workflow.job_retry_interval_seconds,
            function_timeouts={n: f.timeout_seconds for n, f in profile.functions.specs.items()},
            costs=profile.batch.job_hour_costs(profile.prices, spec),
            price_date=f"{profile.region} price table of {profile.prices['date']}",
        )
        return {planner.name: {"FAN_OUT": json.dumps(settings, sort_keys=True)}}

    def _functions(self, profile: Profile, account_id: str) -> dict[str, PythonFunction]:
        """A function per Lambda step of the spec plus the support functions. Each gets its data
        grants and prefixes from the spec; the wiring its own code needs is added by name."""
        lake, params, batch = self.data_lake, self.parameters, self.batch
        weather = profile.weather
        wiring = {
            "guard_budget": {
                "BUDGET_NAME": self.budget.budget_name,
                "ACCOUNT_ID": account_id,
                "KILL_SWITCH_PARAMETER": params.kill_switch.name,
                "GUARD_THRESHOLD_PCT": "100",
                "LEDGER_TABLE": self.ledger.table_name,
            },
            "write_parquet": {"METRIC_NAMESPACE": METRIC_NAMESPACE, "PIPELINE_ENV": profile.name},
            "weather_enrichment": {
                "WEATHER_BASE_URL": weather.base_url,
                "WEATHER_CONNECT_TIMEOUT": str(weather.connect_timeout_seconds),
                "WEATHER_READ_TIMEOUT": str(weather.read_timeout_seconds),
                "WEATHER_MAX_RETRIES": str(weather.max_retries),
                "WEATHER_GIVE_UP_AFTER": str(weather.give_up_after),
                "WEATHER_MAX_IN_FLIGHT": str(weather.max_in_flight),
                "WEATHER_SITES_PER_REQUEST": str(weather.sites_per_request),
                "WEATHER_MAX_RETRY_AFTER": str(weather.max_retry_after_seconds),
                "WEATHER_API_KEY_PARAMETER": params.secrets["weather-api-key"],
                # The same parameter by ARN (GetParameter takes either): what the function reads, so
                # make iam-check sees the resource its grant names.
                "WEATHER_API_KEY_ARN": f"{params.parameter_arn_prefix}{params.secrets['weather-api-key']}",
            },
            "batch_metrics": {
                "JOB_QUEUES": ",".join(f"{name}={arn}" for name, arn in batch.queue_arns.items()),
                "COMPUTE_ENVIRONMENTS": ",".join(f"{name}={arn}" for name, arn in batch.compute_environments.items()),
                "METRIC_NAMESPACE": METRIC_NAMESPACE,
                "PIPELINE_ENV": profile.name,
            },
            "budget_shutdown": {
                "BUDGET_NAME": self.budget.budget_name,
                "ACCOUNT_ID": account_id,
                "BUDGET_TOPIC_ARN": self.budget.topic.topic_arn,
                "ALERT_TOPIC_ARN": self.alerts.topic_arn,
                # Built, not referenced: the state machine refers to the functions (a reference back is a cycle).
                "STATE_MACHINE_ARN": self._state_machine_arn(profile, account_id),
                "JOB_QUEUES": ",".join(batch.queue_arns.values()),
                "COMPUTE_ENVIRONMENTS": ",".join(batch.compute_environment_arns),
                "KILL_SWITCH_PARAMETER": params.kill_switch.name,
                "SHUTDOWN_STATE_PARAMETER": params.shutdown_state.name,
            },
            "start_run": {
                "STATE_MACHINE_ARN": self._state_machine_arn(profile, account_id),
                "ALERT_TOPIC_ARN": self.alerts.topic_arn,
                **self._manifests_environment(),
            },
        }
        for name, environment in self._planner_environment(profile, self.spec).items():
            wiring[name] = {**wiring.get(name, {}), **environment}
        steps = {s.name: s for s in self.spec.lambda_steps}
        descriptions = {**{n: s.description for n, s in steps.items()}, **SUPPORT_FUNCTIONS}
        if not profile.workflow.start_on_new_manifest:
            del descriptions["start_run"]  # the manifest trigger's target (modules/workflow.py)
        layer = profile.functions.pandas_layer_arn
        functions = {}
        for name, description in descriptions.items():
            step = steps.get(name)
            data = {}
            if step is not None:
                touched = {loc.bucket for loc in (*step.reads, *filter(None, [step.writes, step.cache]))}
                data = {f"{bucket.upper()}_BUCKET": lake.bucket(bucket).bucket_name for bucket in sorted(touched)}
                if step.reads:
                    data["INPUT_PREFIX"] = step.reads[0].prefix
                if step.writes:
                    data["OUTPUT_PREFIX"] = step.writes.prefix
                if step.cache:
                    data["CACHE_PREFIX"] = step.cache.prefix
            functions[name] = PythonFunction(
                self,
                f"fn-{name.replace('_', '-')}",
                PythonFunctionProps(
                    prefix=profile.prefix,
                    name=name,
                    description=description,
                    spec=profile.functions.specs[name],
                    architecture=profile.functions.architecture,
                    key=self.key,
                    log_retention_days=profile.logs.retention_days,
                    log_level=profile.log_level,
                    account_id=account_id,
                    environment={**data, **wiring.get(name, {})},
                    layers=(layer,) if layer and step and step.pandas_layer else (),
                ),
            )
            for location in step.reads if step else ():
                lake.bucket(location.bucket).grant_read(functions[name].role, location.prefix)
            if step and step.writes:
                lake.bucket(step.writes.bucket).grant_write(functions[name].role, step.writes.prefix)
            if step and step.cache:
                lake.bucket(step.cache.bucket).grant_read(functions[name].role, step.cache.prefix)
                lake.bucket(step.cache.bucket).grant_write(functions[name].role, step.cache.prefix)
        self.budget.grant_view(functions["guard_budget"].role)
        params.grant_read(functions["guard_budget"].role, params.kill_switch)
        params.grant_read_secret(functions["weather_enrichment"].role, "weather-api-key")
        self.ledger.grant_reserve(functions["guard_budget"].role)
        shutdown = functions["budget_shutdown"].role
        batch.grant_scale(shutdown)
        batch.grant_stop_jobs(shutdown)
        self.budget.grant_view(shutdown)
        self.alerts.grant_publish(shutdown)
        machine = self._state_machine_arn(profile, account_id)
        shutdown.add_statements(
            statement(["states:ListExecutions"], [machine]),
            statement(["states:StopExecution"], [f"{machine.replace(':stateMachine:', ':execution:')}:*"]),
        )
        batch.grant_observe(functions["batch_metrics"].role)
        params.grant_write(functions["budget_shutdown"].role, params.kill_switch, params.shutdown_state)
        self.budget.shut_down_with(functions["budget_shutdown"])
        return functions
