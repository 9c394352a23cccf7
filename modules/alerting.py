"""The environment's alert topic: KMS-encrypted; only AWS alerting services and granted roles publish."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement, token_blind

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
    name: str = "alerts"  # the topic is ``<prefix>-<name>``
    publishing_services: tuple[str, ...] = PUBLISHING_SERVICES


class AlertTopic(Construct):
    """Publishers: the AWS alerting services of this account, and the roles granted ``grant_publish``.

    The topic policy allows the services and denies every other (non-service) principal that is not
    one of the granted roles, so an account-wide ``sns:Publish`` elsewhere cannot reach this topic.
    It is re-rendered on every grant, like GrantableRole's policy.
    """

    def __init__(self, scope: Construct, id_: str, props: AlertTopicProps) -> None:
        super().__init__(scope, id_)
        self.topic = SnsTopic(self, "topic", name=f"{props.prefix}-{props.name}", kms_master_key_id=props.key.key_arn)
        self.topic_arn: str = self.topic.arn
        self.account_id = props.account_id
        self.services = props.publishing_services
        self.publishers: list[str] = []
        self.policy = SnsTopicPolicy(self, "policy", arn=self.topic.arn, policy=self._policy())
        for index, address in enumerate(props.email_subscribers):
            SnsTopicSubscription(self, f"email-{index}", topic_arn=self.topic.arn, protocol="email", endpoint=address)
        self.key = props.key

    def _policy(self) -> str:
        statements: list[dict] = [
            {
                "Sid": "AlertingServicesOfThisAccount",
                "Effect": "Allow",
                "Principal": {"Service": list(self.services)},
                "Action": "sns:Publish",
                "Resource": self.topic_arn,
                "Condition": {"StringEquals": {"aws:SourceAccount": self.account_id}},
            }
        ]
        # Every principal that is no AWS service and no granted role is denied (aws:PrincipalServiceName
        # is in the request context only when a service principal calls:
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
        condition: dict = {"Null": {"aws:PrincipalServiceName": "true"}}
        if self.publishers:
            condition["StringNotLike"] = {"aws:PrincipalArn": sorted(dict.fromkeys(self.publishers), key=token_blind)}
        statements.append(
            {
                "Sid": "OnlyGrantedRolesAmongPrincipals",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": self.topic_arn,
                "Condition": condition,
            }
        )
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    def grant_publish(self, role: GrantableRole) -> None:
        role.add_statements(statement(["sns:Publish"], [self.topic_arn]))
        self.key.grant_encrypt_decrypt(role)
        if role.role_arn not in self.publishers:
            self.publishers.append(role.role_arn)
            self.policy.policy = self._policy()
