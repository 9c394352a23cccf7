"""Alarms and the dashboard of one environment: every failure reaches the alert topic.

Alarms: Step Functions executions failed / timed out / throttled; per Lambda function errors,
throttles and a duration close to its time-out; Batch jobs FAILED (an EventBridge rule that feeds
the topic, and an alarm on the rule's matched-events metric); S3 5xx on the data buckets (needs
request metrics, a profile switch). Thresholds, periods and missing-data handling come from the profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.cloudwatch_dashboard import CloudwatchDashboard
from cdktf_cdktf_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktf_cdktf_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktf_cdktf_provider_aws.s3_bucket_metric import S3BucketMetric
from constructs import Construct

from conf.profile import MonitoringSettings
from modules.alerting import AlertTopic
from modules.functions import PythonFunction
from modules.secure_bucket import SecureBucket


@dataclass(frozen=True)
class MonitoringProps:
    prefix: str
    region: str
    settings: MonitoringSettings
    alerts: AlertTopic
    state_machine_arn: str
    functions: dict[str, PythonFunction]
    data_buckets: dict[str, SecureBucket]
    job_queue_arns: list[str]
    budget_limit_usd: float


class Monitoring(Construct):
    def __init__(self, scope: Construct, id_: str, props: MonitoringProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        self.alarms: dict[str, CloudwatchMetricAlarm] = {}
        machine = {"StateMachineArn": props.state_machine_arn}
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled"):
            self._alarm(
                f"sfn-{metric}",
                "AWS/States",
                metric,
                machine,
                statistic="Sum",
                threshold=1,
                description=f"Pipeline workflow: {metric}",
            )
        for name, function in props.functions.items():
            dims = {"FunctionName": function.function_name}
            self._alarm(
                f"{name}-errors",
                "AWS/Lambda",
                "Errors",
                dims,
                statistic="Sum",
                threshold=1,
                description=f"{name}: invocation errors",
            )
            self._alarm(
                f"{name}-throttles",
                "AWS/Lambda",
                "Throttles",
                dims,
                statistic="Sum",
                threshold=1,
                description=f"{name}: throttled invocations",
            )
            near_timeout = function.timeout_seconds * 1000 * props.settings.lambda_duration_pct_of_timeout / 100
            self._alarm(
                f"{name}-duration",
                "AWS/Lambda",
                "Duration",
                dims,
                statistic="Maximum",
                threshold=near_timeout,
                description=f"{name}: duration near its time-out",
            )
        self._batch_failures(props)
        if props.settings.s3_request_metrics:
            for name, bucket in props.data_buckets.items():
                S3BucketMetric(self, f"{name}-requests", bucket=bucket.bucket.id, name="EntireBucket")
                self._alarm(
                    f"s3-{name}-5xx",
                    "AWS/S3",
                    "5xxErrors",
                    {"BucketName": bucket.bucket_name, "FilterId": "EntireBucket"},
                    statistic="Sum",
                    threshold=1,
                    description=f"{name} bucket: server errors",
                )
        self.dashboard = CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=f"{props.prefix}-pipeline",
            dashboard_body=json.dumps(self._dashboard_body(props)),
        )
        self.dashboard_url: str = (
            f"https://{props.region}.console.aws.amazon.com/cloudwatch/home?region="
            f"{props.region}#dashboards:name={props.prefix}-pipeline"
        )

    def _alarm(
        self,
        id_: str,
        namespace: str,
        metric: str,
        dimensions: dict[str, str],
        *,
        statistic: str,
        threshold: float,
        description: str,
    ) -> None:
        settings, topic = self.props.settings, [self.props.alerts.topic_arn]
        self.alarms[id_] = CloudwatchMetricAlarm(
            self,
            id_,
            alarm_name=f"{self.props.prefix}-{id_}",
            alarm_description=description,
            namespace=namespace,
            metric_name=metric,
            dimensions=dimensions,
            statistic=statistic,
            period=settings.period_seconds,
            evaluation_periods=settings.evaluation_periods,
            threshold=threshold,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data=settings.treat_missing_data,
            alarm_actions=topic,
            ok_actions=topic,
        )

    def _batch_failures(self, props: MonitoringProps) -> None:
        """Batch jobs of this environment's queues that end FAILED: to the topic, and as a metric."""
        rule = CloudwatchEventRule(
            self,
            "batch-failed",
            name=f"{props.prefix}-batch-job-failed",
            description="Batch jobs of the pipeline that FAILED",
            event_pattern=json.dumps(
                {
                    "source": ["aws.batch"],
                    "detail-type": ["Batch Job State Change"],
                    "detail": {"status": ["FAILED"], "jobQueue": props.job_queue_arns},
                }
            ),
        )
        CloudwatchEventTarget(self, "batch-failed-to-topic", rule=rule.name, arn=props.alerts.topic_arn)
        self._alarm(
            "batch-jobs-failed",
            "AWS/Events",
            "MatchedEvents",
            {"RuleName": rule.name},
            statistic="Sum",
            threshold=1,
            description="Batch jobs FAILED (EventBridge rule matches)",
        )

    def _dashboard_body(self, props: MonitoringProps) -> dict:
        region, machine = props.region, props.state_machine_arn

        def metric_widget(
            title: str,
            metrics: list[list],
            *,
            stat: str = "Sum",
            y: int,
            x: int = 0,
            annotations: dict | None = None,
            widget_region: str | None = None,
        ) -> dict:
            body = {
                "title": title,
                "metrics": metrics,
                "stat": stat,
                "period": props.settings.period_seconds,
                "region": widget_region or region,
                "view": "timeSeries",
            }
            if annotations:
                body["annotations"] = annotations
            return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": body}

        executions = [
            ["AWS/States", m, "StateMachineArn", machine]
            for m in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut")
        ]
        errors = [["AWS/Lambda", "Errors", "FunctionName", f.function_name] for f in props.functions.values()]
        durations = [["AWS/Lambda", "Duration", "FunctionName", f.function_name] for f in props.functions.values()]
        sizes = [
            ["AWS/S3", "BucketSizeBytes", "BucketName", b.bucket_name, "StorageType", "StandardStorage"]
            for b in props.data_buckets.values()
        ]
        return {
            "widgets": [
                metric_widget("Executions", executions, y=0),
                metric_widget(
                    "Execution duration (ms)",
                    [["AWS/States", "ExecutionTime", "StateMachineArn", machine]],
                    stat="Average",
                    y=0,
                    x=12,
                ),
                metric_widget("Lambda errors", errors, y=6),
                metric_widget("Lambda duration (ms, max)", durations, stat="Maximum", y=6, x=12),
                metric_widget(
                    "Batch jobs failed",
                    [["AWS/Events", "MatchedEvents", "RuleName", f"{props.prefix}-batch-job-failed"]],
                    y=12,
                ),
                metric_widget("Data bucket sizes (bytes)", sizes, stat="Average", y=12, x=12),
                metric_widget(
                    "Estimated charges vs budget (USD)",
                    [["AWS/Billing", "EstimatedCharges", "Currency", "USD"]],
                    stat="Maximum",
                    y=18,
                    widget_region="us-east-1",
                    annotations={"horizontal": [{"label": "budget", "value": props.budget_limit_usd}]},
                ),
            ]
        }
