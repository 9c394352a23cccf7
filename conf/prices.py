"""Dated price tables (``conf/prices/<region>.json``): instance sizes and on-demand prices.

Transcribed by hand from the AWS price pages (no live lookup from CI) and dated. Read by the
stack (the job-hour prices behind PlanFanOut's cost estimate and GuardBudget), by the plan
review and by preflight (instance sizes). A table that is missing or malformed fails with one
line naming the file and the key.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

PRICES_DIR = Path(__file__).resolve().parent / "prices"
INSTANCE_KEYS = ("vcpus", "memory_mib", "gpus", "on_demand_hourly")


class PriceError(ValueError):
    """A price table is missing or malformed."""


@cache
def price_table(region: str, folder: Path = PRICES_DIR) -> dict:
    path = folder / f"{region}.json"
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise PriceError(
            f"no price table for region {region}: add {path.name} to {folder} (copy eu-north-1.json)"
        ) from None
    except json.JSONDecodeError as exc:
        raise PriceError(f"{path}: not JSON: {exc}") from None
    for key in ("date", "spot_typical_fraction_of_on_demand", "instances"):
        if key not in table:
            raise PriceError(f"{path}: key {key!r} is missing")
    for name, instance in table["instances"].items():
        missing = [k for k in INSTANCE_KEYS if not isinstance(instance.get(k), (int, float))]
        if missing:
            raise PriceError(f"{path}: instances.{name} lacks a number for {', '.join(missing)}")
    return table


def job_hour_usd(
    vcpus: int, memory_mib: int, gpus: int, instance_types: tuple[str, ...], table: dict
) -> tuple[str, float] | None:
    """The cheapest of ``instance_types`` that fits one job of this size, and its on-demand USD/h
    (a job is billed the whole instance: Batch places one GPU job per GPU instance). None if none fits."""
    fits = [
        (table["instances"][t]["on_demand_hourly"], t)
        for t in instance_types
        if t in table["instances"]
        and table["instances"][t]["vcpus"] >= vcpus
        and table["instances"][t]["memory_mib"] >= memory_mib
        and table["instances"][t]["gpus"] >= gpus
    ]
    if not fits:
        return None
    price, name = min(fits)
    return name, price
