"""GuardBudget: the gate before any Batch job. Budget data lags by hours, so this gate is the guard
that acts in real time: it refuses a new execution when the kill switch (an SSM parameter that
budget_shutdown and operators set) is on, when actual spend has reached the guard threshold, or
when what this execution is estimated to cost (PlanFanOut's ``plan.estimated_usd``, from the
manifest's size, the stages' throughput and the dated job-hour prices) plus the estimates of the
executions allowed that Budgets may not have seen yet would take spend past it.

Those estimates live in the spend ledger (modules/spend_ledger.py): one DynamoDB item per budget
period (the day of a DAILY budget, the month of a MONTHLY one), holding each allowed execution's
estimate and when it was reserved. A reservation counts for LAG_SECONDS (24 h): Budgets refreshes
its spend only "several times a day"
(https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_Operations_AWS_Budgets.html),
and the budget's LastUpdatedTime is when someone last changed the budget, not when the spend was
refreshed (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_Budget.html),
so nothing tells the guard when an execution's cost is in the figure. Erring on the safe side, an
execution may count twice (estimate and actual) until its reservation ages out. The item is
written with a version condition, so two guards cannot both take the last room.

Event: ``{"execution_id", "plan": {"estimated_usd", "images", ...}, ...}`` (no plan: an estimate of 0).
Environment: BUDGET_NAME, ACCOUNT_ID, KILL_SWITCH_PARAMETER, GUARD_THRESHOLD_PCT, LEDGER_TABLE.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline_log import execution_id_of, get_logger

KILL_SWITCH_ON = {"on", "true", "1", "stop"}
# The table's key attribute keeps its first name (renaming it replaces the table); it holds the period.
LEDGER_KEY = "budget_updated"
LAG_SECONDS = 24 * 3600


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
    reserved in the last LAG_SECONDS plus this execution's, each against ``threshold_pct``
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
        others = f" plus {reserved:.2f} USD estimated for executions Budgets may not have seen yet" if reserved else ""
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


def budget_period(time_unit: str, now: float) -> str:
    """The budget period ``now`` falls in (Budgets' periods run in UTC), the ledger item's key."""
    at = datetime.fromtimestamp(now, UTC)
    return {
        "DAILY": at.strftime("%Y-%m-%d"),
        "MONTHLY": at.strftime("%Y-%m"),
        "QUARTERLY": f"{at.year}-Q{(at.month - 1) // 3 + 1}",
        "ANNUALLY": f"{at.year}",
    }.get(time_unit, time_unit)


def read_budget(budgets: Any, account_id: str, name: str, now: float) -> tuple[float, float, float, str]:
    """Limit, actual and forecast spend, and the current budget period (the ledger's key)."""
    budget = budgets.describe_budget(AccountId=account_id, BudgetName=name)["Budget"]
    spend = budget.get("CalculatedSpend", {})
    limit = float(budget["BudgetLimit"]["Amount"])
    spent = float(spend.get("ActualSpend", {}).get("Amount", 0))
    forecast = float(spend.get("ForecastedSpend", {}).get("Amount", spent))
    return limit, spent, forecast, budget_period(budget.get("TimeUnit", "MONTHLY"), now)


class Ledger:
    """The estimates reserved in one budget period (one DynamoDB item, low-level client): a map of
    execution id to ``[estimate, reserved at]`` in JSON, and a version for the conditional write."""

    def __init__(self, dynamodb: Any, table: str, period: str, now: float) -> None:
        self.dynamodb, self.table, self.key, self.now = dynamodb, table, {LEDGER_KEY: {"S": period}}, now

    def _live(self) -> tuple[dict[str, list[float]], int]:
        dynamodb = self.dynamodb  # called by its name: make iam-check follows names
        item = dynamodb.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item", {})
        entries = json.loads(item.get("reservations", {}).get("S", "{}"))
        live = {k: v for k, v in entries.items() if v[1] > self.now - LAG_SECONDS}
        return live, int(item.get("version", {}).get("N", 0))

    def read(self) -> tuple[float, set[str]]:
        live, _ = self._live()
        return sum(v[0] for v in live.values()), set(live)

    def reserve(self, execution_id: str, estimate: float, room: float) -> bool:
        """Add ``estimate`` unless the reserved sum passes ``room``, the execution is in already, or
        another guard wrote the item since it was read."""
        live, version = self._live()
        if execution_id in live or sum(v[0] for v in live.values()) > room:
            return False
        live[execution_id] = [estimate, self.now]
        dynamodb = self.dynamodb
        try:
            dynamodb.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression="SET reservations = :r, version = :next, expires = :t",
                ConditionExpression="attribute_not_exists(version) OR version = :v",
                ExpressionAttributeValues={
                    ":r": {"S": json.dumps(live, sort_keys=True)},
                    ":v": {"N": str(version)},
                    ":next": {"N": str(version + 1)},
                    ":t": {"N": str(int(self.now) + 2 * LAG_SECONDS)},
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


def handler(
    event: dict,
    context: Any,
    *,
    budgets: Any = None,
    ssm: Any = None,
    dynamodb: Any = None,
    now: float | None = None,
) -> dict:
    execution_id = execution_id_of(event) or "unnamed"
    log = get_logger("guard_budget", execution_id)
    if budgets is None or ssm is None or dynamodb is None:
        import boto3

        budgets, ssm = budgets or boto3.client("budgets"), ssm or boto3.client("ssm")
        dynamodb = dynamodb or boto3.client("dynamodb")
    now = time.time() if now is None else now
    limit, spent, forecast, period = read_budget(budgets, os.environ["ACCOUNT_ID"], os.environ["BUDGET_NAME"], now)
    decision = guard(
        ledger=Ledger(dynamodb, os.environ["LEDGER_TABLE"], period, now),
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
