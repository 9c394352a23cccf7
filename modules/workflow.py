"""The pipeline workflow, built from the pipeline spec (conf/pipeline.py) step by step.

For the real spec: GuardBudget -> PlanFanOut -> Route (priority) -> Stage0 -> ReadShards ->
Stage1ToStage2 -> WeatherEnrichment -> WriteParquet. Each step's builder returns its states *and*
the IAM statements the state machine needs to run them (as AWS CDK tasks carry ``taskPolicies``);
the Workflow collects them into its role, so the role can do exactly what the definition does.

Gates (GuardBudget, PlanFanOut) answer ``allowed``/``reason``; a refusal sends an SNS notice and
ends the execution with the step's error (BudgetExceeded, ManifestRefused) and the reason as the
cause. PlanFanOut refuses a manifest the fan-out cannot finish in the 2 h before any Batch job.

Fan-out: stage0 writes the shard list to S3; consecutive per-shard steps run as one **Distributed
Map** whose ItemReader reads that list (by reference: no shard list in the execution state), one
child execution per shard going through the steps in turn, at most ``workflow.max_concurrency``
at once (the profile keeps that within what the compute environment holds). Why a Distributed Map
and not an inline Map or a Batch array job: an inline Map needs the list in the 256 KB state and
its history (~6 events per job, 25,000 per execution) caps it near 2,000 shard-jobs, with at most
40 iterations in flight; an array job costs fewer state transitions (one per step instead of ~4 per
shard and step: 0.025 USD per 1,000, ~1 USD for 10,000 shards) but fails and retries whole, needs a
size >= 2, and has no concurrency bound of its own. A child per shard keeps retries per shard and
the bound explicit. Beyond ``workflow.tolerated_shard_failure_pct`` failed shards the Map fails:
ListFailedShards asks the shard counter which shards have no output, and the notice names them.

Every Task retries transient errors with backoff and jitter and catches everything else into
NotifyFailure (an SNS message naming the failing state) and a Fail state. An execution times out
after 2 hours. Its input is ``{"manifest": "s3://...", "priority": "high|normal|low",
"images_per_shard": N}``; only ``manifest`` is required. ``priority`` picks the GPU queue (default
normal); CPU steps use the cpu queue.
"""

from __future__ import annotations

import json
import re
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

from conf.pipeline import (
    EXECUTION_TIMEOUT_SECONDS,
    LIST_MISSING_MODE,
    SHARD_COUNT,
    PipelineSpec,
    Step,
    kind_bounds,
)
from conf.profile import WorkflowSettings
from modules import asl
from modules.alerting import AlertTopic
from modules.batch_compute import PRIORITY_QUEUES, BatchCompute
from modules.data_lake import DataLake
from modules.encryption import PipelineKey
from modules.functions import PythonFunction
from modules.iam import GrantableRole, GrantableRoleProps, statement
from modules.logs import LogGroup, LogGroupProps

BATCH_EVENTS_RULE = "StepFunctionsGetEventsForBatchJobsRule"
EXECUTION_ID = "$$.Execution.Name"  # the short id; S3 prefixes and every log line carry it
DEFAULT_PRIORITY = "normal"
RUNBOOK = "docs/runbooks/alert-response.md"
FAILED_ERROR = "States.Format('{}: {}', $.failed_state, $.error.Error)"  # the final Fail's error
# No braces: the notice's text is a States.Format template, where they mark the arguments.
INPUT_WITHOUT_MANIFEST = (
    'the input must give "manifest": "s3://<bucket>/<key>" (optional "priority") '
    "or be an S3 Object Created event with bucket name and object key"
)
END_NOTIFIED = ["FAILED", "TIMED_OUT", "ABORTED"]  # execution statuses told by EventBridge
SHARDS_UNLISTED = "NotifyShardsUnlisted"  # a failed fan-out told without its shards


