"""BudgetShutdown: stops the pipeline from spending when the budget's ACTUAL spend reaches 100 %.

Subscribed to the alert topic. On a Budgets notification for ACTUAL spend at or above 100 % it
turns the kill switch on (GuardBudget then refuses new executions), disables every job queue
and sets every compute environment's max vCPUs to 0, after saving the previous values in an SSM
parameter. Idempotent: a second alert changes nothing and keeps the saved values. Invoked with
``{"action": "resume"}`` (``make budget-resume ENV=<env>``) it restores them.

Environment: JOB_QUEUES, COMPUTE_ENVIRONMENTS (comma-separated ARNs), KILL_SWITCH_PARAMETER,
SHUTDOWN_STATE_PARAMETER.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from pipeline_log import execution_id_of, get_logger

ACTUAL_OVER = re.compile(r"ACTUAL\b.*?(?:greater than|exceeded|>=?)\s*(\d+(?:\.\d+)?)\s*%", re.IGNORECASE | re.DOTALL)


def alert_percentage(message: str) -> float | None:
    """The threshold percentage of an ACTUAL-spend Budgets alert, or None for anything else."""
    try:
        data = json.loads(message)
    except ValueError:
        data = None
    if isinstance(data, dict) and str(data.get("notificationType", "")).upper() == "ACTUAL":
        return float(data.get("threshold", 0))
    match = ACTUAL_OVER.search(message)
    return float(match.group(1)) if match else None


def should_shut_down(event: dict) -> bool:
    for record in event.get("Records", []):
        percentage = alert_percentage(record.get("Sns", {}).get("Message", ""))
        if percentage is not None and percentage >= 100:
            return True
    return False


def _split(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item]


def shutdown(batch: Any, ssm: Any) -> dict:
    state_name = os.environ["SHUTDOWN_STATE_PARAMETER"]
    saved = json.loads(ssm.get_parameter(Name=state_name)["Parameter"]["Value"] or "{}")
    if not saved.get("compute_environments"):
        described = batch.describe_compute_environments(computeEnvironments=_split("COMPUTE_ENVIRONMENTS"))
        saved = {
            "compute_environments": {
                ce["computeEnvironmentArn"]: ce["computeResources"]["maxvCpus"]
                for ce in described["computeEnvironments"]
            }
        }
        ssm.put_parameter(Name=state_name, Value=json.dumps(saved, sort_keys=True), Overwrite=True)
    ssm.put_parameter(Name=os.environ["KILL_SWITCH_PARAMETER"], Value="on", Overwrite=True)
    for queue in _split("JOB_QUEUES"):
        batch.update_job_queue(jobQueue=queue, state="DISABLED")
    for ce in saved["compute_environments"]:
        batch.update_compute_environment(computeEnvironment=ce, computeResources={"maxvCpus": 0})
    return {
        "action": "shutdown",
        "queues_disabled": len(_split("JOB_QUEUES")),
        "compute_environments_zeroed": len(saved["compute_environments"]),
    }


def resume(batch: Any, ssm: Any) -> dict:
    state_name = os.environ["SHUTDOWN_STATE_PARAMETER"]
    saved = json.loads(ssm.get_parameter(Name=state_name)["Parameter"]["Value"] or "{}")
    for ce, max_vcpus in saved.get("compute_environments", {}).items():
        batch.update_compute_environment(computeEnvironment=ce, computeResources={"maxvCpus": max_vcpus})
    for queue in _split("JOB_QUEUES"):
        batch.update_job_queue(jobQueue=queue, state="ENABLED")
    ssm.put_parameter(Name=os.environ["KILL_SWITCH_PARAMETER"], Value="off", Overwrite=True)
    ssm.put_parameter(Name=state_name, Value="{}", Overwrite=True)
    return {"action": "resume", "compute_environments_restored": len(saved.get("compute_environments", {}))}


def handler(event: dict, context: Any, *, batch: Any = None, ssm: Any = None) -> dict:
    log = get_logger("budget_shutdown", execution_id_of(event))
    if batch is None or ssm is None:
        import boto3

        batch, ssm = batch or boto3.client("batch"), ssm or boto3.client("ssm")
    if event.get("action") == "resume":
        result = resume(batch, ssm)
    elif should_shut_down(event):
        result = shutdown(batch, ssm)
    else:
        result = {"action": "none", "reason": "not an ACTUAL alert at or above 100 %"}
    log.info("budget shutdown handled", **result)
    return result
