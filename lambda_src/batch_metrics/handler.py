"""BatchMetrics: the Batch figures AWS publishes no metric for.

AWS Batch emits no CloudWatch metrics of its own, only events. EventBridge brings this function
two kinds (modules/monitoring.py): each job of the environment's queues that ends SUCCEEDED or
FAILED, and each EC2 spot interruption warning (counted as ``JobsFinished`` per queue and status,
``SpotInterruptionWarnings``). What is *waiting* makes no event, so every minute (an EventBridge
schedule) it also counts the jobs of each queue in each active state (queue depth), the age of
the oldest RUNNABLE job (the RUNNABLE alarm: a job that cannot be placed, or an instance that
cannot reach ECS, shows as a job growing old there), and each compute environment's desired vs
maximum vCPUs (utilization). Everything is written as Embedded Metric Format lines on stdout:
CloudWatch Logs turns them into metrics, so the function needs no cloudwatch:PutMetricData.

Environment: JOB_QUEUES and COMPUTE_ENVIRONMENTS (``name=arn,...``), METRIC_NAMESPACE, PIPELINE_ENV.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pipeline_log import emf, get_logger

ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


def named(value: str) -> dict[str, str]:
    """``name=arn,name=arn`` -> {name: arn}."""
    pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
    return {name.strip(): arn.strip() for name, arn in pairs}


def queue_depth(batch: Any, queue: str, now_ms: int) -> dict[str, float]:
    """Jobs of ``queue`` in each active state, and how long the oldest RUNNABLE one has waited."""
    figures: dict[str, float] = {}
    oldest = 0.0
    for status in ACTIVE:
        count = 0
        for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status):
            jobs = page.get("jobSummaryList", [])
            count += len(jobs)
            if status == "RUNNABLE":
                oldest = max([oldest, *((now_ms - j.get("createdAt", now_ms)) / 1000 for j in jobs)])
        figures[f"Jobs{status.capitalize()}"] = count
    figures["OldestRunnableSeconds"] = round(max(oldest, 0.0), 1)
    return figures


def records(batch: Any, env: dict[str, str], now_ms: int) -> list[dict]:
    """Queue depth and oldest RUNNABLE per queue, desired and maximum vCPUs per compute environment."""
    namespace, environment = env["METRIC_NAMESPACE"], env["PIPELINE_ENV"]
    out = [
        emf(namespace, {"Environment": environment, "Queue": name}, queue_depth(batch, arn, now_ms), now_ms)
        for name, arn in named(env["JOB_QUEUES"]).items()
    ]
    compute = named(env["COMPUTE_ENVIRONMENTS"])
    described = batch.describe_compute_environments(computeEnvironments=list(compute.values()))
    by_arn = {c["computeEnvironmentArn"]: c for c in described.get("computeEnvironments", [])}
    for name, arn in compute.items():
        resources = by_arn.get(arn, {}).get("computeResources", {})
        figures = {"DesiredVcpus": resources.get("desiredvCpus", 0), "MaxVcpus": resources.get("maxvCpus", 0)}
        out.append(emf(namespace, {"Environment": environment, "ComputeEnvironment": name}, figures, now_ms))
    return out


def from_event(event: dict, env: dict[str, str], now_ms: int) -> list[dict]:
    """A finished job or a spot interruption warning, as one count; [] for any other event."""
    namespace, environment = env["METRIC_NAMESPACE"], env["PIPELINE_ENV"]
    kind, detail = event.get("detail-type"), event.get("detail") or {}
    if kind == "Batch Job State Change" and detail.get("status") in ("SUCCEEDED", "FAILED"):
        queues = {arn: name for name, arn in named(env["JOB_QUEUES"]).items()}
        queue = queues.get(detail.get("jobQueue", ""), "other")
        dimensions = {"Environment": environment, "Queue": queue, "Status": detail["status"]}
        return [emf(namespace, dimensions, {"JobsFinished": 1}, now_ms)]
    if kind == "EC2 Spot Instance Interruption Warning":
        return [emf(namespace, {"Environment": environment}, {"SpotInterruptionWarnings": 1}, now_ms)]
    return []


def handler(event: dict, context: Any, *, batch: Any = None) -> dict:
    log = get_logger("batch_metrics", None)
    env, now_ms = dict(os.environ), int(time.time() * 1000)
    if event.get("detail-type") != "Scheduled Event":
        found = from_event(event, env, now_ms)
    else:
        if batch is None:
            import boto3

            batch = boto3.client("batch")
        found = records(batch, env, now_ms)
    for record in found:
        print(json.dumps(record), flush=True)  # EMF: one JSON object per line on stdout
    log.info("batch metrics written", records=len(found))
    return {"records": len(found)}
