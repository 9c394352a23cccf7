"""The environment's cost budget: alerts to the alert topic, and the automatic shutdown at 100 %.

The budget only counts spend tagged with this project and environment (cost allocation tags),
so two environments in one account each see their own spend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.budgets_budget import BudgetsBudget, BudgetsBudgetCostFilter, BudgetsBudgetNotification
from cdktf_cdktf_provider_aws.ce_anomaly_monitor import CeAnomalyMonitor
from cdktf_cdktf_provider_aws.ce_anomaly_subscription import (
    CeAnomalySubscription,
    CeAnomalySubscriptionSubscriber,
    CeAnomalySubscriptionThresholdExpression,
    CeAnomalySubscriptionThresholdExpressionDimension,
)
from cdktf_cdktf_provider_aws.lambda_permission import LambdaPermission
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from conf.profile import BudgetSettings
from modules.alerting import AlertTopic
from modules.functions import PythonFunction
from modules.iam import GrantableRole, statement


@dataclass(frozen=True)
class PipelineBudgetProps:
    prefix: str
    project: str
    environment: str
    account_id: str
    settings: BudgetSettings
    alerts: AlertTopic


class PipelineBudget(Construct):
    def __init__(self, scope: Construct, id_: str, props: PipelineBudgetProps) -> None:
        super().__init__(scope, id_)
        settings, topic = props.settings, [props.alerts.topic_arn]
        emails = list(settings.subscribers) or None

        def notify(kind: str, threshold: float, *, to_email: bool) -> BudgetsBudgetNotification:
            return BudgetsBudgetNotification(
                notification_type=kind,
                comparison_operator="GREATER_THAN",
                threshold=threshold,
                threshold_type="PERCENTAGE",
                subscriber_sns_topic_arns=topic,
                subscriber_email_addresses=emails if to_email else None,
            )

        self.budget = BudgetsBudget(
            self,
            "budget",
            name=f"{props.prefix}-cost",
            budget_type="COST",
            limit_amount=f"{settings.amount_usd:.2f}",
            limit_unit="USD",
            time_unit=settings.period,
            account_id=props.account_id,
            cost_filter=[
                BudgetsBudgetCostFilter(
                    name="TagKeyValue",
                    values=[f"user:Project${props.project}", f"user:Environment${props.environment}"],
                )
            ],
            notification=[
                notify("ACTUAL", settings.alert_threshold_pct, to_email=True),
                notify("FORECASTED", settings.forecast_threshold_pct, to_email=True),
                # 100 % ACTUAL reaches budget_shutdown through the topic: the automatic shutdown.
                notify("ACTUAL", 100, to_email=True),
            ],
        )
        self.budget_name: str = self.budget.name
        self.budget_arn: str = self.budget.arn
        self.account_id = props.account_id

    def detect_anomalies(self, *, project: str, environment: str, threshold_usd: float, alerts: AlertTopic) -> None:
        """A Cost Anomaly Detection monitor over this environment's tagged spend, alerting the topic."""
        monitor = CeAnomalyMonitor(
            self,
            "anomaly-monitor",
            name=f"{self.budget_name}-anomalies",
            monitor_type="CUSTOM",
            monitor_specification=json.dumps(
                {
                    "And": [
                        {"Tags": {"Key": "Project", "Values": [project], "MatchOptions": ["EQUALS"]}},
                        {"Tags": {"Key": "Environment", "Values": [environment], "MatchOptions": ["EQUALS"]}},
                    ]
                }
            ),
        )
        CeAnomalySubscription(
            self,
            "anomaly-subscription",
            name=f"{self.budget_name}-anomalies",
            frequency="IMMEDIATE",
            monitor_arn_list=[monitor.arn],
            subscriber=[CeAnomalySubscriptionSubscriber(type="SNS", address=alerts.topic_arn)],
            threshold_expression=CeAnomalySubscriptionThresholdExpression(
                dimension=CeAnomalySubscriptionThresholdExpressionDimension(
                    key="ANOMALY_TOTAL_IMPACT_ABSOLUTE",
                    match_options=["GREATER_THAN_OR_EQUAL"],
                    values=[f"{threshold_usd:g}"],
                )
            ),
        )

    def shut_down_with(self, function: PythonFunction, alerts: AlertTopic) -> None:
        """Subscribe the shutdown function to the alert topic (budget alerts reach it there)."""
        permission = LambdaPermission(
            self,
            "topic-invokes-shutdown",
            action="lambda:InvokeFunction",
            function_name=function.function_name,
            principal="sns.amazonaws.com",
            source_arn=alerts.topic_arn,
        )
        SnsTopicSubscription(
            self,
            "shutdown-subscription",
            topic_arn=alerts.topic_arn,
            protocol="lambda",
            endpoint=function.function_arn,
            depends_on=[permission],
        )

    def grant_view(self, role: GrantableRole) -> None:
        role.add_statements(
            statement(["budgets:ViewBudget"], [f"arn:aws:budgets::{self.account_id}:budget/{self.budget_name}"])
        )