@dataclass(frozen=True)
class Targets:
    """The ARNs and names the definition points at (tokens in a stack, strings in unit tests)."""

    region: str
    account_id: str
    state_machine_name: str
    topic_arn: str
    functions: dict[str, tuple[str, int]]  # step -> (function ARN, time-out seconds)
    job_definitions: dict[str, tuple[str, str]]  # step -> (definition ARN, ARN prefix without revision)
    job_timeouts: dict[str, int]
    priority_queues: dict[str, str]  # high/normal/low -> queue ARN
    cpu_queue: str
    routed: frozenset[str]  # steps whose jobs go to the queue the execution's priority picks
    buckets: dict[str, tuple[str, str]]  # data-lake bucket -> (name, ARN)

    @property
    def state_machine_arn(self) -> str:
        """Built from the name: the role's policy cannot reference the machine it is given to."""
        return f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{self.state_machine_name}"


@dataclass
class Built:
    """A definition under construction: its states and the statements its tasks need."""

    states: dict[str, dict]
    statements: list[dict]

    def add(self, states: dict[str, dict], statements: list[dict] = ()) -> None:
        self.states.update(states)
        self.statements.extend(s for s in statements if s not in self.statements)


def _guarded(
    name: str, state: dict, transient: list[str], next_state: str, attempts: int, notice: str = "NotifyFailure"
) -> dict[str, dict]:
    """A Task (or Map) with retries (``transient``, after any the state has) and a catch that
    records this state's name for the notice (``notice``)."""
    retried = asl.retrying(state, transient, max_attempts=attempts) if transient else state
    return {
        name: asl.then(asl.catching(retried, f"{name}Failed"), next_state),
        f"{name}Failed": asl.mark_failed(name, notice),
    }


def _notify(t: Targets, subject: str, message: str, args: list[str], then: str, attempts: int) -> dict:
    """Publish to the alert topic, then go on to ``then`` whether or not the publish worked. Every
    notice ends with the execution's console link and the runbook."""
    link = f"https://{t.region}.console.aws.amazon.com/states/home?region={t.region}#/v2/executions/details/{{}}"
    message = f"{message} Execution: {link} Runbook: {RUNBOOK}"
    args = [*args, "$$.Execution.Id"]
    publish = asl.sns_publish_task(t.topic_arn, subject=subject, message_format=message, message_args=args)
    # The failed publish's error goes to its own path: the caught error ($.error) is what the final
    # Fail reports.
    retried = asl.retrying(publish, asl.SNS_TRANSIENT, max_attempts=attempts)
    return asl.then(asl.catching(retried, then, result_path="$.notify_error"), then)


def _payload(step: Step, *, sharded: bool) -> dict:
    """What a workflow function is sent: the execution, its manifest and input, the shard count
    after the fan-out, and the answers of earlier steps the step ``uses``."""
    payload = {
        "execution_id.$": EXECUTION_ID,
        "manifest.$": "$.manifest",
        "input.$": "$$.Execution.Input",
        "started_at.$": "$$.Execution.StartTime",
    }
    if sharded:
        payload["shard_count.$"] = "$.shards.summary.count"
    payload.update({f"{key}.$": f"$.{key}" for key in step.uses})
    return payload


def lambda_step(step: Step, t: Targets, *, sharded: bool, next_state: str, attempts: int) -> tuple[dict, list]:
    """Invoke the step's function; a gate goes on only if its answer says ``allowed``."""
    arn, timeout = t.functions[step.name]
    payload = _payload(step, sharded=sharded)
    state = asl.lambda_task(
        arn,
        payload,
        result_selector={f"{k}.$": f"$.Payload.{k}" for k in step.outputs} or {"Payload.$": "$.Payload"},
        result_path=step.result_path,
        timeout=timeout + 30,
    )
    after = f"{step.state}Allowed" if step.gate else next_state
    states = _guarded(step.state, state, asl.LAMBDA_TRANSIENT, after, attempts)
    if step.gate:
        words = " ".join(part.lower() for part in re.findall(r"[A-Z][a-z]*", step.gate))
        states[after] = asl.boolean_choice(
            f"{step.result_path}.allowed", if_true=next_state, otherwise=f"Notify{step.gate}"
        )
        if "duplicate" in step.outputs:
            # A duplicate delivery of the trigger's event is no failure: it ends SUCCEEDED, untold
            # (the EventBridge rule tells only FAILED, TIMED_OUT and ABORTED).
            duplicate = {"Variable": f"{step.result_path}.duplicate", "BooleanEquals": True, "Next": "Duplicate"}
            states[after]["Choices"].append(duplicate)
            states["Duplicate"] = {"Type": "Succeed"}
        states[f"Notify{step.gate}"] = _notify(
            t,
            f"Odins Ravne: {words}",
            "Execution {} refused: {}",
            [EXECUTION_ID, f"{step.result_path}.reason"],
            step.gate,
            attempts,
        )
        states[step.gate] = {"Type": "Fail", "Error": step.gate, "CausePath": f"{step.result_path}.reason"}
    return states, [statement(["lambda:InvokeFunction"], [arn, f"{arn}:*"])]


