"""The pipeline's shape, in one place: which steps run, in which order, on what, reading and writing
what, fanning out how. Specific to Odins Ravne; everything else derives from :data:`PIPELINE`.

Derived from it: profile validation (``batch.stages`` may only override these stages), the Batch
job definitions, job roles and queue routing (``modules/batch_compute.py``), the Lambda functions'
data grants and prefixes (``stacks/pipeline_stack.py``), the state machine and its IAM
(``modules/workflow.py``), the local runners (``images/<step>/``, ``lambda_src/<step>/``) and the
image build list (``pipeline_ops/images.py`` reads the job definitions). Adding a step is one entry here
plus its code folder. Environment differences stay in the profiles.

Fan-out: the ``plans_shards`` step (PlanFanOut, a Lambda) counts the manifest, sets the shard size
(``workflow.images_per_shard``), prices the run and refuses what cannot finish in the 2 h, before
any Batch job (it runs before GuardBudget, which adds its cost estimate to the month's spend);
the ``writes_shards`` step (stage0) validates the images, cuts the shards and writes their list to
S3; consecutive ``per_shard`` steps then run as one Distributed Map over that list, each shard going
through all of them in turn (shard 3 can be in stage2 while shard 9 is still in stage1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Bucket = Literal["raw", "processed", "curated"]
EXECUTION_TIMEOUT_SECONDS = 7200  # the seed's 2 hour limit of one execution
# What PlanFanOut leaves unplanned of the 2 h beyond its estimate (retry included): estimates of job
# overhead and fleet start are planning values, and an execution past its time-out ends TIMED_OUT,
# which no Catch sees (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
PLAN_MARGIN_SECONDS = 720  # 10 % of the 2 h

# A Lambda step's answer: each key with its kind. Only scalars, and text has a bound: an answer's
# size must not grow with the data (a state's input or output over 256 KiB fails the execution with
# States.DataLimitExceeded, which no Catch takes:
# https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html#service-limits-task-executions).
# A large list goes to S3; the answer carries its key and counts.
AnswerKind = Literal["bool", "int", "number", "text"]
TEXT_BOUND = 2048  # characters of one text value of an answer
# Each kind's JSON, at most; for text, TEXT_BOUND characters plus the quotes as long as they need no
# escape: a character json.dumps escapes takes up to 6 bytes (12 outside the BMP), so a text of
# quotes or non-ASCII characters (an S3 key in a reason) may take up to 12x: the four answers'
# six texts would then take ~150 KB, still inside the 256 KiB state limit.
KIND_BOUND = {"bool": 5, "int": 20, "number": 32, "text": TEXT_BOUND + 2}


# A shard counter's answer (``Step.counts_shards``): how many shards finished it and which did not
# (bounded text). The notices name them: within the tolerated failures NotifyFailedShards; beyond,
# ListFailedShards asks the same function with ``{"mode": LIST_MISSING_MODE}``, which answers them
# from a listing of its input, no record read, for NotifyShardsFailed.
SHARD_COUNT: tuple[tuple[str, AnswerKind], ...] = (("shards", "int"), ("missing", "text"))
LIST_MISSING_MODE = "list_missing"


def kind_bounds(answer: tuple[tuple[str, AnswerKind], ...]) -> dict[str, int]:
    """The bound of each kind the answer uses, declared with it in the synthesized JSON: the static
    ASL check (tools/asl_contract.py: ``answer_bound``, the most bytes the answer takes as JSON)
    takes them from there and knows none of its own."""
    return {kind: KIND_BOUND[kind] for _, kind in answer}


def answer_problems(answer: tuple[tuple[str, AnswerKind], ...], value: object) -> list[str]:
    """How ``value`` (one return of a handler) breaks its declared answer: a key it lacks (a
    ResultSelector or Choice that selects it raises States.Runtime), a value of another kind, a
    list or text that grows with the data."""
    if not isinstance(value, dict):
        return [f"answer is {type(value).__name__}, not a JSON object"]
    out = []
    for key, kind in answer:
        if key not in value:
            out.append(f"lacks {key!r}")
            continue
        item = value[key]
        ok = {
            "bool": isinstance(item, bool),
            "int": isinstance(item, int) and not isinstance(item, bool),
            "number": isinstance(item, int | float) and not isinstance(item, bool),
            "text": isinstance(item, str) and len(item) <= TEXT_BOUND,
        }[kind]
        if not ok:
            shown = f"{type(item).__name__} of {len(item)}" if isinstance(item, str | list | dict) else repr(item)
            out.append(f"{key!r} should be {kind}{' (bounded)' if kind == 'text' else ''}, is {shown}")
    out += [f"{key!r} is not declared" for key in value if key not in dict(answer)]
    return out


@dataclass(frozen=True)
class Location:
    """A prefix of one data-lake bucket."""

    bucket: Bucket
    prefix: str

    def __str__(self) -> str:
        return f"{self.bucket}:{self.prefix}"


@dataclass(frozen=True)
class Resources:
    """What one Batch job of a step asks for; a profile may override any field per environment."""

    compute: Literal["cpu", "gpu"]
    vcpus: int
    memory_mib: int
    gpus: int
    timeout_seconds: int
    image_tag: str = "0.1.0"
    # Throughput of one job (images per second): the wall time and cost estimates of an execution
    # (PlanFanOut, GuardBudget, the plan review) rest on it, so where it comes from is stated with it.
    images_per_second: float = 50.0
    throughput_source: str = "planning value"
    batch_size: int = 1  # images (stage2: crops) per inference call


@dataclass(frozen=True)
class Step:
    """One state of the workflow. ``name`` is the code folder (``images/<name>/`` for Batch,
    ``lambda_src/<name>/`` for Lambda) and, in CamelCase, the state name."""

    name: str
    runs_on: Literal["lambda", "batch"]
    reads: tuple[Location, ...] = ()
    writes: Location | None = None
    # A prefix the step both reads and writes across executions (a cache): CACHE_PREFIX, read+write.
    cache: Location | None = None
    fan_out: Literal["once", "per_shard"] = "once"
    resources: Resources | None = None  # Batch steps
    # A Lambda that sizes the fan-out and refuses what cannot finish (gets FAN_OUT).
    plans_shards: bool = False
    # A Batch step that writes shards.json + summary.json under its output prefix (the Map's list).
    writes_shards: bool = False
    # A Lambda whose ``allowed``/``reason`` answer decides whether the execution goes on; a refusal
    # ends it with this error name and the reason as its cause.
    gate: str | None = None
    # A Lambda's answer, every key with its kind: every return path of its handler carries them all
    # (tests/test_answers.py), and the state machine selects only these (tools/asl_contract.py).
    answer: tuple[tuple[str, AnswerKind], ...] = ()
    outputs: tuple[str, ...] = ()  # keys of a Lambda's answer kept in the execution state
    result_key: str | None = None  # where in the state they go (default: the step name)
    uses: tuple[str, ...] = ()  # result keys of earlier Lambda steps this Lambda is given
    # A Lambda after the fan-out whose answer carries SHARD_COUNT: ``shards`` counts the shards that
    # finished it, ``missing`` names the others; fewer than stage0 cut (failures within
    # workflow.tolerated_shard_failure_pct) is notified. After a fan-out that failed beyond them it
    # is asked the same in LIST_MISSING_MODE (the same answer, from a listing).
    counts_shards: bool = False
    pandas_layer: bool = False  # a Lambda that imports pyarrow: gets the profile's AWS SDK for pandas layer
    description: str = ""

    @property
    def state(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def result_path(self) -> str:
        return f"$.{self.result_key or self.name}"


@dataclass(frozen=True)
class PipelineSpec:
    steps: tuple[Step, ...]
    inputs: tuple[Location, ...] = field(default=(Location("raw", "manifests"), Location("raw", "images")))

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("pipeline spec: " + "; ".join(problems))

    def problems(self) -> list[str]:
        names = [s.name for s in self.steps]
        out = [f"step {n!r} appears twice" for n in sorted({n for n in names if names.count(n) > 1})]
        for flag in ("plans_shards", "writes_shards"):
            if sum(getattr(s, flag) for s in self.steps) > 1:
                out.append(f"only one step may have {flag}")
        available, answers = set(self.inputs), set()
        sharded = False
        for step in self.steps:
            if step.runs_on == "batch" and step.resources is None:
                out.append(f"batch step {step.name!r} needs resources")
            if step.runs_on == "lambda" and (step.resources or step.fan_out == "per_shard"):
                out.append(f"lambda step {step.name!r} runs once and takes no Batch resources")
            if step.fan_out == "per_shard" and not sharded:
                out.append(f"per-shard step {step.name!r} comes before the step that writes the shards")
            if step.writes_shards and (step.runs_on != "batch" or step.writes is None):
                out.append(f"{step.name!r} writes the shards, so it must be a Batch step with an output prefix")
            if (step.plans_shards or step.gate) and step.runs_on != "lambda":
                out.append(f"{step.name!r} answers allowed/reason, so it must be a Lambda step")
            for location in step.reads:
                if location not in available:
                    out.append(f"{step.name!r} reads {location}, which no earlier step writes")
            for key in step.uses:
                if key not in answers:
                    out.append(f"{step.name!r} uses {key!r}, which no earlier Lambda step answers")
            if step.writes:
                available.add(step.writes)
            if step.outputs:
                answers.add(step.result_key or step.name)
            declared = dict(step.answer)
            out += [
                f"{step.name!r} keeps {key!r}, which its answer does not declare"
                for key in step.outputs
                if key not in declared
            ]
            if step.counts_shards and (
                not sharded
                or any(declared.get(key) != kind for key, kind in SHARD_COUNT)
                or not dict(SHARD_COUNT).keys() <= set(step.outputs)
            ):
                out.append(
                    f"{step.name!r} counts the shards: it must come after the fan-out and keep 'shards' (int) "
                    "and 'missing' (text)"
                )
            if step.gate and (declared.get("allowed"), declared.get("reason")) != ("bool", "text"):
                out.append(f"{step.name!r} is a gate: its answer must declare allowed (bool) and reason (text)")
            sharded = sharded or step.writes_shards
        return out

    @property
    def batch_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.runs_on == "batch")

    @property
    def lambda_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.runs_on == "lambda")

    @property
    def planner(self) -> Step | None:
        return next((s for s in self.steps if s.plans_shards), None)

    @property
    def manifests(self) -> Location | None:
        """Where manifests arrive: the location the planning step reads (the trigger watches it,
        reruns are written there)."""
        planner = self.planner
        return planner.reads[0] if planner and planner.reads else None

    @property
    def sharder(self) -> Step | None:
        return next((s for s in self.steps if s.writes_shards), None)

    @property
    def shard_counter(self) -> Step | None:
        return next((s for s in self.steps if s.counts_shards), None)

    @property
    def shard_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.fan_out == "per_shard")

    def step(self, name: str) -> Step:
        for candidate in self.steps:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no step {name!r} in the pipeline spec (steps: {', '.join(s.name for s in self.steps)})")

    def with_step(self, step: Step, *, after: str) -> PipelineSpec:
        """A copy with ``step`` inserted after the step named ``after`` (tests, forks)."""
        index = [s.name for s in self.steps].index(after) + 1
        return replace(self, steps=(*self.steps[:index], step, *self.steps[index:]))


def fleet_slots(resources: Resources, *, gpu_max_vcpus: int, cpu_max_vcpus: int) -> int:
    """How many jobs of this size the compute environment it runs on holds at once."""
    limit = gpu_max_vcpus if resources.compute == "gpu" else cpu_max_vcpus
    return max(0, limit // resources.vcpus)


def fan_out_settings(
    spec: PipelineSpec,
    resources: dict[str, Resources],
    *,
    images_per_shard: int,
    concurrency: int,
    job_overhead_seconds: int,
    fleet_start_seconds: int,
    retry_interval_seconds: int,
    function_timeouts: dict[str, int],
    costs: dict[str, dict],
    price_date: str,
) -> dict:
    """What the planning step needs to size shards and estimate wall time and cost (its ``FAN_OUT``).

    ``steps``: each Batch step between the planner and the end of the fan-out, in order, with its
    throughput, whether it runs per shard (else once over every image, as stage0) and its job-hour
    price (``costs``: expected, i.e. the typical spot price where its environment is spot, and
    on-demand); ``reserve_seconds``: what the steps after the fan-out may take, their time-outs
    (plus the 30 s the workflow adds to a Lambda task's); ``retry_interval_seconds``: the wait before a
    failed job runs again (the estimate counts one such retry); ``margin_seconds``: left unplanned."""
    last = max((i for i, s in enumerate(spec.steps) if s.fan_out == "per_shard"), default=len(spec.steps) - 1)
    start = next((i + 1 for i, s in enumerate(spec.steps) if s.plans_shards), 0)
    reserve = sum(
        function_timeouts[s.name] + 30 if s.runs_on == "lambda" else resources[s.name].timeout_seconds
        for s in spec.steps[last + 1 :]
    )
    steps = [
        {
            "name": s.name,
            "per_shard": s.fan_out == "per_shard",
            "images_per_second": resources[s.name].images_per_second,
            "throughput_source": resources[s.name].throughput_source,
            "usd_per_hour": costs[s.name]["usd_per_hour"],
            "on_demand_usd_per_hour": costs[s.name]["on_demand_usd_per_hour"],
        }
        for s in spec.steps[start : last + 1]
        if s.runs_on == "batch"
    ]
    return {
        "images_per_shard": images_per_shard,
        "concurrency": concurrency,
        "steps": steps,
        "job_overhead_seconds": job_overhead_seconds,
        "fleet_start_seconds": fleet_start_seconds,
        "retry_interval_seconds": retry_interval_seconds,
        "margin_seconds": PLAN_MARGIN_SECONDS,
        "execution_timeout_seconds": EXECUTION_TIMEOUT_SECONDS,
        "reserve_seconds": reserve,
        "price_date": price_date,
    }


# PlanFanOut's answer (lambda_src/plan_fan_out: every key on every path); the workflow keeps it all.
PLAN_ANSWER: tuple[tuple[str, AnswerKind], ...] = (
    ("allowed", "bool"),
    ("reason", "text"),
    ("duplicate", "bool"),  # a second delivery of one manifest version: the run ends quietly
    ("images", "int"),
    ("images_per_shard", "int"),
    ("shards", "int"),
    ("concurrency", "int"),
    ("estimated_seconds", "int"),
    ("remaining_seconds", "int"),
    ("margin_seconds", "int"),
    ("largest_manifest", "int"),
    ("estimated_usd", "number"),
    ("estimated_usd_on_demand", "number"),
    ("prices", "text"),
)

# Lambda functions outside the workflow (lambda_src/<name>/), with what they are for.
SUPPORT_FUNCTIONS = {
    "budget_shutdown": "Stops Batch spending at 100 % of the budget; resumes on request",
    "batch_metrics": "Batch queue depth, oldest RUNNABLE job, vCPUs, finished jobs (Batch publishes no metrics)",
    "start_run": "The manifest trigger's target: one execution per manifest key and content (named after it)",
}

PIPELINE = PipelineSpec(
    steps=(
        Step(
            name="plan_fan_out",
            runs_on="lambda",
            reads=(Location("raw", "manifests"),),
            # one run per manifest key and content: its claim, written once and read back when taken (a retry
            # of the same execution goes on), across executions like a cache
            writes=Location("processed", "claims"),
            cache=Location("processed", "claims"),
            plans_shards=True,
            gate="ManifestRefused",
            answer=PLAN_ANSWER,
            outputs=tuple(key for key, _ in PLAN_ANSWER),
            result_key="plan",
            description="Counts and prices the manifest; refuses one the fan-out cannot finish in the execution's time",
        ),
        Step(
            name="guard_budget",
            runs_on="lambda",
            gate="BudgetExceeded",
            answer=(
                ("allowed", "bool"),
                ("reason", "text"),
                ("spent", "number"),
                ("estimate", "number"),
                ("forecast", "number"),
                ("limit", "number"),
                ("threshold_pct", "number"),
                ("reserved", "number"),
            ),
            outputs=("allowed", "reason", "spent", "estimate", "limit"),
            result_key="guard",
            uses=("plan",),
            description="Refuses an execution when the kill switch is on or spend plus its estimate passes the guard",
        ),
        Step(
            name="stage0",
            runs_on="batch",
            reads=(Location("raw", "manifests"), Location("raw", "images")),
            writes=Location("processed", "stage0"),
            writes_shards=True,
            resources=Resources(
                compute="cpu",
                vcpus=2,
                memory_mib=4096,
                gpus=0,
                timeout_seconds=1800,
                images_per_second=500.0,
                throughput_source="one ranged GET per image, 32 at a time at S3's ~20-30 ms: ~1,000/s; half of it",
            ),
            description="Validates the manifest's images and splits them into shards",
        ),
        Step(
            name="stage1",
            runs_on="batch",
            reads=(Location("processed", "stage0"), Location("raw", "images")),
            writes=Location("processed", "stage1"),
            fan_out="per_shard",
            resources=Resources(
                compute="gpu",
                vcpus=4,
                memory_mib=15360,
                gpus=1,
                timeout_seconds=3600,
                images_per_second=4.2,
                throughput_source=(
                    "MegaDetector v5 performance table: an RTX 3050, roughly the T4 of a g4dn, at 4.2 images/s "
                    "(no GPU run of make bench-stage yet)"
                ),
                batch_size=8,
            ),
            description="Animal detection",
        ),
        Step(
            name="stage2",
            runs_on="batch",
            reads=(Location("processed", "stage1"), Location("raw", "images")),
            writes=Location("processed", "stage2"),
            fan_out="per_shard",
            resources=Resources(
                compute="gpu",
                vcpus=4,
                memory_mib=15360,
                gpus=1,
                timeout_seconds=3600,
                images_per_second=20.0,
                throughput_source=(
                    "planning value: a 224x224 classifier on the animal crops only, far cheaper per image than "
                    "detection (no GPU run of make bench-stage yet)"
                ),
                batch_size=32,
            ),
            description="Species classification",
        ),
        Step(
            name="weather_enrichment",
            runs_on="lambda",
            reads=(Location("processed", "stage2"),),
            writes=Location("processed", "weather"),
            cache=Location("processed", "weather-cache"),
            answer=(
                ("records", "int"),
                ("enriched", "int"),
                ("failed", "int"),
                ("shards", "int"),
                ("missing", "text"),
                ("requests", "int"),
                ("failed_attempts", "int"),
                ("site_days", "int"),
                ("from_cache", "int"),
            ),
            outputs=("enriched", "failed", "shards", "missing"),
            counts_shards=True,
            result_key="weather",
            description="Adds hourly weather to detection records",
        ),
        Step(
            name="write_parquet",
            runs_on="lambda",
            reads=(Location("processed", "weather"),),
            writes=Location("curated", "detections"),
            # The Parquet objects are named, not listed: their number grows with the data; each is
            # <prefix>/month=<YYYY-MM>/<part_prefix><NNN>.parquet.
            answer=(
                ("objects", "int"),
                ("rows", "int"),
                ("images", "int"),
                ("prefix", "text"),
                ("part_prefix", "text"),
            ),
            outputs=("objects", "rows", "prefix", "part_prefix"),
            result_key="parquet",
            pandas_layer=True,
            description="Writes the curated Parquet dataset",
        ),
    )
)
