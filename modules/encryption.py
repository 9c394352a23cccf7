"""Customer-managed KMS keys, rotated yearly: one pipeline key per environment, one state key per account."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf import TerraformProvider
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from modules.iam import GrantableRole, statement


@dataclass(frozen=True)
class PipelineKeyProps:
    prefix: str
    account_id: str
    region: str
    partition: str = "aws"
    deletion_window_days: int = 30
    prevent_destroy: bool = False
    provider: TerraformProvider | None = None  # another region's provider (replica keys)
    purpose: str = "pipeline"  # in the description and the alias ``alias/<prefix>-<purpose>``
    alias_name: str | None = None  # another alias (the state key's is derived in the profile)
    service_statements: bool = True  # let CloudWatch Logs and the alerting services use it


class PipelineKey(Construct):
    """Encrypts buckets, logs, topics, parameters and function environments of one environment
    (``purpose="pipeline"``), or the Terraform state of one account (``purpose="state"``, no services).

    The key policy gives the account's IAM the say (so grants on roles work) and lets only the
    CloudWatch Logs service of this region use it for this account's log groups.
    """

    def __init__(self, scope: Construct, id_: str, props: PipelineKeyProps) -> None:
        super().__init__(scope, id_)
        root = f"arn:{props.partition}:iam::{props.account_id}:root"
        account_statement = {
            # In a key policy "Resource": "*" means "this key"; IAM policies then scope use.
            "Sid": "AccountAdministersKeyThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:*",
            "Resource": "*",
        }
        service_statements = [
            {
                "Sid": "CloudWatchLogsOfThisAccount",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{props.region}.amazonaws.com"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",  # key policy: "*" is this key
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{props.partition}:logs:{props.region}:{props.account_id}:log-group:*"
                        )
                    }
                },
            },
            {
                # Budgets, CloudWatch alarms and EventBridge publish to the encrypted alert topic.
                "Sid": "AlertingServicesOfThisAccount",
                "Effect": "Allow",
                "Principal": {
                    "Service": [
                        "budgets.amazonaws.com",
                        "cloudwatch.amazonaws.com",
                        "costalerts.amazonaws.com",
                        "events.amazonaws.com",
                    ]
                },
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",  # key policy: "*" is this key
                "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id}},
            },
        ]
        statements = [account_statement, *(service_statements if props.service_statements else [])]
        policy = {"Version": "2012-10-17", "Statement": statements}
        self.key = KmsKey(
            self,
            "key",
            provider=props.provider,
            description=f"{props.prefix} {props.purpose} data key",
            enable_key_rotation=True,
            deletion_window_in_days=props.deletion_window_days,
            policy=json.dumps(policy, sort_keys=True),
            lifecycle={"prevent_destroy": props.prevent_destroy},
        )
        self.alias = KmsAlias(
            self,
            "alias",
            provider=props.provider,
            name=props.alias_name or f"alias/{props.prefix}-{props.purpose}",
            target_key_id=self.key.key_id,
        )
        self.key_arn: str = self.key.arn
        self.key_id: str = self.key.key_id

    def grant_decrypt(self, role: GrantableRole) -> None:
        role.add_statements(statement(["kms:Decrypt", "kms:DescribeKey"], [self.key_arn]))

    def grant_encrypt_decrypt(self, role: GrantableRole) -> None:
        role.add_statements(
            statement(
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
                [self.key_arn],
            )
        )