def batch_job(
    step: Step,
    t: Targets,
    *,
    ids: dict,
    queue_path: str,
    shard: dict,
    environment: list[dict],
    retry_after: int,
    attempts: int,
) -> tuple[dict, list]:
    """One job of ``step``; Batch retries spot reclaims itself, the workflow retries Batch's API
    errors with backoff and then any other failure once more ``retry_after`` seconds later
    (``workflow.job_retry_interval_seconds``). In that order: the first retrier whose ErrorEquals
    matches takes the error, and States.TaskFailed matches every error but States.Timeout, so a
    specific retrier after it never fires
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
    A GPU step goes to the queue the execution's priority picked (``queue_path``), a CPU step to
    the cpu queue. Returns the state and what submitting it and waiting for it (``.sync``) needs."""
    definition_arn, definition_prefix = t.job_definitions[step.name]
    gpu = step.name in t.routed
    job = asl.batch_job_task(
        job_name=step.name,
        queue_arn=t.cpu_queue,
        job_definition_arn=definition_arn,
        parameters={**ids, **shard},
        environment=[{"Name": "EXECUTION_ID", "Value.$": ids["execution_id.$"]}, *environment],
        timeout=t.job_timeouts[step.name] * 3 + 600,
    )
    if gpu:
        job["Parameters"].pop("JobQueue")
        job["Parameters"]["JobQueue.$"] = queue_path
    queues = list(t.priority_queues.values()) if gpu else [t.cpu_queue]
    job = asl.retrying(job, asl.BATCH_TRANSIENT, max_attempts=attempts)
    return asl.retrying(job, ["States.TaskFailed"], max_attempts=1, interval=retry_after), [
        statement(["batch:SubmitJob"], [*queues, f"{definition_prefix}:*"]),
        # Batch supports no resource-level permissions for DescribeJobs; TerminateJob takes job ARNs.
        statement(["batch:DescribeJobs"], ["*"]),
        statement(["batch:TerminateJob"], [f"arn:aws:batch:{t.region}:{t.account_id}:job/*"]),
        statement(
            ["events:DescribeRule", "events:PutRule", "events:PutTargets"],
            [f"arn:aws:events:{t.region}:{t.account_id}:rule/{BATCH_EVENTS_RULE}"],
        ),
    ]


def once_step(
    step: Step, spec: PipelineSpec, t: Targets, settings: WorkflowSettings, *, next_state: str
) -> tuple[dict, list]:
    environment = []
    if step.writes_shards and spec.planner:
        size = f"{spec.planner.result_path}.images_per_shard"
        environment = [{"Name": "IMAGES_PER_SHARD", "Value.$": f"States.Format('{{}}', {size})"}]
    ids = {"manifest.$": "$.manifest", "execution_id.$": EXECUTION_ID}
    state, statements = batch_job(
        step,
        t,
        ids=ids,
        queue_path="$.route.queue",
        shard={"shard": "0"},
        environment=environment,
        retry_after=settings.job_retry_interval_seconds,
        attempts=settings.max_attempts,
    )
    return _guarded(step.state, state, [], next_state, settings.max_attempts), statements


