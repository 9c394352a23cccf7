"""``make health ENV=<env>``: is the deployed pipeline able to run?

Reads the stack's state (``terraform state pull``) for what it deployed, then asks AWS (or the
emulator, ``--emulator``) about each piece:

- the state machine is ACTIVE, and its last execution did not fail (none yet is fine);
- every Batch job queue is ENABLED/VALID and every compute environment ENABLED/VALID;
- no CloudWatch alarm of the stack is in ALARM.

Prints one line per check; exit code 0 healthy, 1 unhealthy or unreachable. Works on any
Terraform config; imports nothing of the CDKTF app.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tools import cli
from tools.plan import Terraform

BAD_EXECUTION = {"FAILED", "TIMED_OUT", "ABORTED"}
SERVICES = ("stepfunctions", "batch", "cloudwatch", "budgets", "ssm")
RECENT_EXECUTIONS = 5


def state_resources(tf: Terraform) -> list[dict]:
    """Every resource instance of the state as ``{mode, type, name, values}``.

    ``terraform state pull`` (the raw state) instead of ``show -json``: show starts the provider
    for its schema, ~6 CPU seconds, where the checks need only the recorded attributes."""
    state = json.loads(tf.run("state", "pull").stdout or "{}")
    return [
        {"mode": r["mode"], "type": r["type"], "name": r["name"], "values": instance.get("attributes") or {}}
        for r in state.get("resources", [])
        for instance in r.get("instances", [])
    ]


def session_clients(emulator: bool) -> dict[str, Any]:
    if emulator:
        from local.status import clients

        return clients(SERVICES)
    import boto3

    session = boto3.session.Session()
    return {name: session.client(name) for name in SERVICES}


def managed(resources: list[dict], type_: str) -> list[dict]:
    return [r["values"] for r in resources if r.get("mode") == "managed" and r["type"] == type_]


def checks(resources: list[dict], aws: dict[str, Any]) -> list[tuple[bool, str]]:
    """(ok, line) for every check; resources are the state's values."""
    out: list[tuple[bool, str]] = []
    sfn, batch = aws["stepfunctions"], aws["batch"]
    for machine in managed(resources, "aws_sfn_state_machine"):
        described = sfn.describe_state_machine(stateMachineArn=machine["arn"])
        status = described.get("status", "ACTIVE")
        out.append((status == "ACTIVE", f"state machine {machine['name']}: {status}"))
        executions = sfn.list_executions(stateMachineArn=machine["arn"], maxResults=1).get("executions", [])
        last = executions[0]["status"] if executions else "none yet"
        out.append((last not in BAD_EXECUTION, f"state machine {machine['name']}: last execution {last}"))
    queues = [q["arn"] for q in managed(resources, "aws_batch_job_queue")]
    for queue in batch.describe_job_queues(jobQueues=queues).get("jobQueues", []) if queues else []:
        ok = queue["state"] == "ENABLED" and queue["status"] == "VALID"
        out.append((ok, f"job queue {queue['jobQueueName']}: {queue['state']}/{queue['status']}"))
    envs = [c["arn"] for c in managed(resources, "aws_batch_compute_environment")]
    for ce in (
        batch.describe_compute_environments(computeEnvironments=envs).get("computeEnvironments", []) if envs else []
    ):
        ok = ce["state"] == "ENABLED" and ce["status"] == "VALID"
        out.append((ok, f"compute environment {ce['computeEnvironmentName']}: {ce['state']}/{ce['status']}"))
    missing = len(queues) + len(envs) - sum(1 for line in out if line[1].startswith(("job queue", "compute env")))
    if missing:
        out.append((False, f"{missing} Batch queue(s)/compute environment(s) in the state were not found"))
    names = [a["alarm_name"] for a in managed(resources, "aws_cloudwatch_metric_alarm")]
    alarming = []
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        found = aws["cloudwatch"].describe_alarms(AlarmNames=names[start : start + 100])["MetricAlarms"]
        alarming += [a["AlarmName"] for a in found if a["StateValue"] == "ALARM"]
    out.append((not alarming, f"alarms: {len(names)} checked, in ALARM: {', '.join(alarming) or 'none'}"))
    out += secret_lines(resources, aws["ssm"])
    return out


def secret_lines(resources: list[dict], ssm: Any) -> list[tuple[bool, str]]:
    """Secrets are set outside Terraform (``make weather-key``): say which is missing. A note, not a
    failure: the default weather provider answers without a key."""
    names = sorted(
        {
            value
            for function in managed(resources, "aws_lambda_function")
            for environment in function.get("environment") or []
            for key, value in (environment.get("variables") or {}).items()
            if key.endswith("_API_KEY_PARAMETER")
        }
    )
    found = set()
    for start in range(0, len(names), 10):  # a ParameterFilters value list takes at most 10 names
        filters = [{"Key": "Name", "Option": "Equals", "Values": names[start : start + 10]}]
        found |= {p["Name"] for p in ssm.describe_parameters(ParameterFilters=filters)["Parameters"]}
    return [
        (True, f"secret {name}: {'set' if name in found else 'NOT SET (make weather-key ENV=<env>)'}") for name in names
    ]


def status_lines(resources: list[dict], aws: dict[str, Any]) -> list[str]:
    """What ``make status-aws`` adds to the health checks: recent executions, budget, kill switch."""
    lines = []
    for machine in managed(resources, "aws_sfn_state_machine"):
        runs = aws["stepfunctions"].list_executions(stateMachineArn=machine["arn"], maxResults=RECENT_EXECUTIONS)
        for run in runs.get("executions", []):
            lines.append(f"execution {run['name']}: {run['status']} (started {run['startDate']:%Y-%m-%d %H:%M})")
    for budget in managed(resources, "aws_budgets_budget"):
        found = aws["budgets"].describe_budget(AccountId=budget["account_id"], BudgetName=budget["name"])["Budget"]
        spent = float(found.get("CalculatedSpend", {}).get("ActualSpend", {}).get("Amount", 0))
        limit = float(found["BudgetLimit"]["Amount"])
        lines.append(f"budget {budget['name']}: {spent:.2f} of {limit:.2f} USD spent ({spent / limit:.0%})")
    for parameter in managed(resources, "aws_ssm_parameter"):
        if parameter["name"].endswith("kill-switch"):
            value = aws["ssm"].get_parameter(Name=parameter["name"])["Parameter"]["Value"]
            lines.append(f"kill switch {parameter['name']}: {value}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.health", description=__doc__.split("\n")[0])
    parser.add_argument("stack_dir", type=Path)
    parser.add_argument("--emulator", action="store_true")
    parser.add_argument("--status", action="store_true", help="also recent executions, budget spend, kill switch")
    args = parser.parse_args(argv)
    if cli.missing_stack(args.stack_dir):
        return 1
    tf = Terraform(args.stack_dir, emulator=args.emulator)
    tf.init()
    resources = state_resources(tf)
    if not resources:
        print(f"error: the state of {args.stack_dir.name} is empty: nothing deployed", file=sys.stderr)
        return 1
    try:
        aws = session_clients(args.emulator)
        results = checks(resources, aws)
        extra = status_lines(resources, aws) if args.status else []
    except Exception as exc:  # botocore errors: one line, not a traceback
        print(f"error: cannot read the deployed resources ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return 1
    for ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    for line in extra:
        print(f"     {line}")
    bad = sum(not ok for ok, _ in results)
    print(f"health {args.stack_dir.name}: {'healthy' if not bad else f'{bad} check(s) failed'}")
    return 0 if args.status else (1 if bad else 0)


if __name__ == "__main__":
    cli.run(main)
