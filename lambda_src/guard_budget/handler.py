"""GuardBudget: the gate before any Batch job. Budget data lags by hours, so this gate is the guard
that acts in real time: it refuses a new execution when the kill switch (an SSM parameter that
budget_shutdown and operators set) is on, when actual spend has reached the guard threshold, or
when what this execution is estimated to cost (PlanFanOut's ``plan.estimated_usd``, from the
manifest's size, the stages' throughput and the dated job-hour prices) plus the estimates of the
executions allowed since the budget's last update would take spend past it.

Those estimates live in the spend ledger (modules/spend_ledger.py): one DynamoDB item per Budgets
update, to which an allowed execution adds its estimate with a conditional update that holds only
while the sum still fits, so a burst of manifests cannot pass the guard together.

Event: ``{"execution_id", "plan": {"estimated_usd", "images", ...}, ...}`` (no plan: an estimate of 0).
Environment: BUDGET_NAME, ACCOUNT_ID, KILL_SWITCH_PARAMETER, GUARD_THRESHOLD_PCT, LEDGER_TABLE.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_log import execution_id_of, get_logger

KILL_SWITCH_ON = {"on", "true", "1", "stop"}
LEDGER_KEY, LEDGER_TTL_SECONDS = "budget_updated", 2 * 24 * 3600


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    spent: float
    estimate: float
    forecast: float
    limit: float
    threshold_pct: float
    reserved: float = 0.0


def decide(
    *,
    limit: float,
    spent: float,
    forecast: float,
    threshold_pct: float,
    kill_switch: str,
    estimate: float = 0.0,
    reserved: float = 0.0,
) -> Decision:
    """Pure decision: kill switch first, then actual spend, then actual spend plus the estimates
    reserved since the budget's last update plus this execution's, each against ``threshold_pct``
    of the limit."""
    values = {
        "spent": spent,
        "estimate": estimate,
        "forecast": forecast,
        "limit": limit,
        "threshold_pct": threshold_pct,
        "reserved": reserved,
    }
    if kill_switch.strip().lower() in KILL_SWITCH_ON:
        return Decision(False, f"kill switch is {kill_switch.strip()!r}", **values)
    if limit <= 0:
        return Decision(False, "budget limit is not positive", **values)
    ceiling = limit * threshold_pct / 100
    if spent >= ceiling:
        return Decision(
            False, f"actual spend {spent:.2f} USD reached {threshold_pct:g}% of the {limit:.2f} USD limit", **values
        )
    if spent + reserved + estimate > ceiling:
        others = (
            f" plus {reserved:.2f} USD estimated for executions started since the budget's last update"
            if reserved
            else ""
        )
        return Decision(
            False,
            f"this execution's estimated {estimate:.2f} USD plus the actual spend {spent:.2f} USD{others} would pass "
            f"{ceiling:.2f} USD ({threshold_pct:g}% of the {limit:.2f} USD limit); split the manifest or wait "
            "for the next budget period",
            **values,
        )
    note = f"; forecast {forecast:.2f} USD exceeds the limit" if forecast > limit else ""
    return Decision(
        True,
        f"actual spend {spent:.2f} USD plus this execution's estimated {estimate:.2f} USD "
        f"stays below {ceiling:.2f} USD{note}",
        **values,
    )


def estimate_of(event: dict) -> float:
    """PlanFanOut's expected cost of this execution, 0 when the event carries none."""
    plan = event.get("plan") if isinstance(event.get("plan"), dict) else {}
    try:
        return max(0.0, float(plan.get("estimated_usd") or 0))
    except (TypeError, ValueError):
        return 0.0