def read_shards(sharder: Step, t: Targets, *, next_state: str, attempts: int) -> tuple[dict, list]:
    """The shard step's summary (how many shards, where their list is) into ``$.shards``."""
    bucket, bucket_arn = t.buckets[sharder.writes.bucket]
    prefix = sharder.writes.prefix
    read = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
        "Parameters": {"Bucket": bucket, "Key.$": f"States.Format('{prefix}/{{}}/summary.json', {EXECUTION_ID})"},
        "ResultSelector": {"summary.$": "States.StringToJson($.Body)"},
        "ResultPath": "$.shards",
    }
    states = _guarded("ReadShards", read, ["S3.SdkClientException", "S3.S3Exception"], next_state, attempts)
    # The summary and the shard list (the Distributed Map's ItemReader) live under the step's prefix.
    return states, [statement(["s3:GetObject"], [f"{bucket_arn}/{prefix}/*"])]


def shard_map(group: tuple[Step, ...], sharder: Step, t: Targets, settings: WorkflowSettings) -> tuple[dict, list]:
    """A Distributed Map over the shard list; each child runs ``group`` for one shard."""
    states: dict[str, dict] = {}
    statements: list[dict] = []
    ids = {"manifest.$": "$.manifest", "execution_id.$": "$.execution_id"}
    for index, step in enumerate(group):
        state, needs = batch_job(
            step,
            t,
            ids=ids,
            queue_path="$.queue",
            shard={"shard.$": "$.shard"},
            environment=[],
            retry_after=settings.job_retry_interval_seconds,
            attempts=settings.max_attempts,
        )
        last = index == len(group) - 1
        # A child's output is {}: a Map gathers every child's output, 10,000 of them must stay small.
        states[step.state] = (
            {**asl.then(state, None), "OutputPath": None} if last else asl.then(state, group[index + 1].state)
        )
        statements.extend(n for n in needs if n not in statements)
    bucket, bucket_arn = t.buckets[sharder.writes.bucket]
    results = "map-results"
    machine = asl.distributed_map(
        bucket=bucket,
        key_path="$.shards.summary.key",
        item_selector={
            "manifest.$": "$.manifest",
            "execution_id.$": EXECUTION_ID,
            "queue.$": "$.route.queue",
            "shard.$": "States.Format('{}', $$.Map.Item.Value.shard)",
        },
        processor_start=group[0].state,
        processor_states=states,
        max_concurrency=settings.max_concurrency,
        results_bucket=bucket,
        results_prefix=results,
        tolerated_failure_percentage=settings.tolerated_shard_failure_pct,
    )
    executions = f"arn:aws:states:{t.region}:{t.account_id}:execution:{t.state_machine_name}/*"
    statements += [
        statement(["states:StartExecution"], [t.state_machine_arn]),
        statement(["states:DescribeExecution", "states:StopExecution"], [executions]),
        # ResultWriter's own actions (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html).
        statement(
            ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
            [f"{bucket_arn}/{results}/*"],
        ),
    ]
    return machine, statements


def map_name(group: tuple[Step, ...]) -> str:
    return group[0].state if len(group) == 1 else f"{group[0].state}To{group[-1].state}"


