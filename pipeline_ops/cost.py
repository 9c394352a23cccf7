"""What a run of this pipeline costs: USD per 1,000 images and a manifest's cost and wall time.

Pipeline-specific: reads the planning inputs the stack gave PlanFanOut (its ``FAN_OUT``: shard
size, shards at once, each Batch step's images/s with its source and its job-hour price from the
dated price table) out of a plan (``terraform show -json``) or a synthesized ``cdk.tf.json``, and
runs PlanFanOut's own estimator on them (``lambda_src/plan_fan_out``), so the figure reviewed in a
pull request is the one GuardBudget will compare with the budget.

    python -m pipeline_ops.cost <plan.json | cdk.tf.json> [--images 100000] [--append review.md]

``make plan ENV=<env>`` appends it to the review; ``make cost ENV=<env> [IMAGES=N]`` prints it
from the synthesized config, offline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from tools import cli
from tools.plan_review import esc, value_resources, write_review

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = 100_000


@cache
def planner() -> ModuleType:
    """PlanFanOut's handler module: the one estimator of wall time and cost."""
    path = REPO / "lambda_src" / "plan_fan_out" / "handler.py"
    sys.path.insert(0, str(REPO / "lambda_src" / "_shared"))  # its pipeline_log
    spec = importlib.util.spec_from_file_location("plan_fan_out_estimator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def functions(document: dict) -> list[dict]:
    """The aws_lambda_function values of a plan (planned values) or of a synthesized config."""
    if "planned_values" in document or "values" in document:
        root = (document.get("planned_values") or document.get("values") or {}).get("root_module") or {}
        return [r.get("values") or {} for r in value_resources(root) if r["type"] == "aws_lambda_function"]
    return list(((document.get("resource") or {}).get("aws_lambda_function") or {}).values())


def fan_out_of(document: dict) -> dict | None:
    for function in functions(document):
        environment = function.get("environment") or {}
        if isinstance(environment, list):
            environment = environment[0] if environment else {}
        variables = environment.get("variables") or {}
        if "FAN_OUT" in variables:
            return json.loads(variables["FAN_OUT"])
    return None


def estimate(fan_out: dict, images: int) -> dict[str, Any]:
    code = planner()
    verdict = code.plan(images, fan_out, int(fan_out["images_per_shard"]), elapsed=0)
    return {
        "usd_per_1000_images": round(code.per_thousand(fan_out), 4),
        "usd_per_1000_images_on_demand": round(code.per_thousand(fan_out, "on_demand_usd_per_hour"), 4),
        **{k: verdict[k] for k in ("images", "shards", "concurrency", "estimated_seconds", "allowed", "reason")},
        "estimated_usd": verdict["estimated_usd"],
        "estimated_usd_on_demand": verdict["estimated_usd_on_demand"],
        "largest_manifest": verdict["largest_manifest"],
        "prices": fan_out.get("price_date", ""),
        "steps": fan_out["steps"],
    }


def markdown(result: dict) -> str:
    """The cost section of the review. Its strings (price date, step names, throughput sources) come from
    the plan's FAN_OUT variable, so they go through the review's escaping like any other plan text."""
    hours = result["estimated_seconds"] / 3600
    fits = (
        "fits in one execution"
        if result["allowed"]
        else f"does NOT fit in one execution: PlanFanOut refuses it (at most {result['largest_manifest']} images)"
    )
    lines = [
        "### Cost per 1,000 images (pipeline estimate)",
        "",
        f"From the planning inputs this configuration gives PlanFanOut, priced with the {esc(result['prices'])}; "
        "the same estimator PlanFanOut runs and GuardBudget adds to the month's spend. Batch jobs only "
        "(each job billed its instance for its images plus its overhead, each GPU instance its boot).",
        "",
        "| | spot (expected) | on-demand |",
        "|---|---:|---:|",
        f"| USD per 1,000 images | {result['usd_per_1000_images']:.4f} "
        f"| {result['usd_per_1000_images_on_demand']:.4f} |",
        f"| a manifest of {result['images']:,} images | {result['estimated_usd']:.2f} "
        f"| {result['estimated_usd_on_demand']:.2f} |",
        "",
        f"That manifest: {result['shards']} shards, {result['concurrency']} at a time, "
        f"about {hours:.1f} h wall time; {fits}.",
        "",
        "| step | runs | images/s (source) | USD per job-hour, spot / on-demand |",
        "|---|---|---|---|",
    ]
    for step in result["steps"]:
        source = esc(step.get("throughput_source", ""), 400)
        lines.append(
            f"| {esc(step['name'])} | {'per shard' if step['per_shard'] else 'once'} | {step['images_per_second']:g}"
            f"{f' ({source})' if source else ''} | {step['usd_per_hour']:.4f} / {step['on_demand_usd_per_hour']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def append(review: Path, section: str) -> None:
    """Add ``section`` to the review and cut its PR-comment parts and job-summary copy again."""
    text = review.read_text() if review.exists() else ""
    write_review(review, text.rstrip("\n") + "\n\n" + section, review.parent.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.cost", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="plan JSON (terraform show -json) or a synthesized cdk.tf.json")
    parser.add_argument(
        "--images", type=int, default=DEFAULT_IMAGES, help=f"manifest size to price (default {DEFAULT_IMAGES:,})"
    )
    parser.add_argument("--append", type=Path, help="append the Markdown section to this review")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.images < 1:
        print(f"error: --images must be a positive number of images, got {args.images}", file=sys.stderr)
        return 2
    try:
        document = json.loads(args.config.read_text())
    except FileNotFoundError:
        print(f"error: {args.config} not found; run `make synth` (or `make plan`) first", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: {args.config} is not JSON: {exc}", file=sys.stderr)
        return 1
    fan_out = fan_out_of(document)
    if fan_out is None:
        print(
            f"error: {args.config} has no Lambda function with FAN_OUT (PlanFanOut's planning inputs)", file=sys.stderr
        )
        return 1
    result = estimate(fan_out, args.images)
    section = markdown(result)
    if args.append:
        append(args.append, section)
    else:
        print(section, end="")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"cost: {result['usd_per_1000_images']:.4f} USD per 1,000 images on spot "
        f"({result['usd_per_1000_images_on_demand']:.4f} on-demand); {result['images']:,} images "
        f"{result['estimated_usd']:.2f} USD in about {result['estimated_seconds'] / 3600:.1f} h "
        f"({esc(result['prices'], markdown=False)})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
