"""The environment's cost budget, its topic, the anomaly monitor and the automatic shutdown at 100 %.

The budget and the anomaly monitor select the environment's spend by one tag, ``CostScope``,
whose value is unique per environment (provider default tags and everything Batch launches carry
it), so two environments in one account each see their own spend. Budgets notifications go to a
topic of their own (its e-mail subscribers and budget_shutdown): the shutdown acts on any message
of that topic and on no other.
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
from modules.alerting import AlertTopic, AlertTopicProps
from modules.encryption import PipelineKey
from modules.functions import PythonFunction
from modules.iam import GrantableRole, statement

# Budgets accepts no FORECASTED notification on a DAILY budget ("forecasted alerts aren't available
# for daily budgets": https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-create.html).
FORECAST_PERIODS = ("MONTHLY", "QUARTERLY", "ANNUALLY")


def notifications(settings: BudgetSettings) -> list[tuple[str, float]]:
    """(type, threshold %) of each notification the budget's time unit allows; 100 % ACTUAL is the
    automatic shutdown."""
    wanted = [("ACTUAL", settings.alert_threshold_pct), ("ACTUAL", 100.0)]
    if settings.period in FORECAST_PERIODS:
        wanted.insert(1, ("FORECASTED", settings.forecast_threshold_pct))
    return list(dict.fromkeys(wanted))


@dataclass(frozen=True)
class PipelineBudgetProps:
    prefix: str
    cost_scope_tag: str
    cost_scope: str
    account_id: str
    settings: BudgetSettings
    key: PipelineKey


class PipelineBudget(Construct):
    def __init__(self, scope: Construct, id_: str, props: PipelineBudgetProps) -> None:
        super().__init__(scope, id_)
        settings = props.settings
        self.topic = AlertTopic(
            self,
            "topic",
            AlertTopicProps(
                prefix=props.prefix,
                account_id=props.account_id,
                key=props.key,
                email_subscribers=settings.subscribers,
                name="budget",
                publishing_services=("budgets.amazonaws.com",),
            ),
        )
        self.cost_scope_tag, self.cost_scope = props.cost_scope_tag, props.cost_scope
        self.budget = BudgetsBudget(
            self,
            "budget",
            name=f"{props.prefix}-cost",
            budget_type="COST",
            limit_amount=f"{settings.amount_usd:.2f}",
            limit_unit="USD",
            time_unit=settings.period,
            account_id=props.account_id,
            # TagKeyValue values are "user:<key>$<value>"; several values of one dimension are ORed,
            # so the one env-unique tag alone selects the environment.
            cost_filter=[
                BudgetsBudgetCostFilter(name="TagKeyValue", values=[f"user:{self.cost_scope_tag}${self.cost_scope}"])
            ],
            notification=[
                BudgetsBudgetNotification(
                    notification_type=kind,
                    comparison_operator="GREATER_THAN",
                    threshold=threshold,
                    threshold_type="PERCENTAGE",
                    subscriber_sns_topic_arns=[self.topic.topic_arn],
                )
                for kind, threshold in notifications(settings)
            ],
        )
        self.budget_name: str = self.budget.name
        self.budget_arn: str = self.budget.arn
        self.account_id = props.account_id

    def monitor_specification(self) -> dict:
        """The tag expression in the shape the provider reads back (json.Marshal of the SDK's
        Expression: every field, null when unset), so the ForceNew spec stays equal on the next plan
        (internal/service/ce/anomaly_monitor.go; the provider's CUSTOM example lists the same nulls).
        MatchOptions null: EQUALS is the default
        (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_TagValues.html)."""
        tags = {"Key": self.cost_scope_tag, "MatchOptions": None, "Values": [self.cost_scope]}
        return {"And": None, "CostCategories": None, "Dimensions": None, "Not": None, "Or": None, "Tags": tags}

    def detect_anomalies(self, *, threshold_usd: float, alerts: AlertTopic) -> None:
        """A Cost Anomaly Detection monitor over this environment's tagged spend, alerting the topic."""
        monitor = CeAnomalyMonitor(
            self,
            "anomaly-monitor",
            name=f"{self.budget_name}-anomalies",
            monitor_type="CUSTOM",
            monitor_specification=json.dumps(self.monitor_specification()),
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

    def shut_down_with(self, function: PythonFunction) -> None:
        """Subscribe the shutdown function to the budget topic (Budgets alone publishes there)."""
        permission = LambdaPermission(
            self,
            "topic-invokes-shutdown",
            action="lambda:InvokeFunction",
            function_name=function.function_name,
            principal="sns.amazonaws.com",
            source_arn=self.topic.topic_arn,
        )
        SnsTopicSubscription(
            self,
            "shutdown-subscription",
            topic_arn=self.topic.topic_arn,
            protocol="lambda",
            endpoint=function.function_arn,
            depends_on=[permission],
        )

    def grant_view(self, role: GrantableRole) -> None:
        role.add_statements(
            statement(["budgets:ViewBudget"], [f"arn:aws:budgets::{self.account_id}:budget/{self.budget_name}"])
        )