def build_definition(spec: PipelineSpec, t: Targets, settings: WorkflowSettings) -> Built:
    """The ASL document's states and the statements they need (pure: unit-testable without synth)."""
    attempts = settings.max_attempts
    built = Built(states={}, statements=[])
    # The spec's steps in order, consecutive per-shard steps as one group.
    units: list[Step | tuple[Step, ...]] = []
    for step in spec.steps:
        if step.fan_out == "per_shard" and units and isinstance(units[-1], tuple):
            units[-1] = (*units[-1], step)
        else:
            units.append((step,) if step.fan_out == "per_shard" else step)
    names = [map_name(u) if isinstance(u, tuple) else u.state for u in units]
    # The input is validated first, before any Lambda runs: the trigger's event or the given
    # manifest, then priority routing.
    built.add(from_trigger(t, next_state="Route", attempts=attempts))
    built.add(routing(t, first=names[0], attempts=attempts))
    last = "ShardsComplete" if spec.shard_counter else "Succeeded"

    sharded = False
    for index, unit in enumerate(units):
        following = names[index + 1] if index + 1 < len(units) else last
        if isinstance(unit, tuple):
            state, needs = shard_map(unit, spec.sharder, t, settings)
            notice = "ListFailedShards" if spec.shard_counter else SHARDS_UNLISTED
            built.add(_guarded(names[index], state, asl.MAP_TRANSIENT, following, attempts, notice), needs)
            built.add({SHARDS_UNLISTED: shards_failed(t, attempts)})
            if spec.shard_counter:
                built.add(*failed_shards(spec.shard_counter, t, attempts))
        elif unit.runs_on == "lambda":
            built.add(*lambda_step(unit, t, sharded=sharded, next_state=following, attempts=attempts))
        else:
            after = "ReadShards" if unit.writes_shards else following
            built.add(*once_step(unit, spec, t, settings, next_state=after))
            if unit.writes_shards:
                built.add(*read_shards(unit, t, next_state="AnyShards", attempts=attempts))
                built.add(no_shards(t, following, attempts))
                sharded = True
    if spec.shard_counter:
        built.add(shards_complete(spec.shard_counter, t, attempts))
    built.add(failure_states(t, attempts))
    built.states["Succeeded"] = {"Type": "Succeed"}
    return built


def no_shards(t: Targets, next_state: str, attempts: int) -> dict[str, dict]:
    """A manifest with no usable image (empty, or every image rejected) is told, then ends: nothing
    to run or write."""
    return {
        "AnyShards": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.shards.summary.count", "NumericEquals": 0, "Next": "NotifyNothingToProcess"}],
            "Default": next_state,
        },
        "NotifyNothingToProcess": _notify(
            t,
            "Odins Ravne: nothing to process",
            "Execution {} had no image to process: {} valid, {} rejected (see rejected.json beside the shards).",
            [EXECUTION_ID, "$.shards.summary.valid", "$.shards.summary.rejected"],
            "NothingToProcess",
            attempts,
        ),
        "NothingToProcess": {"Type": "Succeed"},
    }


def shards_complete(counter: Step, t: Targets, attempts: int) -> dict[str, dict]:
    """Shards that failed within the tolerated percentage: the run wrote what it has; this tells
    which are missing and how to run just those again."""
    done = f"{counter.result_path}.shards"
    return {
        "ShardsComplete": {
            "Type": "Choice",
            "Choices": [
                {"Variable": done, "NumericLessThanPath": "$.shards.summary.count", "Next": "NotifyFailedShards"}
            ],
            "Default": "Succeeded",
        },
        "NotifyFailedShards": _notify(
            t,
            "Odins Ravne: shards failed",
            "Execution {} succeeded with {} of {} shards; failed shards: {}. Run just those again: "
            "make rerun-shards ENV=<env> EXECUTION={}.",
            [EXECUTION_ID, done, "$.shards.summary.count", f"{counter.result_path}.missing", EXECUTION_ID],
            "Succeeded",
            attempts,
        ),
    }


