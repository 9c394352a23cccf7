"""Alarms and the dashboard of one environment: every failure reaches the alert topic.

Alarms: Step Functions executions failed / timed out / throttled; per Lambda function errors,
throttles and a duration close to its time-out; Batch jobs FAILED (an EventBridge rule that feeds
the topic, and an alarm on the rule's matched-events metric); a job RUNNABLE for longer than
``monitoring.runnable_alarm_minutes`` on any queue (no instance can take it: capacity, placement,
or instances that cannot reach ECS); S3 5xx on the data buckets (needs request metrics, a profile
switch). Thresholds, periods and missing-data handling come from the profile.

Batch publishes no metrics, so the BatchMetrics function (lambda_src/batch_metrics) writes them as
Embedded Metric Format under :data:`METRIC_NAMESPACE`: every minute (an EventBridge schedule) the
jobs per queue and state and the oldest RUNNABLE job's age, and the compute environments' desired
and maximum vCPUs; and, fed by EventBridge rules, each finished job (per queue and status) and
each spot interruption warning. WriteParquet adds the images processed per execution. The
dashboard shows these with the AWS/States, AWS/Lambda (error rate by metric math) and AWS/S3
(requests, bytes, storage of every class) metrics.
"""

from __future__ import annotations

import json
import re
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

METRIC_NAMESPACE = "OdinsRavne/Pipeline"
RUNBOOKS = "docs/runbooks"  # in this repository; tests/test_runbooks.py checks every link resolves
# Alarm id pattern -> its runbook (one per kind of alarm; the alarm's name says the env and the member).
RUNBOOK_OF_ALARM = (
    (re.compile(r"^sfn-ExecutionsFailed$"), "workflow-failed"),
    (re.compile(r"^sfn-ExecutionsTimedOut$"), "workflow-timed-out"),
    (re.compile(r"^sfn-ExecutionThrottled$"), "workflow-throttled"),
    (re.compile(r"^batch-jobs-failed$"), "batch-jobs-failed"),
    (re.compile(r"^trigger-failed-invocations$"), "manifest-trigger"),
    (re.compile(r"^batch-.+-runnable$"), "batch-runnable"),
    (re.compile(r"^s3-.+-5xx$"), "s3-5xx"),
    (re.compile(r"-errors$"), "lambda-errors"),
    (re.compile(r"-throttles$"), "lambda-throttles"),
    (re.compile(r"-duration$"), "lambda-duration"),
)


def runbook_path(alarm_id: str) -> str:
    """The runbook of an alarm id; an alarm without one is a programming error caught at synth."""
    slug = next((slug for pattern, slug in RUNBOOK_OF_ALARM if pattern.search(alarm_id)), None)
    if slug is None:
        raise ValueError(f"alarm {alarm_id!r} has no runbook: add one to RUNBOOK_OF_ALARM and {RUNBOOKS}/")
    return f"{RUNBOOKS}/{slug}.md"


ACTIVE_JOB_STATES = ("Submitted", "Pending", "Runnable", "Starting", "Running")


