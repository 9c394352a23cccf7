"""What the pipeline left on the emulator, service by service (``destroy-local`` must leave nothing).

python -m local.leftovers      # prints one line per leftover; exit 1 if there are any
"""

from __future__ import annotations

from typing import Any

from local.status import clients
from tools import cli

# Created by the emulator itself, not by the stack.
DEFAULT_LOG_GROUPS = ("/aws/batch/job",)


def leftovers(aws: dict[str, Any]) -> list[str]:
    found = [f"s3 bucket {b['Name']}" for b in aws["s3"].list_buckets().get("Buckets", [])]
    found += [f"lambda {f['FunctionName']}" for f in aws["lambda"].list_functions()["Functions"]]
    found += [f"state machine {m['name']}" for m in aws["stepfunctions"].list_state_machines()["stateMachines"]]
    found += [
        f"compute environment {c['computeEnvironmentName']}"
        for c in aws["batch"].describe_compute_environments()["computeEnvironments"]
    ]
    found += [f"job queue {q['jobQueueName']}" for q in aws["batch"].describe_job_queues()["jobQueues"]]
    found += [
        f"job definition {d['jobDefinitionName']}"
        for d in aws["batch"].describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    ]
    found += [f"sns topic {t['TopicArn']}" for t in aws["sns"].list_topics()["Topics"]]
    found += [f"sqs queue {q}" for q in aws["sqs"].list_queues().get("QueueUrls", [])]
    found += [f"ssm parameter {p['Name']}" for p in aws["ssm"].describe_parameters()["Parameters"]]
    found += [
        f"log group {g['logGroupName']}"
        for g in aws["logs"].describe_log_groups()["logGroups"]
        if g["logGroupName"] not in DEFAULT_LOG_GROUPS
    ]
    found += [f"ecr repository {r['repositoryName']}" for r in aws["ecr"].describe_repositories()["repositories"]]
    found += [
        f"iam role {r['RoleName']}"
        for r in aws["iam"].list_roles()["Roles"]
        if not r["Path"].startswith("/aws-service-role/")
    ]
    found += [
        f"budget {b['BudgetName']}"
        for b in aws["budgets"].describe_budgets(AccountId=aws["account"]).get("Budgets", [])
    ]
    found += [f"event rule {r['Name']}" for r in aws["events"].list_rules()["Rules"]]
    found += [f"vpc {v['VpcId']}" for v in aws["ec2"].describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    # AWS-managed keys (alias/aws/<service>) belong to AWS, which creates them on first use and never
    # deletes them (https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#aws-managed-key):
    # the provider's read of a DynamoDB table describes alias/aws/dynamodb, and moto then creates it.
    aws_managed = {
        a["TargetKeyId"]
        for a in aws["kms"].list_aliases()["Aliases"]
        if a["AliasName"].startswith("alias/aws/") and "TargetKeyId" in a
    }
    found += [
        f"kms key {k['KeyId']}"
        for k in aws["kms"].list_keys()["Keys"]
        if k["KeyId"] not in aws_managed
        and aws["kms"].describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"
    ]
    return found


def main() -> int:
    found = leftovers(clients())
    for line in found:
        print(line)
    print(f"leftovers: {len(found)}")
    return 1 if found else 0


if __name__ == "__main__":
    cli.run(main)
