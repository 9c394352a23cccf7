"""Environment profiles: YAML files in ``conf/profiles`` loaded into frozen, typed objects.

``defaults.yaml`` holds what every environment shares; ``<env>.yaml`` overrides it key by key.
Every bad value is reported as ONE line naming the file, the key, the value and what is
allowed, so a typo in a profile never reaches Terraform.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from conf.pipeline import PIPELINE, SUPPORT_FUNCTIONS, PipelineSpec, Resources, fleet_slots
from conf.prices import PriceError, job_hour_usd, price_table
from tools.preflight_rules import LOG_RETENTION

# ODINS_PROFILE_DIR points the app at another profile folder (tests, or a private fork of the envs).
PROFILE_DIR = Path(os.environ.get("ODINS_PROFILE_DIR") or Path(__file__).resolve().parent / "profiles")
DEFAULTS_FILE = "defaults.yaml"

# The only values CloudWatch Logs accepts for retentionInDays (0 = never expire is excluded on
# purpose): the list preflight checks every log group against.
CLOUDWATCH_RETENTION_DAYS = tuple(sorted(LOG_RETENTION))

_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{1,15}$")


class ProfileError(Exception):
    """A profile is missing or invalid; ``str()`` is the one-line message shown to the user."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _scalars_of_the_declared_kind(cls, value: Any, info: ValidationInfo) -> Any:
        """Lax parsing would turn YAML's ``true`` into 1 (``amount_usd: true`` a 1.0 USD budget),
        ``"50"`` into 50.0 and ``5`` into ``"5"``: a boolean, a string or a number goes only where
        the key takes one (an int where a float goes stays fine)."""
        annotation = cls.model_fields[info.field_name].annotation
        kinds = {annotation, *get_args(annotation)}
        if isinstance(value, bool) and bool not in kinds:
            raise ValueError(f"{str(value).lower()} is a boolean; this key takes a {_type_name(annotation)}")
        if isinstance(value, str) and str not in kinds and kinds & {int, float}:
            raise ValueError(f"{value!r} is a string; this key takes a {_type_name(annotation)} (write it unquoted)")
        if isinstance(value, int | float) and not isinstance(value, bool) and str in kinds and not kinds & {int, float}:
            raise ValueError(f"{value!r} is a number; this key takes a string (quote it)")
        return value


def _type_name(annotation: Any) -> str:
    names = {int: "whole number", float: "number", str: "string"}
    return names.get(annotation) or next((names[a] for a in get_args(annotation) if a in names), "value")


# EC2 instance types AWS knows, from the pinned botocore's service model (conf/ec2_instance_types.txt,
# checked against botocore by tests/test_profiles.py; `python -m conf --write-instance-types` renews it).
INSTANCE_TYPES_FILE = Path(__file__).resolve().parent / "ec2_instance_types.txt"


def botocore_instance_types() -> list[str]:
    """The ``InstanceType`` enum of EC2's service-2.json as the installed botocore ships it (~3 s to load)."""
    from botocore.loaders import Loader

    return sorted(Loader().load_service_model("ec2", "service-2")["shapes"]["InstanceType"]["enum"])


@functools.cache
def known_instance_types() -> frozenset[str]:
    lines = INSTANCE_TYPES_FILE.read_text().splitlines()
    return frozenset(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))


class StageOverride(_Frozen):
    """A profile's changes to one Batch step's resources (defaults: conf/pipeline.py)."""

    compute: Literal["cpu", "gpu"] | None = None
    vcpus: int | None = Field(default=None, ge=1, le=96)
    memory_mib: int | None = Field(default=None, ge=512, le=786432)
    gpus: int | None = Field(default=None, ge=0, le=8)
    timeout_seconds: int | None = Field(default=None, ge=60, le=86400)
    image_tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    images_per_second: float | None = Field(default=None, gt=0, le=10000)
    throughput_source: str | None = Field(default=None, min_length=3)
    batch_size: int | None = Field(default=None, ge=1, le=256)

    def apply(self, base: Resources) -> Resources:
        merged = replace(base, **self.model_dump(exclude_none=True))
        if merged.compute == "gpu" and merged.gpus < 1:
            raise ValueError("a gpu stage needs at least 1 gpu")
        if merged.compute == "cpu" and merged.gpus != 0:
            raise ValueError("a cpu stage must ask for 0 gpus")
        return merged