@dataclass(frozen=True)
class MonitoringProps:
    prefix: str
    environment: str
    region: str
    settings: MonitoringSettings
    alerts: AlertTopic
    state_machine_arn: str
    functions: dict[str, PythonFunction]
    data_buckets: dict[str, SecureBucket]
    job_queues: dict[str, str]  # name -> ARN
    compute_environments: dict[str, str]  # name -> ARN
    metrics_function: PythonFunction  # lambda_src/batch_metrics
    budget_limit_usd: float
    trigger_rule_name: str | None = None  # the manifest trigger's rule (modules/workflow.py), if any


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
        self._batch_metrics(props)
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
            alarm_description=f"{description}. Runbook: {self._runbook_url(id_)} (ENV={self.props.environment})",
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
                    "detail": {"status": ["FAILED"], "jobQueue": list(props.job_queues.values())},
                }
            ),
        )
        CloudwatchEventTarget(self, "batch-failed-to-topic", rule=rule.name, arn=props.alerts.topic_arn)
        self._rule_alarm(
            "batch-jobs-failed", "MatchedEvents", rule.name, "Batch jobs FAILED (EventBridge rule matches)"
        )
        if props.trigger_rule_name:
            # FailedInvocations: deliveries that failed for good (retries spent, or refused), each
            # left in start_run's dead-letter queue (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html).
            self._rule_alarm(
                "trigger-failed-invocations",
                "FailedInvocations",
                props.trigger_rule_name,
                "The manifest trigger could not invoke start_run: an upload started no run",
            )

    def _rule_alarm(self, id_: str, metric: str, rule_name: str, description: str) -> None:
        """An alarm on one EventBridge rule's metric, at the first event in a period."""
        self._alarm(
            id_, "AWS/Events", metric, {"RuleName": rule_name}, statistic="Sum", threshold=1, description=description
        )

    def _batch_metrics(self, props: MonitoringProps) -> None:
        """Feed BatchMetrics: a schedule for the depths, rules for finished jobs and spot warnings;
        then alarm on a job left RUNNABLE."""
        feeds = {
            "batch-metrics-schedule": {"schedule_expression": "rate(1 minute)"},
            "batch-jobs-finished": {
                "event_pattern": json.dumps(
                    {
                        "source": ["aws.batch"],
                        "detail-type": ["Batch Job State Change"],
                        "detail": {"status": ["SUCCEEDED", "FAILED"], "jobQueue": list(props.job_queues.values())},
                    }
                )
            },
            # The event names only the instance; the account holds one environment's fleet.
            "spot-interruptions": {
                "event_pattern": json.dumps(
                    {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]}
                )
            },
        }
        function = props.metrics_function
        for id_, trigger in feeds.items():
            rule = CloudwatchEventRule(
                self, id_, name=f"{props.prefix}-{id_}", description=f"Feeds BatchMetrics: {id_}", **trigger
            )
            function.invoked_by(self, id_, rule)
        for queue in props.job_queues:
            self._alarm(
                f"batch-{queue}-runnable",
                METRIC_NAMESPACE,
                "OldestRunnableSeconds",
                {"Environment": props.environment, "Queue": queue},
                statistic="Maximum",
                threshold=props.settings.runnable_alarm_minutes * 60,
                description=(
                    f"A job on the {queue} queue has been RUNNABLE for {props.settings.runnable_alarm_minutes} min: "
                    "no instance takes it (capacity, placement, or instances that cannot reach ECS)"
                ),
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
        functions = list(props.functions.values())
        # PutDashboard wants every "metrics" entry as an array, a math expression too: [{"expression": ...}].
        error_rate = []  # metric math: errors / invocations per function, in percent
        for i, f in enumerate(functions):
            error_rate += [
                [{"expression": f"100 * FILL(e{i}, 0) / i{i}", "label": f.function_name, "id": f"rate{i}"}],
                ["AWS/Lambda", "Errors", "FunctionName", f.function_name, {"id": f"e{i}", "visible": False}],
                ["AWS/Lambda", "Invocations", "FunctionName", f.function_name, {"id": f"i{i}", "visible": False}],
            ]
        calls = [
            ["AWS/Lambda", metric, "FunctionName", f.function_name]
            for f in functions
            for metric in ("Invocations", "Throttles")
        ]
        durations = [["AWS/Lambda", "Duration", "FunctionName", f.function_name, {"stat": "p90"}] for f in functions]

        def batch_queue(queue: str) -> list[list]:
            depth = [
                [
                    METRIC_NAMESPACE,
                    f"Jobs{state}",
                    "Environment",
                    props.environment,
                    "Queue",
                    queue,
                    {"stat": "Maximum"},
                ]
                for state in ACTIVE_JOB_STATES
            ]
            return depth + [
                [METRIC_NAMESPACE, "JobsFinished", "Environment", props.environment, "Queue", queue, "Status", status]
                for status in ("SUCCEEDED", "FAILED")
            ]

        buckets = list(props.data_buckets.values())
        requests = [
            ["AWS/S3", metric, "BucketName", b.bucket_name, "FilterId", "EntireBucket"]
            for b in buckets
            for metric in ("GetRequests", "PutRequests", "ListRequests")
        ]
        transfer = [
            ["AWS/S3", metric, "BucketName", b.bucket_name, "FilterId", "EntireBucket"]
            for b in buckets
            for metric in ("BytesDownloaded", "BytesUploaded")
        ]
        storage = [  # every storage class the bucket has bytes in, not only Standard
            [
                {
                    "expression": (
                        'SEARCH(\'{AWS/S3,BucketName,StorageType} MetricName="BucketSizeBytes" '
                        f"BucketName=\"{b.bucket_name}\"', 'Average', 86400)"
                    ),
                    "id": f"size{i}",
                }
            ]
            for i, b in enumerate(buckets)
        ]
        runnable_limit = props.settings.runnable_alarm_minutes * 60
        widgets = [
            metric_widget("Executions: started, succeeded, failed, timed out", executions, y=0),
            metric_widget(
                "Execution duration (ms): p50, p90",
                [
                    ["AWS/States", "ExecutionTime", "StateMachineArn", machine, {"stat": "p50"}],
                    ["AWS/States", "ExecutionTime", "StateMachineArn", machine, {"stat": "p90"}],
                ],
                y=0,
                x=12,
            ),
            metric_widget(
                "Images processed per execution",
                [
                    [METRIC_NAMESPACE, "ImagesProcessed", "Environment", props.environment],
                    [METRIC_NAMESPACE, "DetectionRows", "Environment", props.environment],
                ],
                y=6,
            ),
            metric_widget("Lambda error rate (%)", error_rate, y=6, x=12),
            metric_widget("Lambda invocations and throttles", calls, y=12),
            metric_widget("Lambda duration (ms, p90)", durations, stat="p90", y=12, x=12),
        ]
        for index, queue in enumerate(props.job_queues):
            widgets.append(
                metric_widget(
                    f"Batch queue {queue}: jobs by state (depth) and finished",
                    batch_queue(queue),
                    y=18 + 6 * (index // 2),
                    x=12 * (index % 2),
                )
            )
        row = 18 + 6 * ((len(props.job_queues) + 1) // 2)
        widgets += [
            metric_widget(
                "Batch: oldest RUNNABLE job (s) per queue",
                [
                    [METRIC_NAMESPACE, "OldestRunnableSeconds", "Environment", props.environment, "Queue", q]
                    for q in props.job_queues
                ],
                stat="Maximum",
                y=row,
                annotations={"horizontal": [{"label": "RUNNABLE alarm", "value": runnable_limit}]},
            ),
            metric_widget(
                "Batch vCPUs: desired vs max per compute environment",
                [
                    [METRIC_NAMESPACE, metric, "Environment", props.environment, "ComputeEnvironment", name]
                    for name in props.compute_environments
                    for metric in ("DesiredVcpus", "MaxVcpus")
                ],
                stat="Maximum",
                y=row,
                x=12,
            ),
            metric_widget(
                "Batch: spot interruption warnings, jobs failed",
                [
                    [METRIC_NAMESPACE, "SpotInterruptionWarnings", "Environment", props.environment],
                    ["AWS/Events", "MatchedEvents", "RuleName", f"{props.prefix}-batch-job-failed"],
                ],
                y=row + 6,
            ),
            metric_widget("S3 storage (bytes), every storage class", storage, stat="Average", y=row + 6, x=12),
            metric_widget("S3 requests (needs request metrics)", requests, y=row + 12),
            metric_widget("S3 bytes down / up (needs request metrics)", transfer, y=row + 12, x=12),
            metric_widget(
                "Estimated charges vs budget (USD)",
                [["AWS/Billing", "EstimatedCharges", "Currency", "USD"]],
                stat="Maximum",
                y=row + 18,
                widget_region="us-east-1",
                annotations={"horizontal": [{"label": "budget", "value": props.budget_limit_usd}]},
            ),
        ]
        return {"widgets": self._alarm_widgets(props) + [_below(w, ALARM_ROWS) for w in widgets]}

    def _runbook_url(self, alarm_id: str) -> str:
        """Absolute: the console would resolve a relative link against its own URL."""
        return self.props.settings.runbook_base_url + runbook_path(alarm_id)

    def _alarm_widgets(self, props: MonitoringProps) -> list[dict]:
        """Top row: every alarm's state (ALARM first) and where its runbook is. Widget types "alarm"
        (1-100 alarm ARNs) and "text" (markdown): CloudWatch-Dashboard-Body-Structure.html."""
        arns = [alarm.arn for alarm in self.alarms.values()]
        if len(arns) > 100:
            raise ValueError(f"{len(arns)} alarms: an alarm widget shows at most 100; split the widget")
        books = sorted({self._runbook_url(id_) for id_ in self.alarms})
        links = "\n".join(f"* [{b.rsplit('/', 1)[1].removesuffix('.md')}]({b})" for b in books)
        text = (
            f"## Runbooks ({props.environment})\n"
            f"Each alarm's description names its runbook, in the repository under `{RUNBOOKS}/`:\n{links}"
        )
        return [
            {
                "type": "alarm",
                "x": 0,
                "y": 0,
                "width": 16,
                "height": ALARM_ROWS,
                "properties": {
                    "title": "Alarms (ALARM first)",
                    "alarms": arns,
                    "sortBy": "stateUpdatedTimestamp",
                },
            },
            {"type": "text", "x": 16, "y": 0, "width": 8, "height": ALARM_ROWS, "properties": {"markdown": text}},
        ]


ALARM_ROWS = 6  # height of the alarm-status and runbook row above the metric widgets


def _below(widget: dict, rows: int) -> dict:
    return {**widget, "y": widget["y"] + rows}