def failed_shards(counter: Step, t: Targets, attempts: int) -> tuple[dict[str, dict], list]:
    """More shards failed than tolerated (or the Map could not run): the shard counter's function,
    in LIST_MISSING_MODE, lists the shards its input prefix has no output of (failed, stopped when
    the Map Run failed, or never started), and the notice names them (bounded text) with the error,
    cause and the command that runs just those again; the execution then fails with the Map's error
    and cause. A failed Map leaves only its error and cause in the state (the Catch's error output,
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html): where its
    ResultWriter wrote is the Map's output, which a failed Map has not
    (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html), so the
    list comes from the shard outputs. A listing that fails is caught apart (``$.list_error``, the
    Map's ``$.error`` stays for ``Failed``) into the notice without the list."""
    arn, timeout = t.functions[counter.name]
    listing = asl.lambda_task(
        arn,
        {**_payload(counter, sharded=True), "mode": LIST_MISSING_MODE},
        result_selector={f"{key}.$": f"$.Payload.{key}" for key, _ in SHARD_COUNT},
        result_path="$.failed_shards",
        timeout=timeout + 30,
    )
    listing = asl.retrying(listing, asl.LAMBDA_TRANSIENT, max_attempts=attempts)
    states = {
        "ListFailedShards": asl.then(
            asl.catching(listing, SHARDS_UNLISTED, result_path="$.list_error"), "NotifyShardsFailed"
        ),
        "NotifyShardsFailed": _notify(
            t,
            "Odins Ravne: pipeline execution failed",
            "Execution {} failed in the fan-out: {}: {}. {} of {} shards finished; failed or stopped: {}. "
            "Run just those again: make rerun-shards ENV=<env> EXECUTION={}.",
            [
                EXECUTION_ID,
                "$.error.Error",
                "$.error.Cause",
                "$.failed_shards.shards",
                "$.shards.summary.count",
                "$.failed_shards.missing",
                EXECUTION_ID,
            ],
            "Failed",
            attempts,
        ),
    }
    return states, [statement(["lambda:InvokeFunction"], [arn, f"{arn}:*"])]


def shards_failed(t: Targets, attempts: int) -> dict:
    """The fan-out failed and its shards could not be listed (or no step counts them): told with the
    error and cause and the command that lists the failed shards and runs just those again
    (``rerun-shards`` reads which shards have no output)."""
    return _notify(
        t,
        "Odins Ravne: pipeline execution failed",
        "Execution {} failed in the fan-out: {}: {}. List the failed shards and run just those again: "
        "make rerun-shards ENV=<env> EXECUTION={}.",
        [EXECUTION_ID, "$.error.Error", "$.error.Cause", EXECUTION_ID],
        "Failed",
        attempts,
    )


def from_trigger(t: Targets, *, next_state: str, attempts: int) -> dict[str, dict]:
    """An execution the manifest trigger started gets the whole S3 event as ``$.event`` (the rule's
    input is ``<aws.events.event.json>``: EventBridge inserts the event as JSON, so a key with
    quotes, spaces or non-ASCII characters arrives intact,
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html); its
    manifest URI is built here from the bucket and key (values of a JSONPath, never parsed as
    text). A started-by-hand execution gives ``manifest`` itself. Either is checked first: a path
    the input lacks would be States.Runtime, which no Catch takes
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). The rules
    of a Choice are tried in order, so each later rule reads a path an earlier one proved present
    (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html)."""
    detail = "$.event.detail"
    refuse = "NotifyInputWithoutManifest"

    def checks(*paths: str) -> list[dict]:
        return [
            {"Not": {"Variable": path, test: True}, "Next": refuse}
            for path in paths
            for test in ("IsPresent", "IsString")
        ]

    return {
        "FromTrigger": {
            "Type": "Choice",
            "Choices": [
                {"Not": {"Variable": "$.event", "IsPresent": True}, "Next": "ManifestGiven"},
                *checks(f"{detail}.bucket.name", f"{detail}.object.key"),
            ],
            "Default": "ManifestFromEvent",
        },
        "ManifestFromEvent": {
            "Type": "Pass",
            "Parameters": {
                "manifest.$": f"States.Format('s3://{{}}/{{}}', {detail}.bucket.name, {detail}.object.key)",
                "object.$": f"{detail}.object",
            },
            "Next": next_state,
        },
        "ManifestGiven": {"Type": "Choice", "Choices": checks("$.manifest"), "Default": next_state},
        refuse: _notify(
            t,
            "Odins Ravne: invalid input",
            f"Execution {{}} refused: {INPUT_WITHOUT_MANIFEST}.",
            [EXECUTION_ID],
            "InputWithoutManifest",
            attempts,
        ),
        "InputWithoutManifest": {"Type": "Fail", "Error": "InvalidInput", "Cause": INPUT_WITHOUT_MANIFEST},
    }


def definition(built: Built, spec: PipelineSpec) -> dict:
    return {
        "Comment": "Odins Ravne: " + " -> ".join(s.state for s in spec.steps),
        "StartAt": "FromTrigger",
        "TimeoutSeconds": EXECUTION_TIMEOUT_SECONDS,
        "States": built.states,
    }


