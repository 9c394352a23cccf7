"""Quotas before apply: does the account's Service Quotas hold what the synthesized stack needs?

    python -m tools.quotas cdktf.out/stacks/pipeline-dev [--region eu-north-1]   # make quotas ENV=dev

Reads the stack's needs from its Terraform JSON (any AWS-provider config, no construct import) and the
account's applied quota values from Service Quotas (``GetServiceQuota``; a quota never changed in the
account answers ``NoSuchResourceException`` there, so its AWS default is read instead). One line per
quota that is too small, naming the quota, the need and where to ask for more; exit 2 before any change.
The needs:

- Lambda: the reserved concurrency of every function plus the 100 executions AWS keeps unreserved must
  fit the account's "Concurrent executions" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html);
- EC2: the ``max_vcpus`` of each Batch compute environment, summed per vCPU quota of its instance
  families, Spot or On-Demand (https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html,
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html); a family no quota below
  covers is refused too, so that a new family is looked up, not guessed;
- Batch: compute environments and job queues per account and region, counting what the account already
  has besides this stack's (https://docs.aws.amazon.com/batch/latest/userguide/service_limits.html);
- Step Functions (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html): registered
  state machines per account and region (the account's plus this stack's), and each Distributed Map's
  MaxConcurrency within the 10,000 parallel child executions a Map Run can have (a hard limit). The
  other limits that apply are not checked here: docs/aws-contract.md ("Quotas") says which and why.

``--answers FILE`` (tests only: Service Quotas does not run here) reads the quota values from
``{"<service>/<quota code>": value}`` instead of asking Service Quotas.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import cli
from tools.preflight_rules import as_list, first

LAMBDA_UNRESERVED_MINIMUM = 100
LAMBDA_CONCURRENCY = ("lambda", "L-B99A9384", "Concurrent executions")
# family prefix -> (quota code, name) for Spot and On-Demand vCPUs.
SPOT = {
    "standard": ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    "g": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "p": ("L-7212CCBC", "All P Spot Instance Requests"),
    "f": ("L-88CF9481", "All F Spot Instance Requests"),
    "inf": ("L-B5D1601B", "All Inf Spot Instance Requests"),
    "x": ("L-E3A00192", "All X Spot Instance Requests"),
    "dl": ("L-85EED4F7", "All DL Spot Instance Requests"),
}
ON_DEMAND = {
    "standard": ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}
STANDARD_FAMILIES = set("acdhimrtz")
# Batch's fixed per-account, per-region limits (not in Service Quotas).
BATCH_LIMITS = {"compute environments": 50, "job queues": 50}
BATCH_DOC = "https://docs.aws.amazon.com/batch/latest/userguide/service_limits.html"
SFN_DOC = "https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html"
# Step Functions' per-account, per-region limits this stack touches (default values; see SFN_DOC).
SFN_STATE_MACHINES = 10_000
SFN_MAP_RUN_CHILDREN = 10_000  # parallel child executions of one Map Run: not adjustable


@dataclass(frozen=True)
class Need:
    service: str
    code: str
    name: str
    amount: int
    why: str


@dataclass(frozen=True)
class Shortfall:
    need: Need
    value: float
    region: str

    def line(self) -> str:
        link = (
            f"https://{self.region}.console.aws.amazon.com/servicequotas/home/services/"
            f"{self.need.service}/quotas/{self.need.code}"
        )
        return (
            f"quota '{self.need.name}' ({self.need.service} {self.need.code}) is {self.value:g} in {self.region}; "
            f"this stack needs {self.need.amount} ({self.need.why}); request more: {link}"
        )


def family(instance_type: str) -> str:
    """The quota family of an instance type: ``g4dn.xlarge`` -> ``g`` (VT shares G's quota),
    ``m5.large`` -> ``standard``, ``inf2.xlarge`` -> ``inf``, ``trn1.2xlarge`` -> ``trn`` (unknown here)."""
    letters = re.match(r"[a-z]*", instance_type).group(0)
    for prefix, name in (("inf", "inf"), ("dl", "dl"), ("vt", "g"), ("trn", "trn"), ("hpc", "hpc")):
        if letters.startswith(prefix):
            return name
    return "standard" if letters[:1] in STANDARD_FAMILIES else letters[:1]


def needs(config: dict) -> tuple[list[Need], list[str]]:
    """(quota needs, problems found without asking AWS: instance families no quota here covers)."""
    resources = config.get("resource", {})
    found: list[Need] = []
    functions = resources.get("aws_lambda_function", {})
    reserved = sum(int(f.get("reserved_concurrent_executions") or 0) for f in functions.values())
    reserving = sum(1 for f in functions.values() if int(f.get("reserved_concurrent_executions") or 0) > 0)
    if reserved:
        found.append(
            Need(
                *LAMBDA_CONCURRENCY,
                reserved + LAMBDA_UNRESERVED_MINIMUM,
                f"{reserved} reserved by {reserving} functions + the {LAMBDA_UNRESERVED_MINIMUM} AWS keeps unreserved",
            )
        )
    vcpus: dict[tuple[str, str, str], list[str]] = {}
    amounts: dict[tuple[str, str, str], int] = {}
    problems = []
    for name, env in resources.get("aws_batch_compute_environment", {}).items():
        compute = first(env.get("compute_resources"))
        kind = str(compute.get("type", ""))
        if kind not in {"SPOT", "EC2"}:
            continue
        table = SPOT if kind == "SPOT" else ON_DEMAND
        families = sorted({family(t) for t in as_list(compute.get("instance_type"))})
        for fam in families:
            if fam not in table:
                problems.append(
                    f"aws_batch_compute_environment.{name}: no {kind} vCPU quota known for instance family '{fam}'; "
                    "look it up (https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html) "
                    "and add it to tools/quotas.py"
                )
                continue
            key = ("ec2", *table[fam])
            label = env.get("compute_environment_name", name)
            vcpus.setdefault(key, []).append(f"{label} max_vcpus {compute.get('max_vcpus')}")
            amounts[key] = amounts.get(key, 0) + int(compute.get("max_vcpus") or 0)
    found += [Need(*key, amounts[key], ", ".join(whys)) for key, whys in vcpus.items()]
    return found, problems + list(map_concurrency(config))


def map_concurrency(config: dict) -> Iterator[str]:
    """Each Distributed Map's MaxConcurrency fits the parallel child executions of one Map Run."""
    for name, machine in config.get("resource", {}).get("aws_sfn_state_machine", {}).items():
        try:
            definition = json.loads(machine.get("definition") or "{}")
        except ValueError:
            continue  # not JSON until apply (a reference): preflight's rules read it
        pending = [definition.get("States", {})]
        while pending:
            for state_name, state in pending.pop().items():
                processor = state.get("ItemProcessor") or {}
                pending += [processor.get("States", {})] + [b.get("States", {}) for b in state.get("Branches", [])]
                mode = (processor.get("ProcessorConfig") or {}).get("Mode")
                wanted = state.get("MaxConcurrency")
                if mode == "DISTRIBUTED" and isinstance(wanted, int) and wanted > SFN_MAP_RUN_CHILDREN:
                    yield (
                        f"aws_sfn_state_machine.{name}: Map state {state_name} asks for MaxConcurrency {wanted}; "
                        f"a Map Run runs at most {SFN_MAP_RUN_CHILDREN} child executions at once, not adjustable "
                        f"({SFN_DOC}); lower it"
                    )


def state_machine_count(client: Any, config: dict, limit: int = SFN_STATE_MACHINES) -> Iterator[str]:
    """Registered state machines: the account's others plus this stack's, within the default quota."""
    ours = {m.get("name") for m in config.get("resource", {}).get("aws_sfn_state_machine", {}).values()}
    listed = {
        m["name"] for page in client.get_paginator("list_state_machines").paginate() for m in page["stateMachines"]
    }
    total = len(listed | ours)
    if ours and total > limit:
        yield (
            f"Step Functions allows {limit} state machines per account and region by default; the "
            f"account has {len(listed)} and this stack adds {len(ours - listed)} ({total}); remove unused ones "
            f"or request more ({SFN_DOC})"
        )


class AnswerFile:
    """Service Quotas answers from ``{"<service>/<quota code>": value}`` (tests: no Service Quotas here),
    in the shape of GetServiceQuota's answer; a quota the file lacks is an error, never a default."""

    class exceptions:  # where a botocore client keeps its error classes
        class NoSuchResourceException(Exception):
            pass

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values = json.loads(path.read_text())

    def get_service_quota(self, ServiceCode: str, QuotaCode: str) -> dict:  # boto3's argument names
        key = f"{ServiceCode}/{QuotaCode}"
        if key not in self.values:
            raise LookupError(f"{self.path} has no answer for {key}")
        return {"Quota": {"ServiceCode": ServiceCode, "QuotaCode": QuotaCode, "Value": float(self.values[key])}}


def applied(client: Any, need: Need) -> float:
    """The account's value of a quota: applied if ever changed, else AWS's default."""
    try:
        return float(client.get_service_quota(ServiceCode=need.service, QuotaCode=need.code)["Quota"]["Value"])
    except client.exceptions.NoSuchResourceException:
        answer = client.get_aws_default_service_quota(ServiceCode=need.service, QuotaCode=need.code)
        return float(answer["Quota"]["Value"])


def batch_counts(client: Any, config: dict) -> Iterator[str]:
    """Batch compute environments and job queues: the account's others plus this stack's, within the limits."""
    resources = config.get("resource", {})
    ours = {
        "compute environments": {
            e.get("compute_environment_name") for e in resources.get("aws_batch_compute_environment", {}).values()
        },
        "job queues": {q.get("name") for q in resources.get("aws_batch_job_queue", {}).values()},
    }
    listed = {
        "compute environments": [
            e["computeEnvironmentName"]
            for page in client.get_paginator("describe_compute_environments").paginate()
            for e in page["computeEnvironments"]
        ],
        "job queues": [
            q["jobQueueName"]
            for page in client.get_paginator("describe_job_queues").paginate()
            for q in page["jobQueues"]
        ],
    }
    for kind, limit in BATCH_LIMITS.items():
        total = len(set(listed[kind]) | ours[kind])
        if ours[kind] and total > limit:
            yield (
                f"Batch allows {limit} {kind} per account and region; the account has {len(listed[kind])} and this "
                f"stack adds {len(ours[kind] - set(listed[kind]))} ({total}); remove unused ones ({BATCH_DOC})"
            )


def check(config: dict, region: str, quotas: Any, batch: Any, states: Any = None) -> list[str]:
    """Every refusal line (empty when everything fits)."""
    wanted, lines = needs(config)
    for need in wanted:
        value = applied(quotas, need)
        if value < need.amount:
            lines.append(Shortfall(need, value, region).line())
    if batch is not None:
        lines += batch_counts(batch, config)
    if states is not None:
        lines += state_machine_count(states, config)
    return lines


def region_of(config: dict) -> str | None:
    providers = as_list(config.get("provider", {}).get("aws"))
    return next((p.get("region") for p in providers if "alias" not in p), None)


def main(argv: list[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(prog="python -m tools.quotas", description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path, help="a synthesized stack folder or its cdk.tf.json")
    parser.add_argument("--region", help="default: the stack's provider region")
    parser.add_argument("--answers", type=Path, help=argparse.SUPPRESS)  # tests: quota values from a file
    args = parser.parse_args(argv)
    file = args.stack / "cdk.tf.json" if args.stack.is_dir() else args.stack
    if not file.is_file():
        raise FileNotFoundError(str(file))
    config = json.loads(file.read_text())
    region = args.region or region_of(config) or "us-east-1"
    service_quotas = AnswerFile(args.answers) if args.answers else boto3.client("service-quotas", region_name=region)
    try:
        lines = check(
            config,
            region,
            service_quotas,
            boto3.client("batch", region_name=region),
            boto3.client("stepfunctions", region_name=region),
        )
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    if not lines:
        print(f"quotas {file.parent.name}: every quota holds what the stack needs in {region}")
    return 2 if lines else 0


if __name__ == "__main__":
    cli.run(main)
