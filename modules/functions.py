"""Python Lambda functions packaged from ``lambda_src/<name>/``, reproducibly.

The zip is built at synth time with fixed timestamps, sorted entries and fixed permissions, so the
same source always gives the same bytes, the same ``source_code_hash`` and no diff on re-plan.
``lambda_src/_shared/`` is added to every function's zip.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cdktf import AssetType, TerraformAsset
from cdktf_cdktf_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktf_cdktf_provider_aws.cloudwatch_event_target import (
    CloudwatchEventTarget,
    CloudwatchEventTargetDeadLetterConfig,
    CloudwatchEventTargetRetryPolicy,
)
from cdktf_cdktf_provider_aws.lambda_function import (
    LambdaFunction,
    LambdaFunctionEnvironment,
    LambdaFunctionLoggingConfig,
    LambdaFunctionTracingConfig,
)
from cdktf_cdktf_provider_aws.lambda_function_event_invoke_config import (
    LambdaFunctionEventInvokeConfig,
    LambdaFunctionEventInvokeConfigDestinationConfig,
    LambdaFunctionEventInvokeConfigDestinationConfigOnFailure,
)
from cdktf_cdktf_provider_aws.lambda_permission import LambdaPermission
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from cdktf_cdktf_provider_aws.sqs_queue_policy import SqsQueuePolicy
from constructs import Construct

from conf.profile import FunctionSpec
from modules.encryption import PipelineKey
from modules.iam import GrantableRole, GrantableRoleProps, statement
from modules.logs import LogGroup, LogGroupProps

REPO = Path(__file__).resolve().parent.parent
LAMBDA_SRC = REPO / "lambda_src"
BUILD_DIR = REPO / "build" / "lambda"
SHARED = "_shared"
RUNTIME = "python3.12"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def package(name: str, src: Path = LAMBDA_SRC) -> bytes:
    """The function's zip: its own ``*.py`` and the shared ones, byte-for-byte reproducible."""
    files = sorted((p for folder in (src / name, src / SHARED) for p in folder.glob("*.py")), key=lambda p: p.name)
    if not (src / name / "handler.py").exists():
        raise FileNotFoundError(f"{src / name / 'handler.py'} is missing: every function needs a handler.py")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def source_hash(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True)
class PythonFunctionProps:
    prefix: str
    name: str  # folder in lambda_src/
    description: str
    spec: FunctionSpec
    architecture: str
    key: PipelineKey
    log_retention_days: int
    log_level: str
    account_id: str
    environment: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()