def routing(t: Targets, *, first: str, attempts: int) -> dict[str, dict]:
    """``priority`` (absent: normal) puts the GPU queue into ``$.route``; anything else is refused
    and told, before any Lambda runs."""
    cause = f"priority must be one of {', '.join(PRIORITY_QUEUES)} (or absent for {DEFAULT_PRIORITY})"
    states: dict[str, dict] = {
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Not": {"Variable": "$.priority", "IsPresent": True}, "Next": f"Priority{DEFAULT_PRIORITY.title()}"},
                *(
                    {"Variable": "$.priority", "StringEquals": p, "Next": f"Priority{p.title()}"}
                    for p in PRIORITY_QUEUES
                ),
            ],
            "Default": "NotifyInvalidInput",
        },
        "NotifyInvalidInput": _notify(
            t,
            "Odins Ravne: invalid input",
            f"Execution {{}} refused: {cause} (priority {{}}).",
            [EXECUTION_ID, "States.JsonToString($.priority)"],
            "InvalidInput",
            attempts,
        ),
        "InvalidInput": {"Type": "Fail", "Error": "InvalidInput", "Cause": cause},
    }
    for priority in PRIORITY_QUEUES:
        states[f"Priority{priority.title()}"] = {
            "Type": "Pass",
            "Result": {"priority": priority, "queue": t.priority_queues[priority]},
            "ResultPath": "$.route",
            "Next": first,
        }
    return states


def failure_states(t: Targets, attempts: int) -> dict[str, dict]:
    """A caught failure: told with its state, error and cause, then the execution fails with the
    state and that error, and that cause (ErrorPath/CausePath, an intrinsic function allowed:
    https://docs.aws.amazon.com/step-functions/latest/dg/state-fail.html)."""
    return {
        "NotifyFailure": _notify(
            t,
            "Odins Ravne: pipeline execution failed",
            "Execution {} failed in state {}: {}: {}.",
            [EXECUTION_ID, "$.failed_state", "$.error.Error", "$.error.Cause"],
            "Failed",
            attempts,
        ),
        # "<state>: <error>": a custom error name must not begin with "States." (the ASL spec; the
        # caught error often does, e.g. States.ExceedToleratedFailureThreshold).
        "Failed": {"Type": "Fail", "ErrorPath": FAILED_ERROR, "CausePath": "$.error.Cause"},
    }


@dataclass(frozen=True)
class WorkflowProps:
    prefix: str
    region: str
    account_id: str
    settings: WorkflowSettings
    spec: PipelineSpec
    key: PipelineKey
    alerts: AlertTopic
    batch: BatchCompute
    functions: dict[str, PythonFunction]
    data_lake: DataLake
    log_retention_days: int


