"""``make status-local``: a readable table of what the emulator holds for the pipeline."""

from __future__ import annotations

import sys
from typing import Any

from local.deploy import emulator_env
from local.emulator import EmulatorError
from tools import cli

SERVICES = (
    "s3",
    "batch",
    "stepfunctions",
    "lambda",
    "sns",
    "sqs",
    "ssm",
    "budgets",
    "logs",
    "ecr",
    "iam",
    "events",
    "ec2",
    "kms",
    "sts",
)


def clients(services: tuple[str, ...] = SERVICES) -> dict[str, Any]:
    """boto3 clients for the emulator (endpoint and region from EMULATOR_ENDPOINT / AWS_DEFAULT_REGION).

    With ``sts`` among ``services``, ``"account"`` holds the emulator's account id.
    """
    import boto3

    env = emulator_env()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    aws: dict[str, Any] = {name: session.client(name, endpoint_url=env["AWS_ENDPOINT_URL"]) for name in services}
    if "sts" in aws:
        aws["account"] = aws["sts"].get_caller_identity()["Account"]
    return aws


def rows(aws: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for bucket in aws["s3"].list_buckets().get("Buckets", []):
        out.append(("s3 bucket", bucket["Name"], ""))
    for ce in aws["batch"].describe_compute_environments().get("computeEnvironments", []):
        resources = ce.get("computeResources", {})
        out.append(
            (
                "batch compute env",
                ce["computeEnvironmentName"],
                f"{ce.get('state')}/{ce.get('status')} {resources.get('type', '')} "
                f"max {resources.get('maxvCpus', '?')} vCPU",
            )
        )
    for queue in aws["batch"].describe_job_queues().get("jobQueues", []):
        out.append(
            (
                "batch job queue",
                queue["jobQueueName"],
                f"{queue['state']}/{queue['status']} priority {queue['priority']}",
            )
        )
    for definition in aws["batch"].describe_job_definitions(status="ACTIVE").get("jobDefinitions", []):
        out.append(("batch job definition", f"{definition['jobDefinitionName']}:{definition['revision']}", ""))
    for fn in aws["lambda"].list_functions().get("Functions", []):
        out.append(("lambda function", fn["FunctionName"], fn.get("Runtime", "")))
    for machine in aws["stepfunctions"].list_state_machines().get("stateMachines", []):
        out.append(("state machine", machine["name"], ""))
        executions = (
            aws["stepfunctions"]
            .list_executions(stateMachineArn=machine["stateMachineArn"], maxResults=5)
            .get("executions", [])
        )
        for execution in executions:
            out.append(("  execution", execution["name"], f"{execution['status']} {execution['startDate']:%H:%M:%S}"))
    for topic in aws["sns"].list_topics().get("Topics", []):
        out.append(("sns topic", topic["TopicArn"].rsplit(":", 1)[-1], ""))
    return out


def main() -> int:
    try:
        table = rows(clients())
    except Exception as exc:
        raise EmulatorError(f"cannot reach the emulator ({exc.__class__.__name__}); run `make deploy-local`") from exc
    if not table:
        print("status-local: the emulator holds nothing; run `make deploy-local`")
        return 0
    width = max(len(kind) for kind, _, _ in table)
    name_width = max(len(name) for _, name, _ in table)
    for kind, name, detail in table:
        print(f"{kind:<{width}}  {name:<{name_width}}  {detail}")
    return 0


if __name__ == "__main__":
    try:
        cli.run(main)
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
