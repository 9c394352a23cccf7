"""GuardBudget: the gate before any Batch job. Budget data lags by hours, so this gate is the guard
that acts in real time: it refuses a new execution when the kill switch (an SSM parameter that
budget_shutdown and operators set) is on, when actual spend has reached the guard threshold, or
when what this execution is estimated to cost (PlanFanOut's ``plan.estimated_usd``, from the
manifest's size, the stages' throughput and the dated job-hour prices) would take spend past it.

Event: ``{"plan": {"estimated_usd", "images", ...}, ...}`` (no plan: an estimate of 0).
Environment: BUDGET_NAME, ACCOUNT_ID, KILL_SWITCH_PARAMETER, GUARD_THRESHOLD_PCT.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from pipeline_log import execution_id_of, get_logger

KILL_SWITCH_ON = {"on", "true", "1", "stop"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    spent: float
    estimate: float
    forecast: float
    limit: float
    threshold_pct: float


def decide(
    *, limit: float, spent: float, forecast: float, threshold_pct: float, kill_switch: str, estimate: float = 0.0
) -> Decision:
    """Pure decision: kill switch first, then actual spend, then actual spend plus this execution's
    estimated cost, each against ``threshold_pct`` of the limit."""
    values = {
        "spent": spent,
        "estimate": estimate,
        "forecast": forecast,
        "limit": limit,
        "threshold_pct": threshold_pct,
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
    if spent + estimate > ceiling:
        return Decision(
            False,
            f"this execution's estimated {estimate:.2f} USD plus the actual spend {spent:.2f} USD would pass "
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


def read_budget(budgets: Any, account_id: str, name: str) -> tuple[float, float, float]:
    budget = budgets.describe_budget(AccountId=account_id, BudgetName=name)["Budget"]
    spend = budget.get("CalculatedSpend", {})
    limit = float(budget["BudgetLimit"]["Amount"])
    spent = float(spend.get("ActualSpend", {}).get("Amount", 0))
    forecast = float(spend.get("ForecastedSpend", {}).get("Amount", spent))
    return limit, spent, forecast


def read_kill_switch(ssm: Any, name: str) -> str:
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return "off"


def handler(event: dict, context: Any, *, budgets: Any = None, ssm: Any = None) -> dict:
    log = get_logger("guard_budget", execution_id_of(event))
    if budgets is None or ssm is None:
        import boto3

        budgets, ssm = budgets or boto3.client("budgets"), ssm or boto3.client("ssm")
    limit, spent, forecast = read_budget(budgets, os.environ["ACCOUNT_ID"], os.environ["BUDGET_NAME"])
    decision = decide(
        limit=limit,
        spent=spent,
        forecast=forecast,
        threshold_pct=float(os.environ.get("GUARD_THRESHOLD_PCT", "100")),
        kill_switch=read_kill_switch(ssm, os.environ["KILL_SWITCH_PARAMETER"]),
        estimate=estimate_of(event),
    )
    log.info("budget guard decided", **asdict(decision))
    return asdict(decision)