class BatchSettings(_Frozen):
    """AWS Batch compute: GPU spot environment first, CPU second, both scale to zero."""

    gpu_instance_types: tuple[str, ...] = Field(min_length=1)
    cpu_instance_types: tuple[str, ...] = Field(min_length=1)
    spot_bid_percentage: int = Field(ge=1, le=100)
    max_vcpus: int = Field(ge=1, le=10000)
    min_vcpus: int = Field(ge=0)
    desired_vcpus: int = Field(ge=0)
    cpu_max_vcpus: int = Field(ge=1, le=10000)
    cpu_spot: bool
    runnable_timeout_seconds: int = Field(ge=600, le=86400)
    stages: dict[str, StageOverride] = {}

    @field_validator("gpu_instance_types", "cpu_instance_types")
    @classmethod
    def _real_instance_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if t not in known_instance_types()]
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} is not an EC2 instance type (botocore's list: {INSTANCE_TYPES_FILE.name})"
            )
        return value

    @field_validator("min_vcpus")
    @classmethod
    def _min_not_above_max(cls, value: int, info: ValidationInfo) -> int:
        top = info.data.get("max_vcpus")
        if top is not None and value > top:
            raise ValueError(f"must be <= batch.max_vcpus ({top})")
        return value

    @field_validator("desired_vcpus")
    @classmethod
    def _desired_within_bounds(cls, value: int, info: ValidationInfo) -> int:
        low, top = info.data.get("min_vcpus"), info.data.get("max_vcpus")
        if low is not None and top is not None and not low <= value <= top:
            raise ValueError(f"must be between batch.min_vcpus ({low}) and batch.max_vcpus ({top})")
        return value

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: dict[str, StageOverride]) -> dict[str, StageOverride]:
        known = [s.name for s in PIPELINE.batch_steps]
        for name, override in value.items():
            if name not in known:
                raise _KeyError(
                    f"batch.stages.{name}",
                    override.model_dump(exclude_none=True),
                    f"no Batch step {name!r} in conf/pipeline.py; the steps are {', '.join(known)}",
                )
            if (override.images_per_second is None) != (override.throughput_source is None):
                raise _KeyError(
                    f"batch.stages.{name}.throughput_source",
                    override.throughput_source,
                    "images_per_second and throughput_source go together: say where the figure comes from "
                    "(a GPU run of make bench-stage, or a published table)",
                )
            try:
                override.apply(PIPELINE.step(name).resources)
            except ValueError as exc:
                raise _KeyError(f"batch.stages.{name}.gpus", override.gpus, str(exc)) from None
        return value

    def resources(self, spec: PipelineSpec = PIPELINE) -> dict[str, Resources]:
        """Each Batch step's resources in this environment: the spec's, with this profile's overrides."""
        return {
            s.name: self.stages[s.name].apply(s.resources) if s.name in self.stages else s.resources
            for s in spec.batch_steps
        }

    def job_hour_costs(self, table: dict, spec: PipelineSpec = PIPELINE) -> dict[str, dict]:
        """What one job-hour of each Batch step costs here: the cheapest instance of its environment
        that fits it, on-demand and expected (the table's typical spot fraction where that
        environment is spot: the GPU one always, the CPU one when ``cpu_spot``)."""
        out = {}
        for name, r in self.resources(spec).items():
            types, spot = (
                (self.gpu_instance_types, True) if r.compute == "gpu" else (self.cpu_instance_types, self.cpu_spot)
            )
            found = job_hour_usd(r.vcpus, r.memory_mib, r.gpus, types, table)
            if found is None:
                raise _KeyError(
                    f"batch.{r.compute}_instance_types",
                    list(types),
                    f"none that the price table knows fits {name} ({r.vcpus} vCPUs, {r.memory_mib} MiB, {r.gpus} GPUs)",
                )
            instance, on_demand = found
            expected = on_demand * table["spot_typical_fraction_of_on_demand"] if spot else on_demand
            out[name] = {"instance": instance, "usd_per_hour": round(expected, 4), "on_demand_usd_per_hour": on_demand}
        return out


class BudgetSettings(_Frozen):
    """Cost budget of one environment and the share of it that raises the alert."""

    amount_usd: float = Field(gt=0)
    period: Literal["DAILY", "MONTHLY", "QUARTERLY", "ANNUALLY"]
    alert_threshold_pct: float = Field(ge=1, le=100)
    forecast_threshold_pct: float = Field(ge=1, le=100)
    subscribers: tuple[str, ...] = ()

    @field_validator("subscribers")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