class PythonFunction(Construct):
    """A function with its own role (policy from grants), log group, DLQ and X-Ray tracing."""

    def __init__(self, scope: Construct, id_: str, props: PythonFunctionProps) -> None:
        super().__init__(scope, id_)
        function_name = f"{props.prefix}-{props.name.replace('_', '-')}"
        self.role = GrantableRole(
            self,
            "role",
            GrantableRoleProps(
                name=f"{function_name}-fn",
                service="lambda.amazonaws.com",
                description=props.description,
                source_account=props.account_id,
            ),
        )
        self.log_group = LogGroup(
            self,
            "logs",
            LogGroupProps(
                name=f"/aws/lambda/{function_name}",
                retention_days=props.log_retention_days,
                key=props.key,
            ),
        )
        self.log_group.grant_write(self.role)
        # X-Ray's write actions have no resource-level permissions: "*" is the only valid resource.
        self.role.add_statements(statement(["xray:PutTelemetryRecords", "xray:PutTraceSegments"], ["*"]))
        self.dead_letters = SqsQueue(
            self,
            "dlq",
            name=f"{function_name}-dlq",
            kms_master_key_id=props.key.key_arn,
            message_retention_seconds=14 * 24 * 3600,
        )
        dead_letters_arn: str = self.dead_letters.arn
        self.role.add_statements(statement(["sqs:SendMessage"], [dead_letters_arn]))
        # Decrypt the environment, encrypt dead letters: both use the pipeline key.
        props.key.grant_encrypt_decrypt(self.role)

        data = package(props.name)
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        zip_path = BUILD_DIR / f"{props.name}.zip"
        if not zip_path.exists() or zip_path.read_bytes() != data:
            zip_path.write_bytes(data)
        asset = TerraformAsset(self, "code", path=str(zip_path), type=AssetType.FILE)
        self.function = LambdaFunction(
            self,
            "function",
            function_name=function_name,
            description=props.description,
            role=self.role.role_arn,
            runtime=RUNTIME,
            handler="handler.handler",
            architectures=[props.architecture],
            filename=asset.path,
            source_code_hash=source_hash(data),
            memory_size=props.spec.memory_mb,
            timeout=props.spec.timeout_seconds,
            reserved_concurrent_executions=props.spec.reserved_concurrency,
            kms_key_arn=props.key.key_arn,
            layers=list(props.layers) or None,
            environment=LambdaFunctionEnvironment(variables={"LOG_LEVEL": props.log_level, **props.environment}),
            tracing_config=LambdaFunctionTracingConfig(mode="Active"),
            logging_config=LambdaFunctionLoggingConfig(
                log_format="JSON",
                log_group=self.log_group.name,
                application_log_level=props.log_level,
                system_log_level="WARN",
            ),
            depends_on=[self.log_group.group],
        )
        self.function_name: str = self.function.function_name
        self.function_arn: str = self.function.arn
        LambdaFunctionEventInvokeConfig(
            self,
            "async",
            function_name=self.function_name,
            maximum_retry_attempts=2,
            destination_config=LambdaFunctionEventInvokeConfigDestinationConfig(
                on_failure=LambdaFunctionEventInvokeConfigDestinationConfigOnFailure(destination=dead_letters_arn)
            ),
        )
        self.timeout_seconds = props.spec.timeout_seconds

    def grant_invoke(self, role: GrantableRole) -> None:
        """InvokeFunction on this function (and its versions and aliases) only."""
        role.add_statements(statement(["lambda:InvokeFunction"], [self.function_arn, f"{self.function_arn}:*"]))

    def invoked_by(
        self, scope: Construct, id_: str, rule: CloudwatchEventRule, *, keep_undelivered: bool = False
    ) -> CloudwatchEventTarget:
        """``rule`` invokes this function with the whole event: the function's resource policy admits
        events.amazonaws.com for that rule's ARN only, before the target exists
        (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html).
        ``keep_undelivered``: an event EventBridge could not deliver after its retries (24 h, 185
        attempts, explicit here) goes to this function's dead-letter queue instead of being dropped;
        the queue's policy admits that rule only and the key admits EventBridge
        (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html)."""
        permission = LambdaPermission(
            scope,
            f"{id_}-invokes",
            action="lambda:InvokeFunction",
            function_name=self.function_name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
        )
        undelivered: dict = {}
        if keep_undelivered:
            queue_arn: str = self.dead_letters.arn
            SqsQueuePolicy(
                scope,
                f"{id_}-undelivered-policy",
                queue_url=self.dead_letters.url,
                policy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "UndeliveredEvents",
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Action": "sqs:SendMessage",
                                "Resource": queue_arn,
                                "Condition": {"ArnEquals": {"aws:SourceArn": rule.arn}},
                            }
                        ],
                    }
                ),
            )
            undelivered = {
                "dead_letter_config": CloudwatchEventTargetDeadLetterConfig(arn=queue_arn),
                "retry_policy": CloudwatchEventTargetRetryPolicy(
                    maximum_event_age_in_seconds=24 * 3600, maximum_retry_attempts=185
                ),
            }
        return CloudwatchEventTarget(
            scope, f"{id_}-target", rule=rule.name, arn=self.function_arn, depends_on=[permission], **undelivered
        )
