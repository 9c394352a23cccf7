"""BudgetShutdown: stops the pipeline's spending when the budget's ACTUAL spend reaches its limit.

Subscribed to the budget topic, to which only AWS Budgets publishes. Budgets sends plain text with
the threshold in dollars, so the message is not parsed: on any message from that topic the
function reads the budget itself (DescribeBudget: CalculatedSpend.ActualSpend vs BudgetLimit) and
shuts down when actual >= 100 %. Messages from any other topic (alarms, anomaly alerts) change
nothing.

Shutdown, in this order so nothing new starts while the rest stops: the kill switch on
(GuardBudget refuses new executions), every job queue DISABLED, every RUNNING execution of this
environment's state machine stopped, every SUBMITTED/PENDING/RUNNABLE/STARTING/RUNNING job on the
queues terminated with a reason naming the budget, the vCPU limits saved (never a 0) in an SSM
parameter, then every compute environment DISABLED and set to 0 vCPUs, and a summary to the alert
topic. A failed step does not skip the others; failures are in the summary and fail the invocation
afterwards (Lambda retries it). Idempotent: a second run keeps the saved limits and finds nothing
left to stop.

Events: an SNS event (the budget topic); ``{"action": "shutdown", "reason": ...}`` (``make
emergency-stop``, no budget check); ``{"action": "resume"}`` (``make budget-resume``).
Environment: BUDGET_NAME, ACCOUNT_ID, BUDGET_TOPIC_ARN, ALERT_TOPIC_ARN, STATE_MACHINE_ARN,
JOB_QUEUES, COMPUTE_ENVIRONMENTS (comma-separated ARNs), KILL_SWITCH_PARAMETER,
SHUTDOWN_STATE_PARAMETER.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline_log import execution_id_of, get_logger

# Every state of a job that has not ended (TerminateJob ends each of them; CancelJob only the first three).
# https://docs.aws.amazon.com/batch/latest/userguide/job_states.html
UNFINISHED_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
SAVED_LIMITS = ("minvCpus", "maxvCpus")


@dataclass(frozen=True)
class Spend:
    actual: float
    limit: float

    @property
    def over(self) -> bool:
        return self.limit > 0 and self.actual >= self.limit

    def text(self) -> str:
        share = f"{100 * self.actual / self.limit:.0f} %" if self.limit > 0 else "no positive limit"
        return f"actual {self.actual:.2f} USD of the {self.limit:.2f} USD limit ({share})"


def _split(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item]


def from_budget_topic(event: dict) -> bool:
    """True when any SNS record of the event came from the budget topic."""
    topic = os.environ["BUDGET_TOPIC_ARN"]
    return any(record.get("Sns", {}).get("TopicArn") == topic for record in event.get("Records", []))


def read_spend(budgets: Any) -> Spend:
    budget = budgets.describe_budget(AccountId=os.environ["ACCOUNT_ID"], BudgetName=os.environ["BUDGET_NAME"])["Budget"]
    actual = budget.get("CalculatedSpend", {}).get("ActualSpend", {}).get("Amount", "0")
    return Spend(actual=float(actual), limit=float(budget["BudgetLimit"]["Amount"]))


def _unfinished_jobs(batch: Any, queue: str) -> list[str]:
    jobs = []
    for status in UNFINISHED_JOB_STATES:
        for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status):
            jobs += [job["jobId"] for job in page["jobSummaryList"]]
    return jobs


def _running_executions(sfn: Any) -> list[str]:
    pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=os.environ["STATE_MACHINE_ARN"], statusFilter="RUNNING"
    )
    return [execution["executionArn"] for page in pages for execution in page["executions"]]


def _described_limits(batch: Any) -> dict[str, dict[str, int]]:
    described = batch.describe_compute_environments(computeEnvironments=_split("COMPUTE_ENVIRONMENTS"))
    return {
        ce["computeEnvironmentArn"]: {k: ce["computeResources"].get(k, 0) for k in SAVED_LIMITS}
        for ce in described["computeEnvironments"]
    }


def _read_saved(ssm: Any, state_name: str) -> dict[str, Any]:
    return json.loads(ssm.get_parameter(Name=state_name)["Parameter"]["Value"] or "{}").get("compute_environments", {})


def save_limits(batch: Any, ssm: Any, *, stale: bool) -> dict[str, Any]:
    """The limits resume restores, saved before any compute environment goes to 0.

    A limit of 0 is never saved (a shutdown running beside another sees the 0 the other one set),
    and an entry already saved is kept unless ``stale`` (the switch was off, so the entry is from a
    shutdown ended by hand, not by resume). SSM has no conditional write: the merge onto a fresh read,
    written only when it adds something, makes concurrent shutdowns write the same values."""
    state_name = os.environ["SHUTDOWN_STATE_PARAMETER"]
    current = _described_limits(batch)
    saved = _read_saved(ssm, state_name)
    merged = dict(saved)
    for arn, limits in current.items():
        if limits.get("maxvCpus", 0) > 0 and (stale or arn not in saved):
            merged[arn] = limits
    if merged != saved:
        value = json.dumps({"compute_environments": merged}, sort_keys=True)
        ssm.put_parameter(Name=state_name, Value=value, Overwrite=True)
    return merged


class Clients(NamedTuple):
    """The five clients the shutdown uses, each called by its name in the functions below."""

    batch: Any
    ssm: Any
    sfn: Any
    sns: Any
    budgets: Any


def shutdown(aws: Clients, reason: str) -> dict:
    """Each step runs even when an earlier one failed (a failure is reported, then raised at the end):
    running work is stopped before the compute environments are touched, since AWS refuses to take
    maxvCpus below desiredvCpus while instances still run
    (https://docs.aws.amazon.com/batch/latest/userguide/error-desired-vcpus-update.html)."""
    batch, ssm, sfn, sns = aws.batch, aws.ssm, aws.sfn, aws.sns
    switch = os.environ["KILL_SWITCH_PARAMETER"]
    errors: list[str] = []
    try:
        was_on = ssm.get_parameter(Name=switch)["Parameter"]["Value"].strip().lower() == "on"
    except ssm.exceptions.ParameterNotFound:
        was_on = False
    try:
        ssm.put_parameter(Name=switch, Value="on", Overwrite=True)
    except Exception as error:  # reported, raised after the other steps
        errors.append(f"kill switch {switch}: {error}")
    queues = _split("JOB_QUEUES")
    for queue in queues:
        try:
            batch.update_job_queue(jobQueue=queue, state="DISABLED")
        except Exception as error:
            errors.append(f"disable {queue}: {error}")
    executions: list[str] = []
    try:
        executions = _running_executions(sfn)
    except Exception as error:
        errors.append(f"list executions: {error}")
    for execution in executions:
        try:
            sfn.stop_execution(executionArn=execution, error="BudgetExceeded", cause=reason[:32768])
        except Exception as error:
            errors.append(f"stop {execution}: {error}")
    jobs: list[str] = []
    for queue in queues:
        try:
            jobs += _unfinished_jobs(batch, queue)
        except Exception as error:
            errors.append(f"list jobs of {queue}: {error}")
    for job in jobs:
        try:
            batch.terminate_job(jobId=job, reason=reason[:1024])
        except Exception as error:
            errors.append(f"terminate {job}: {error}")
    try:
        save_limits(batch, ssm, stale=not was_on)
    except Exception as error:
        errors.append(f"save vCPU limits: {error}")
    environments = _split("COMPUTE_ENVIRONMENTS")
    for ce in environments:
        try:  # DISABLED: no scale-out, accepted while instances run
            batch.update_compute_environment(computeEnvironment=ce, state="DISABLED")
        except Exception as error:
            errors.append(f"disable {ce}: {error}")
        try:
            batch.update_compute_environment(computeEnvironment=ce, computeResources={"minvCpus": 0, "maxvCpus": 0})
        except Exception as error:
            errors.append(f"{ce} to 0 vCPUs: {error}")
    result = {
        "action": "shutdown",
        "reason": reason,
        "queues_disabled": len(queues),
        "compute_environments_zeroed": len(environments),
        "executions_stopped": len(executions),
        "jobs_terminated": len(jobs),
        "errors": errors,
    }
    if not was_on or executions or jobs or errors:
        failed = "".join(f"\nFAILED: {error}" for error in errors)
        sns.publish(
            TopicArn=os.environ["ALERT_TOPIC_ARN"],
            Subject="Odins Ravne budget kill switch: pipeline stopped"[:100],
            Message=(
                f"{reason}\nKill switch {switch} is on. Stopped {len(executions)} execution(s), terminated "
                f"{len(jobs)} job(s), disabled {len(queues)} job queue(s) and {len(environments)} compute "
                f"environment(s), set to 0 vCPUs.{failed}\n"
                "Resume with: make budget-resume ENV=<env> (docs/runbooks/budget-kill-switch.md)."
            ),
        )
    if errors:
        raise ShutdownIncomplete(f"budget shutdown incomplete ({len(errors)} step(s) failed): " + "; ".join(errors))
    return result


class ShutdownIncomplete(RuntimeError):
    """Raised after every step ran: the invocation fails, so Lambda retries it (the steps are idempotent)."""


def resume(batch: Any, ssm: Any) -> dict:
    state_name = os.environ["SHUTDOWN_STATE_PARAMETER"]
    saved = _read_saved(ssm, state_name)
    for ce, limits in saved.items():
        limits = limits if isinstance(limits, dict) else {"maxvCpus": limits}  # saved by an earlier version
        batch.update_compute_environment(computeEnvironment=ce, computeResources=limits)
    for ce in _split("COMPUTE_ENVIRONMENTS"):
        batch.update_compute_environment(computeEnvironment=ce, state="ENABLED")
    for queue in _split("JOB_QUEUES"):
        batch.update_job_queue(jobQueue=queue, state="ENABLED")
    ssm.put_parameter(Name=os.environ["KILL_SWITCH_PARAMETER"], Value="off", Overwrite=True)
    ssm.put_parameter(Name=state_name, Value="{}", Overwrite=True)
    return {"action": "resume", "compute_environments_restored": len(saved)}


def handle(event: dict, aws: Clients) -> dict:
    budget = os.environ["BUDGET_NAME"]
    if event.get("action") == "resume":
        return resume(aws.batch, aws.ssm)
    if event.get("action") == "shutdown":
        return shutdown(aws, f"emergency stop of budget {budget}'s pipeline: {event.get('reason') or 'by hand'}")
    if not from_budget_topic(event):
        return {"action": "none", "reason": "not a message from the budget topic"}
    budgets = aws.budgets
    spend = read_spend(budgets)
    if not spend.over:
        return {"action": "none", "reason": f"budget {budget}: {spend.text()}, below 100 %"}
    return shutdown(aws, f"budget {budget} reached its limit: {spend.text()}")


def handler(event: dict, context: Any, *, clients: dict[str, Any] | None = None) -> dict:
    log = get_logger("budget_shutdown", execution_id_of(event))
    if clients is None:
        import boto3

        # one name per client: make iam-check finds the calls made on each (pipeline_ops/iam_calls.py)
        batch, ssm, sfn = boto3.client("batch"), boto3.client("ssm"), boto3.client("stepfunctions")
        sns, budgets = boto3.client("sns"), boto3.client("budgets")
    else:  # tests and the emulator pass theirs by service name
        batch, ssm, sfn, sns, budgets = (clients[k] for k in ("batch", "ssm", "stepfunctions", "sns", "budgets"))
    result = handle(event, Clients(batch, ssm, sfn, sns, budgets))
    log.info("budget shutdown handled", **result)
    return result
