"""The environment's alert topic: KMS-encrypted; only AWS alerting services and granted roles publish."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement

PUBLISHING_SERVICES = (
    "budgets.amazonaws.com",
    "cloudwatch.amazonaws.com",
    "costalerts.amazonaws.com",
    "events.amazonaws.com",
)


@dataclass(frozen=True)
class AlertTopicProps:
    prefix: str
    account_id: str
    key: PipelineKey
    email_subscribers: tuple[str, ...] = ()


class AlertTopic(Construct):
    def __init__(self, scope: Construct, id_: str, props: AlertTopicProps) -> None:
        super().__init__(scope, id_)
        self.topic = SnsTopic(self, "topic", name=f"{props.prefix}-alerts", kms_master_key_id=props.key.key_arn)
        self.topic_arn: str = self.topic.arn
        SnsTopicPolicy(
            self,
            "policy",
            arn=self.topic.arn,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AlertingServicesOfThisAccount",
                            "Effect": "Allow",
                            "Principal": {"Service": list(PUBLISHING_SERVICES)},
                            "Action": "sns:Publish",
                            "Resource": self.topic.arn,
                            "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id}},
                        }
                    ],
                }
            ),
        )
        for index, address in enumerate(props.email_subscribers):
            SnsTopicSubscription(self, f"email-{index}", topic_arn=self.topic.arn, protocol="email", endpoint=address)
        self.key = props.key

    def grant_publish(self, role: GrantableRole) -> None:
        role.add_statements(statement(["sns:Publish"], [self.topic_arn]))
        self.key.grant_encrypt_decrypt(role)