class LogSettings(_Frozen):
    retention_days: int

    @field_validator("retention_days")
    @classmethod
    def _cloudwatch_value(cls, value: int) -> int:
        if value not in CLOUDWATCH_RETENTION_DAYS:
            raise ValueError(f"must be one of CloudWatch's values {', '.join(map(str, CLOUDWATCH_RETENTION_DAYS))}")
        return value


class NetworkSettings(_Frozen):
    """``egress: endpoints`` costs per interface endpoint-hour; ``nat`` one NAT gateway-hour plus data."""

    cidr: str = Field(pattern=r"^\d{1,3}\.\d{1,3}\.0\.0/16$")
    az_count: int = Field(ge=2, le=3)
    egress: Literal["endpoints", "nat"]


class DataLakeSettings(_Frozen):
    abort_multipart_days: int = Field(ge=1, le=30)
    intelligent_tiering_days: int = Field(ge=0, le=3650)
    archive_days: int = Field(ge=1, le=3650)
    noncurrent_expiration_days: int = Field(ge=1, le=3650)
    access_log_expiration_days: int = Field(ge=1, le=3650)
    processed_expiration_days: int = Field(ge=1, le=3650)  # intermediate stage outputs
    replica_noncurrent_expiration_days: int = Field(ge=1, le=3650)  # old versions kept in the replica
    replica_region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    force_destroy: bool
    prevent_destroy: bool
    # The Glue table, Athena workgroup, saved queries and query policy over the curated detections
    # (modules/dataset.py).
    catalog: bool

    @field_validator("prevent_destroy")
    @classmethod
    def _not_both(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("force_destroy"):
            raise ValueError("cannot be true while data_lake.force_destroy is true; choose one")
        return value

    @field_validator("archive_days")
    @classmethod
    def _archive_after_tiering(cls, value: int, info: ValidationInfo) -> int:
        tiering = info.data.get("intelligent_tiering_days")
        if tiering is not None and value <= tiering:
            raise ValueError(f"must be greater than data_lake.intelligent_tiering_days ({tiering})")
        return value


class EcrSettings(_Frozen):
    keep_last_images: int = Field(ge=1, le=1000)


class FunctionSpec(_Frozen):
    memory_mb: int = Field(ge=128, le=10240)
    timeout_seconds: int = Field(ge=1, le=900)
    reserved_concurrency: int | None = Field(default=None, ge=1, le=1000)


class FunctionSettings(_Frozen):
    """Lambda functions: one spec per handler in lambda_src/."""

    architecture: Literal["arm64", "x86_64"]
    # AWS SDK for pandas (pyarrow) managed layer for write_parquet; None where the emulator runs
    # handlers with the project's own Python, which has pyarrow.
    pandas_layer_arn: str | None = Field(default=None, pattern=r"^arn:aws:lambda:[a-z0-9-]+:\d{12}:layer:[\w-]+:\d+$")
    specs: dict[str, FunctionSpec]

    @field_validator("specs")
    @classmethod
    def _all_functions(cls, value: dict[str, FunctionSpec]) -> dict[str, FunctionSpec]:
        needed = {s.name for s in PIPELINE.lambda_steps} | set(SUPPORT_FUNCTIONS)
        missing, unknown = needed - set(value), set(value) - needed
        if missing:
            raise ValueError(f"missing function spec(s) {', '.join(sorted(missing))}")
        if unknown:
            raise ValueError(f"no function {', '.join(sorted(unknown))}; the functions are {', '.join(sorted(needed))}")
        return value


class WorkflowSettings(_Frozen):
    """The fan-out: shard size, shards in flight, and what the wall-time estimate assumes."""

    images_per_shard: int = Field(ge=1, le=1_000_000)
    max_concurrency: int = Field(ge=1, le=10_000)  # Distributed Map limit
    job_overhead_seconds: int = Field(ge=0, le=3600)  # container start + model load, per job
    fleet_start_seconds: int = Field(ge=0, le=3600)  # first instances up and images pulled
    log_level: Literal["ALL", "ERROR", "FATAL", "OFF"]
    include_execution_data: bool
    start_on_new_manifest: bool
    max_attempts: int = Field(ge=1, le=10)
    # A failed Batch job is submitted once more after this many seconds.
    job_retry_interval_seconds: int = Field(ge=1, le=3600)
    # Shards that may fail (after their retries) without failing the execution: the Distributed
    # Map's ToleratedFailurePercentage. Within it the run writes what it has and notifies the failed
    # shards; beyond it the execution fails with States.ExceedToleratedFailureThreshold.
    tolerated_shard_failure_pct: float = Field(default=0, ge=0, le=100)


class WeatherSettings(_Frozen):
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    connect_timeout_seconds: float = Field(gt=0, le=30)
    read_timeout_seconds: float = Field(gt=0, le=60)
    max_retries: int = Field(ge=0, le=5)
    # Requests failed in a row after which one invocation takes the provider as down.
    give_up_after: int = Field(ge=1, le=1000)
    max_in_flight: int = Field(ge=1, le=64)  # requests at once
    sites_per_request: int = Field(ge=1, le=1000)  # Open-Meteo takes up to 1,000 locations a request
    max_retry_after_seconds: float = Field(ge=0, le=300)  # the longest 429 Retry-After waited


class MonitoringSettings(_Frozen):
    """Alarm thresholds; ``treat_missing_data`` is notBreaching: an idle pipeline is healthy."""

    period_seconds: int = Field(ge=60, le=86400)
    evaluation_periods: int = Field(ge=1, le=100)
    lambda_duration_pct_of_timeout: int = Field(ge=10, le=100)
    treat_missing_data: Literal["notBreaching", "breaching", "ignore", "missing"]
    runnable_alarm_minutes: int = Field(ge=5, le=1440)
    s3_request_metrics: bool
    cost_allocation_tags: bool
    anomaly_detection: bool
    # CUR 2.0 export + Athena saved queries (modules/cost_reports.py); off where the emulator has
    # no Data Exports.
    cost_reports: bool
    anomaly_threshold_usd: float = Field(gt=0)
    # Where alarm descriptions and the dashboard link the runbooks: the console resolves a relative
    # link against its own URL, so links are absolute (the repository's docs on GitHub).
    runbook_base_url: str = Field(pattern=r"^https://\S+/$")


class CiSettings(_Frozen):
    """GitHub Actions: the one repository whose workflows may assume this environment's CI roles."""

    github_repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class StateBackend(_Frozen):
    """Where Terraform keeps this environment's state: a local file, or an S3 object."""

    type: Literal["local", "s3"]
    path: str | None = None
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    key_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    region: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> StateBackend:
        if self.type == "local" and not self.path:
            raise ValueError("a local backend needs state_backend.path")
        if self.type == "s3" and not (self.bucket and self.key_prefix and self.region):
            raise ValueError("an s3 backend needs state_backend.bucket, key_prefix and region")
        return self


class Profile(_Frozen):
    """Everything that may differ between two environments."""

    name: str
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{2,20}$")
    cost_center: str = Field(min_length=1)
    provider: Literal["local", "aws"]
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    stack_name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{2,63}$")
    account_id: str | None = None
    emulator_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    minio_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    state_backend: StateBackend
    batch: BatchSettings
    budget: BudgetSettings
    logs: LogSettings
    network: NetworkSettings
    data_lake: DataLakeSettings
    ecr: EcrSettings
    functions: FunctionSettings
    workflow: WorkflowSettings
    weather: WeatherSettings
    monitoring: MonitoringSettings
    ci: CiSettings

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{12}", str(value)):
            raise ValueError("must be a 12-digit AWS account id in quotes, e.g. '123456789012'")
        return value

    @model_validator(mode="after")
    def _provider_needs(self) -> Profile:
        if self.provider == "aws":
            if self.account_id is None:
                raise _KeyError("account_id", None, "required when provider is aws")
            if self.state_backend.type != "s3":
                raise _KeyError("state_backend.type", self.state_backend.type, "must be s3 when provider is aws")
        else:
            if self.emulator_endpoint is None:
                raise _KeyError("emulator_endpoint", None, "required when provider is local")
            if self.state_backend.type != "local":
                raise _KeyError("state_backend.type", self.state_backend.type, "must be local when provider is local")
        return self

    @model_validator(mode="after")
    def _a_person_hears_alerts(self) -> Profile:
        if self.is_cloud and not self.budget.subscribers:
            raise _KeyError(
                "budget.subscribers",
                [],
                "a cloud environment needs at least one e-mail address that receives its alerts "
                "(budget notifications, alarms, failed executions)",
            )
        return self

    @model_validator(mode="after")
    def _concurrency_fits_the_fleet(self) -> Profile:
        resources = self.batch.resources()
        for step in PIPELINE.shard_steps:
            slots = self.fleet_slots(resources[step.name])
            if self.workflow.max_concurrency > slots:
                kind = resources[step.name].compute
                limit = "batch.max_vcpus" if kind == "gpu" else "batch.cpu_max_vcpus"
                raise _KeyError(
                    "workflow.max_concurrency",
                    self.workflow.max_concurrency,
                    f"the {kind.upper()} fleet runs at most {slots} {step.name} jobs at once "
                    f"({limit} / {resources[step.name].vcpus} vCPUs); lower it or raise {limit}",
                )
        return self

    @model_validator(mode="after")
    def _runnable_alarm_before_the_cancel(self) -> Profile:
        if self.monitoring.runnable_alarm_minutes * 60 >= self.batch.runnable_timeout_seconds:
            raise _KeyError(
                "monitoring.runnable_alarm_minutes",
                self.monitoring.runnable_alarm_minutes,
                f"must be below batch.runnable_timeout_seconds ({self.batch.runnable_timeout_seconds} s), "
                "which cancels the job: an alarm after the cancel would never fire",
            )
        return self

    @model_validator(mode="after")
    def _every_step_has_a_price(self) -> Profile:
        """Cost estimates (PlanFanOut, GuardBudget) need a job-hour price for every Batch step."""
        try:
            self.batch.job_hour_costs(self.prices)
        except PriceError as exc:
            raise _KeyError("region", self.region, str(exc)) from None
        return self

    @property
    def prices(self) -> dict:
        """This region's dated price table (conf/prices/<region>.json)."""
        return price_table(self.region)

    def fleet_slots(self, resources: Resources) -> int:
        return fleet_slots(resources, gpu_max_vcpus=self.batch.max_vcpus, cpu_max_vcpus=self.batch.cpu_max_vcpus)

    @model_validator(mode="after")
    def _replica_elsewhere(self) -> Profile:
        if self.data_lake.replica_region == self.region:
            raise _KeyError("data_lake.replica_region", self.region, "must differ from region")
        return self

    @property
    def is_cloud(self) -> bool:
        return self.provider == "aws"

    @computed_field
    @property
    def ci_plan_role_arn(self) -> str | None:
        """Read-only role the pull-request workflow plans with (cloud envs only)."""
        return self._role_arn(f"{self.prefix}-ci-plan")

    @computed_field
    @property
    def ci_deploy_role_arn(self) -> str | None:
        """Role the main-branch workflow applies with, from the env's protected GitHub environment."""
        return self._role_arn(f"{self.prefix}-ci-deploy")

    @computed_field
    @property
    def permissions_boundary_arn(self) -> str | None:
        """Managed policy capping every role of the env (created with the CI roles, bootstrap stack)."""
        return f"arn:aws:iam::{self.account_id}:policy/{self.prefix}-boundary" if self.is_cloud else None

    @property
    def state_key_alias(self) -> str | None:
        """Alias of the account's state key (bootstrap stack), named after the state bucket."""
        return f"alias/{self.state_backend.bucket}" if self.state_backend.type == "s3" else None

    @computed_field
    @property
    def state_key_alias_arn(self) -> str | None:
        """What the S3 backend encrypts state with (the key's own ARN is known only after apply)."""
        alias = self.state_key_alias
        return f"arn:aws:kms:{self.state_backend.region}:{self.account_id}:{alias}" if alias else None

    def _role_arn(self, name: str) -> str | None:
        return f"arn:aws:iam::{self.account_id}:role/{name}" if self.is_cloud else None

    @property
    def prefix(self) -> str:
        """Name prefix of every resource of this environment, e.g. ``odins-ravne-dev``."""
        return f"{self.project}-{self.name}"


class _KeyError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(allowed)
        self.key, self.value, self.allowed = key, value, allowed


def known_environments(profile_dir: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in profile_dir.glob("*.yaml") if p.name != DEFAULTS_FILE)


def load_profile(env: str, profile_dir: Path = PROFILE_DIR) -> Profile:
    """Load ``<profile_dir>/<env>.yaml`` over ``defaults.yaml``; raise ProfileError with one line."""
    known = known_environments(profile_dir)
    if env not in known:
        raise ProfileError(
            f"unknown environment {env!r}: known environments are {', '.join(known) or 'none'}; "
            f"create {_display(profile_dir / (env + '.yaml'))} to add it"
        )
    return load_profile_file(profile_dir / f"{env}.yaml")


def load_profile_file(path: Path) -> Profile:
    path = Path(path)
    env = path.stem
    if not _ENV_NAME.match(env):
        raise ProfileError(f"{_display(path)}: environment name {env!r} must match {_ENV_NAME.pattern}")
    defaults_path = path.parent / DEFAULTS_FILE
    defaults = _read_yaml(defaults_path) if defaults_path.exists() else {}
    own = _from_seed_layout(_read_yaml(path), path)
    if "name" in own:
        raise ProfileError(f"{_display(path)}: key 'name' is not allowed: the file name is the environment name")
    merged = _merge(defaults, own)
    merged["name"] = env
    try:
        return Profile.model_validate(merged)
    except ValidationError as exc:
        raise ProfileError(_one_line(exc, path, defaults_path, own)) from None
    except _KeyError as exc:
        source = _source(exc.key.split("."), path, defaults_path, own)
        raise ProfileError(f"{_display(source)}: {exc.key} = {exc.value!r}: {exc.allowed}") from None


# The owner's original description writes a profile as ``infrastructure: {provider, region,
# stack_name, cost_optimized, localstack: {endpoint}, minio: {endpoint}}``. Each of those keys is
# accepted where it has one meaning here (README, "Seed profile keys"), the rest refused by name.
SEED_KEYS = {
    "provider": "provider",
    "region": "region",
    "stack_name": "stack_name",
    "localstack.endpoint": "emulator_endpoint",
    "minio.endpoint": "minio_endpoint",
}
SEED_REFUSED = {
    "cost_optimized": "it has no single meaning here: the GPU environment is always spot and both scale to "
    "zero; set batch.cpu_spot and batch.spot_bid_percentage instead",
}


def _from_seed_layout(own: dict[str, Any], path: Path) -> dict[str, Any]:
    """The seed's nested ``infrastructure`` block, as this profile's top-level keys."""
    if "infrastructure" not in own:
        return own
    block, out = own["infrastructure"], {k: v for k, v in own.items() if k != "infrastructure"}
    if not isinstance(block, dict):
        raise ProfileError(f"{_display(path)}: infrastructure must be a mapping (the seed's layout), got {block!r}")
    flat = {
        f"{key}.{inner}" if isinstance(value, dict) else key: inner_value if isinstance(value, dict) else value
        for key, value in block.items()
        for inner, inner_value in (value.items() if isinstance(value, dict) else [(None, value)])
    }
    for key, value in flat.items():
        if key in SEED_REFUSED:
            raise ProfileError(f"{_display(path)}: infrastructure.{key} = {value!r}: {SEED_REFUSED[key]}")
        if key not in SEED_KEYS:
            known = ", ".join(f"infrastructure.{k}" for k in SEED_KEYS)
            raise ProfileError(f"{_display(path)}: infrastructure.{key} is not a seed key this project knows ({known})")
        target = SEED_KEYS[key]
        if target in out:
            raise ProfileError(f"{_display(path)}: infrastructure.{key} and {target} say the same thing; keep one")
        out[target] = value
    return out


class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (YAML 1.2 requires unique keys;
    PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _DuplicateKey(f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ProfileError(f"{_display(path)}: profile file is missing; create it (see conf/profiles/dev.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as exc:
        raise ProfileError(f"{_display(path)}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ProfileError(f"{_display(path)}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{_display(path)}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _one_line(exc: ValidationError, path: Path, defaults_path: Path, own: dict[str, Any]) -> str:
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "(top level)"
    source = _source(loc, path, defaults_path, own)
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyError):
        source = _source(ctx_error.key.split("."), path, defaults_path, own)
        return f"{_display(source)}: {ctx_error.key} = {ctx_error.value!r}: {ctx_error.allowed}"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"{_display(source)}: unknown key {key!r}; allowed keys here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{_display(source)}: {key} is required but missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{_display(source)}: {key} = {err.get('input')!r}: {message}"


def _source(loc: list[str], path: Path, defaults_path: Path, own: dict[str, Any]) -> Path:
    """The file that set the value at ``loc``: defaults.yaml if only it has the key, else the env's own
    file (which has it, or is where a missing key belongs)."""
    if _has_key(own, loc) or not defaults_path.exists():
        return path
    return defaults_path if _has_key(_read_yaml(defaults_path), loc) else path


def _has_key(data: Any, loc: list[str]) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _allowed_keys(parent: list[str]) -> list[str]:
    model: Any = Profile
    for part in parent:
        field = model.model_fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return sorted(k for k in model.model_fields if k != "name")


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