class Workflow(Construct):
    def __init__(self, scope: Construct, id_: str, props: WorkflowProps) -> None:
        super().__init__(scope, id_)
        name = self.machine_name = f"{props.prefix}-pipeline"
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
        batch, lake = props.batch, props.data_lake
        targets = Targets(
            region=props.region,
            account_id=props.account_id,
            state_machine_name=name,
            topic_arn=props.alerts.topic_arn,
            functions={
                s.name: (props.functions[s.name].function_arn, props.functions[s.name].timeout_seconds)
                for s in props.spec.lambda_steps
            },
            job_definitions={
                s.name: (batch.job_definition_arn(s.name), batch.job_definition_arn_prefix(s.name))
                for s in props.spec.batch_steps
            },
            job_timeouts={s: r.timeout_seconds for s, r in batch.resources.items()},
            priority_queues={p: batch.queue_arn(p) for p in PRIORITY_QUEUES},
            cpu_queue=batch.queue_arn("cpu"),
            routed=frozenset(s.name for s in props.spec.batch_steps if batch.queues_for(s.name) == PRIORITY_QUEUES),
            buckets={n: (b.bucket_name, b.bucket_arn) for n, b in lake.buckets.items()},
        )
        # Each workflow function's declared answer and its kinds' bounds, for the static check of
        # what the states select and how large an answer gets (tools/asl_contract.py, which has no
        # bounds of its own); "//" is a comment to Terraform.
        for step in props.spec.lambda_steps:
            function = props.functions[step.name].function
            function.add_override("//.answer", dict(step.answer))
            function.add_override("//.answer_bounds", kind_bounds(step.answer))
        built = build_definition(props.spec, targets, props.settings)
        self.definition = definition(built, props.spec)
        self.role.add_statements(
            *built.statements,
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
                key=props.key,
            ),
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
        self._tell_every_end(props)
        self.manifest_rule_name = None
        if props.settings.start_on_new_manifest:
            self._start_on_manifest(props)

    def _tell_every_end(self, props: WorkflowProps) -> None:
        """An execution that ends FAILED, TIMED_OUT or ABORTED is told on the alert topic, whatever
        ended it: a time-out, an abort and an uncatchable error (States.Runtime,
        States.DataLimitExceeded) never reach NotifyFailure. The event carries no error or cause
        (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html); the notice links the
        execution, whose history has them. The topic's policy admits events.amazonaws.com for this
        account and the pipeline key lets EventBridge use it (modules/alerting.py, encryption.py)."""
        rule = CloudwatchEventRule(
            self,
            "on-end",
            name=f"{props.prefix}-pipeline-ended-badly",
            description="Pipeline executions that ended FAILED, TIMED_OUT or ABORTED",
            event_pattern=json.dumps(
                {
                    "source": ["aws.states"],
                    "detail-type": ["Step Functions Execution Status Change"],
                    "detail": {"status": END_NOTIFIED, "stateMachineArn": [self.state_machine_arn]},
                }
            ),
        )
        link = f"https://{props.region}.console.aws.amazon.com/states/home?region={props.region}"
        CloudwatchEventTarget(
            self,
            "on-end-to-topic",
            rule=rule.name,
            arn=props.alerts.topic_arn,
            input_transformer=CloudwatchEventTargetInputTransformer(
                input_paths={"name": "$.detail.name", "status": "$.detail.status", "arn": "$.detail.executionArn"},
                # Plain text, not a JSON string: EventBridge sends a template that is not JSON as
                # it is, so the SNS message is the text itself, no quotes around it
                # (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_InputTransformer.html).
                input_template=(
                    f"Odins Ravne: execution <name> ended <status>. Error and cause: its history. "
                    f"Execution: {link}#/v2/executions/details/<arn> Runbook: {RUNBOOK}"
                ),
            ),
        )

    def _start_on_manifest(self, props: WorkflowProps) -> None:
        """A new object under the planner's manifest prefix invokes the ``start_run`` function with its
        S3 event; it starts one execution per manifest key and content, named after it (EventBridge cannot
        name an execution, so a re-delivery or a re-upload of the same bytes would start another:
        lambda_src/start_run). It reads the manifest to hash it and may start this machine only."""
        manifests = props.spec.manifests
        if manifests is None:
            raise ValueError(
                "workflow.start_on_new_manifest needs a step that plans the fan-out and reads the manifests"
            )
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
                        "bucket": {"name": [props.data_lake.bucket(manifests.bucket).bucket_name]},
                        "object": {"key": [{"prefix": f"{manifests.prefix}/"}]},
                    },
                }
            ),
        )
        starter = props.functions["start_run"]
        props.data_lake.bucket(manifests.bucket).grant_read(starter.role, manifests.prefix)
        # DescribeExecution: whether the execution already named after a manifest came from this event.
        executions = f"arn:aws:states:{props.region}:{props.account_id}:execution:{self.machine_name}:*"
        starter.role.add_statements(
            statement(["states:StartExecution"], [self.state_machine_arn]),
            statement(["states:DescribeExecution"], [executions]),
        )
        props.alerts.grant_publish(starter.role)
        starter.invoked_by(self, "start", rule, keep_undelivered=True)
        self.manifest_rule_name = rule.name