def read_budget(budgets: Any, account_id: str, name: str) -> tuple[float, float, float, str]:
    """Limit, actual and forecast spend, and when Budgets last updated them (the ledger's key)."""
    budget = budgets.describe_budget(AccountId=account_id, BudgetName=name)["Budget"]
    spend = budget.get("CalculatedSpend", {})
    limit = float(budget["BudgetLimit"]["Amount"])
    spent = float(spend.get("ActualSpend", {}).get("Amount", 0))
    forecast = float(spend.get("ForecastedSpend", {}).get("Amount", spent))
    updated = budget.get("LastUpdatedTime")
    return limit, spent, forecast, updated.isoformat() if hasattr(updated, "isoformat") else str(updated)


class Ledger:
    """The estimates reserved since one Budgets update (one DynamoDB item, low-level client)."""

    def __init__(self, dynamodb: Any, table: str, updated: str) -> None:
        self.dynamodb, self.table, self.key = dynamodb, table, {LEDGER_KEY: {"S": updated}}

    def read(self) -> tuple[float, set[str]]:
        dynamodb = self.dynamodb  # called by its name: make iam-check follows names
        item = dynamodb.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item", {})
        return float(item.get("reserved", {}).get("N", 0)), set(item.get("executions", {}).get("SS", []))

    def reserve(self, execution_id: str, estimate: float, room: float) -> bool:
        """Add ``estimate`` unless the reserved sum would pass ``room`` or the execution is in already."""
        dynamodb = self.dynamodb
        try:
            dynamodb.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression="ADD reserved :e, executions :x SET expires = :t",
                ConditionExpression="(attribute_not_exists(reserved) OR reserved <= :room) AND "
                "(attribute_not_exists(executions) OR NOT contains(executions, :id))",
                ExpressionAttributeValues={
                    ":e": {"N": repr(estimate)},
                    ":x": {"SS": [execution_id]},
                    ":id": {"S": execution_id},
                    ":room": {"N": repr(room)},
                    ":t": {"N": str(int(time.time()) + LEDGER_TTL_SECONDS)},
                },
            )
            return True
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False


def guard(*, ledger: Ledger, execution_id: str, estimate: float, **budget: Any) -> Decision:
    """Decide with what is reserved, and reserve this execution's estimate when allowed. A lost race
    (another guard took the room between the read and the write) is decided again on the new sum."""
    for _ in range(5):
        reserved, executions = ledger.read()
        if execution_id in executions:  # a retried invocation: its estimate is in the sum already
            reserved -= estimate
        decision = decide(estimate=estimate, reserved=reserved, **budget)
        if not decision.allowed or estimate <= 0 or execution_id in executions:
            return decision
        room = budget["limit"] * budget["threshold_pct"] / 100 - budget["spent"] - estimate
        if ledger.reserve(execution_id, estimate, room):
            return decision
    return decide(estimate=estimate, reserved=ledger.read()[0], **budget)


def read_kill_switch(ssm: Any, name: str) -> str:
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return "off"


def handler(event: dict, context: Any, *, budgets: Any = None, ssm: Any = None, dynamodb: Any = None) -> dict:
    execution_id = execution_id_of(event) or "unnamed"
    log = get_logger("guard_budget", execution_id)
    if budgets is None or ssm is None or dynamodb is None:
        import boto3

        budgets, ssm = budgets or boto3.client("budgets"), ssm or boto3.client("ssm")
        dynamodb = dynamodb or boto3.client("dynamodb")
    limit, spent, forecast, updated = read_budget(budgets, os.environ["ACCOUNT_ID"], os.environ["BUDGET_NAME"])
    decision = guard(
        ledger=Ledger(dynamodb, os.environ["LEDGER_TABLE"], updated),
        execution_id=execution_id,
        estimate=estimate_of(event),
        limit=limit,
        spent=spent,
        forecast=forecast,
        threshold_pct=float(os.environ.get("GUARD_THRESHOLD_PCT", "100")),
        kill_switch=read_kill_switch(ssm, os.environ["KILL_SWITCH_PARAMETER"]),
    )
    log.info("budget guard decided", **asdict(decision))
    return asdict(decision)
