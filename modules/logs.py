"""CloudWatch log groups: every log-producing resource gets one, created by Terraform."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement


@dataclass(frozen=True)
class LogGroupProps:
    name: str
    retention_days: int
    key: PipelineKey
    skip_destroy: bool = False


class LogGroup(Construct):
    """A KMS-encrypted log group with the profile's retention."""

    def __init__(self, scope: Construct, id_: str, props: LogGroupProps) -> None:
        super().__init__(scope, id_)
        self.group = CloudwatchLogGroup(
            self,
            "group",
            name=props.name,
            retention_in_days=props.retention_days,
            kms_key_id=props.key.key_arn,
            skip_destroy=props.skip_destroy,
        )
        self.name: str = self.group.name
        self.arn: str = self.group.arn

    def grant_write(self, role: GrantableRole) -> None:
        """CreateLogStream + PutLogEvents on this group's streams only."""
        role.add_statements(
            statement(["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"], [f"{self.arn}:*"])
        )
