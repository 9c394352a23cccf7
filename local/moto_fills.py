"""Small, named fills for the API gaps the AWS provider 5.100 hits on moto 5.2.1 (pinned), and for
one per-request cost of its server.

Each fill patches one thing in this process (the emulator server), is idempotent, and is
covered by tests/test_emulator.py. When moto fixes a gap upstream, delete its fill.
"""

from __future__ import annotations

import datetime
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

FILLS: dict[str, Callable[[], None]] = {}


def fill(func: Callable[[], None]) -> Callable[[], None]:
    """Register a fill; applying it twice is a no-op."""

    @functools.wraps(func)
    def once() -> None:
        if not getattr(once, "applied", False):
            func()
            once.applied = True  # type: ignore[attr-defined]

    FILLS[func.__name__] = once
    return once


def apply_all() -> list[str]:
    for apply in FILLS.values():
        apply()
    return sorted(FILLS)


@fill
def s3_logging_policy_with_string_principal() -> None:
    """PutBucketLogging crashes (500) when the target's policy has a ``"Principal": "*"`` statement."""
    from moto.s3.models import FakeBucket

    original = FakeBucket._log_permissions_enabled_policy

    def tolerant(target_bucket: Any, target_prefix: str | None) -> bool:
        policy = target_bucket.policy
        if not policy:
            return False
        document = json.loads(policy.decode())
        kept = [s for s in document.get("Statement", []) if isinstance(s.get("Principal"), dict)]
        saved = target_bucket.policy
        target_bucket.policy = json.dumps({**document, "Statement": kept}).encode()
        try:
            return original(target_bucket, target_prefix)
        finally:
            target_bucket.policy = saved

    FakeBucket._log_permissions_enabled_policy = staticmethod(tolerant)


@fill
def s3_eventbridge_notification_readback() -> None:
    """GetBucketNotificationConfiguration drops ``EventBridgeConfiguration``: a perpetual diff."""
    from moto.s3.responses import S3Response

    original = S3Response.get_bucket_notification

    def with_eventbridge(self: Any) -> Any:
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if config is None or config.event_bridge is None:
            return original(self)
        status, headers, body = original(self)
        text = body.decode() if isinstance(body, bytes) else body
        marker = "</NotificationConfiguration>"
        if "<EventBridgeConfiguration" not in text:
            if marker in text:
                text = text.replace(marker, "<EventBridgeConfiguration></EventBridgeConfiguration>" + marker)
            else:
                text = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    '<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    "<EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>"
                )
        return status, headers, text

    S3Response.get_bucket_notification = with_eventbridge


@fill
def batch_job_state_time_limit_actions() -> None:
    """Create/UpdateJobQueue ignore ``jobStateTimeLimitActions``: a perpetual diff and a 30 s waiter."""
    from moto.batch.models import JobQueue
    from moto.batch.responses import BatchResponse

    def remember(original: Callable[[Any], str], name_key: str) -> Callable[[Any], str]:
        def wrapper(self: Any) -> str:
            result = original(self)
            actions = self._get_param("jobStateTimeLimitActions")
            if actions is not None:
                queue = self.batch_backend.get_job_queue(self._get_param(name_key))
                if queue is not None:
                    queue.job_state_time_limit_actions = actions
            return result

        return wrapper

    BatchResponse.createjobqueue = remember(BatchResponse.createjobqueue, "jobQueueName")
    BatchResponse.updatejobqueue = remember(BatchResponse.updatejobqueue, "jobQueue")
    describe = JobQueue.describe

    def described(self: Any) -> dict[str, Any]:
        out = describe(self)
        out["jobStateTimeLimitActions"] = getattr(self, "job_state_time_limit_actions", [])
        return out

    JobQueue.describe = described


@fill
def ec2_rule_description_for_prefix_lists_and_groups() -> None:
    """Rules to a prefix list or a security group lose their description: a perpetual diff."""
    import inspect

    from moto.ec2.models.security_groups import SecurityGroupRule

    init = SecurityGroupRule.__init__
    signature = inspect.signature(init)

    def keep_description(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs).arguments
        target = bound.get("prefix_list_id") or bound.get("source_group") or {}
        if target.get("Description") and not self.ip_range.get("Description"):
            self.ip_range = {**self.ip_range, "Description": target["Description"]}

    SecurityGroupRule.__init__ = keep_description


@fill
def ec2_launch_template_own_tags_not_in_data() -> None:
    """Tags for the launch template itself leak into its LaunchTemplateData: a perpetual diff."""
    from moto.ec2.models.launch_templates import LaunchTemplate

    create_version = LaunchTemplate.create_version

    def without_own_tags(self: Any, data: dict[str, Any], description: str) -> Any:
        specs = data.get("TagSpecifications")
        if specs:
            data = {**data, "TagSpecifications": [s for s in specs if s.get("ResourceType") != "launch-template"]}
            if not data["TagSpecifications"]:
                del data["TagSpecifications"]
        return create_version(self, data, description)

    LaunchTemplate.create_version = without_own_tags


@fill
def budgets_subscribers_and_tags() -> None:
    """Budgets lacks DescribeSubscribersForNotification and the tagging calls the provider reads back."""
    from moto.budgets.responses import BudgetsResponse

    def tags_of(self: Any) -> dict[str, dict[str, str]]:
        if not hasattr(self.backend, "fill_tags"):
            self.backend.fill_tags = {}
        return self.backend.fill_tags

    def describe_subscribers_for_notification(self: Any) -> str:
        wanted = self._get_param("Notification")
        notifications = self.backend.budgets[self._get_param("AccountId")][self._get_param("BudgetName")].notifications
        for notification in notifications:
            if all(notification.details.get(k) == v for k, v in wanted.items()):
                return json.dumps({"Subscribers": notification.subscribers})
        return json.dumps({"Subscribers": []})

    def list_tags_for_resource(self: Any) -> str:
        tags = tags_of(self).get(self._get_param("ResourceARN"), {})
        return json.dumps({"ResourceTags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]})

    def tag_resource(self: Any) -> str:
        tags = tags_of(self).setdefault(self._get_param("ResourceARN"), {})
        tags.update({t["Key"]: t["Value"] for t in self._get_param("ResourceTags") or []})
        return json.dumps({})

    def untag_resource(self: Any) -> str:
        tags = tags_of(self).setdefault(self._get_param("ResourceARN"), {})
        for key in self._get_param("ResourceTagKeys") or []:
            tags.pop(key, None)
        return json.dumps({})

    create_budget = BudgetsResponse.create_budget

    def create_budget_with_tags(self: Any) -> str:
        result = create_budget(self)
        budget = self._get_param("Budget")
        arn = f"arn:aws:budgets::{self._get_param('AccountId')}:budget/{budget['BudgetName']}"
        tags_of(self)[arn] = {t["Key"]: t["Value"] for t in self._get_param("ResourceTags") or []}
        return result

    BudgetsResponse.describe_subscribers_for_notification = describe_subscribers_for_notification
    BudgetsResponse.list_tags_for_resource = list_tags_for_resource
    BudgetsResponse.tag_resource = tag_resource
    BudgetsResponse.untag_resource = untag_resource
    BudgetsResponse.create_budget = create_budget_with_tags


@fill
def stepfunctions_validate_and_versions() -> None:
    """ValidateStateMachineDefinition and ListStateMachineVersions are missing (the provider calls both).

    The validation answers like AWS for the structural errors it can see here (not JSON, no StartAt,
    StartAt or a Next naming no state); the project's tests run a full ASL validator separately.
    """
    from moto.stepfunctions.responses import StepFunctionResponse

    def validate_state_machine_definition(self: Any) -> str:
        diagnostics = []
        try:
            definition = json.loads(self._get_param("definition"))
            states = definition.get("States", {})
            targets = [definition.get("StartAt")] + [s.get("Next") for s in states.values() if s.get("Next")]
            diagnostics = [
                {
                    "severity": "ERROR",
                    "code": "MISSING_TRANSITION_TARGET",
                    "message": f"state {target!r} does not exist",
                    "location": "/States",
                }
                for target in targets
                if target not in states
            ]
        except (ValueError, AttributeError) as exc:
            diagnostics = [
                {"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION", "message": str(exc), "location": "/"}
            ]
        return json.dumps({"result": "FAIL" if diagnostics else "OK", "diagnostics": diagnostics, "truncated": False})

    def list_state_machine_versions(self: Any) -> str:
        return json.dumps({"stateMachineVersions": []})

    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition
    StepFunctionResponse.list_state_machine_versions = list_state_machine_versions


@fill
def lambda_kms_key_and_logging_config() -> None:
    """Functions forget ``KMSKeyArn`` and ``LoggingConfig``: a perpetual diff on every function."""
    from moto.awslambda.models import LambdaFunction

    init, configuration, update = (
        LambdaFunction.__init__,
        LambdaFunction.get_configuration,
        LambdaFunction.update_configuration,
    )
    kept = ("KMSKeyArn", "LoggingConfig")

    def remember(self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        init(self, account_id, spec, *args, **kwargs)
        self.fill_config = {k: spec[k] for k in kept if spec.get(k)}

    def described(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = configuration(self, *args, **kwargs)
        out.update(getattr(self, "fill_config", {}))
        return out

    def updated(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        self.fill_config = {
            **getattr(self, "fill_config", {}),
            **{k: config_updates[k] for k in kept if k in config_updates},
        }
        return update(self, config_updates)

    LambdaFunction.__init__ = remember
    LambdaFunction.get_configuration = described
    LambdaFunction.update_configuration = updated


@fill
def iam_conditional_deny_needs_its_context() -> None:
    """A Deny whose condition keys are absent from the request must not deny (moto denies).

    moto evaluates conditions with an empty request context and treats an empty context as a match,
    so every bucket policy with ``Deny ... if aws:SecureTransport is false`` refuses all requests.
    As in IAM, a missing key makes a condition false, except for ``...IfExists`` and ``Null: true``.
    """
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    permitted = IAMPolicyStatement.is_action_permitted

    def holds_without(operator: str, expected: Any) -> bool:
        return operator.endswith("IfExists") or (operator == "Null" and str(expected).lower() == "true")

    def is_action_permitted(
        self: Any,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> Any:
        if self._statement.get("Effect") == "Deny":
            context = incoming_condition_values or {}
            for operator, keys in (self._statement.get("Condition") or {}).items():
                for key, expected in keys.items():
                    if key not in context and not holds_without(operator, expected):
                        return PermissionResult.NEUTRAL
        return permitted(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted


# Where the server listens; set by local.emulator.serve() so runners can call back into it.
SERVER = {"endpoint": "http://127.0.0.1:4566"}


@fill
def stepfunctions_execution_name() -> None:
    """StartExecution without a name leaves ``$$.Execution.Name`` null and the ARN ending in None."""
    import uuid

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    start = StepFunctionsParserBackend.start_execution

    def named(self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        return start(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    StepFunctionsParserBackend.start_execution = named


@fill
def lambda_runs_real_handlers() -> None:
    """Every invocation runs the deployed zip's handler: moto without Docker only echoes the payload
    (API and Step Functions calls) or tries Docker (SNS, SQS and other event sources)."""
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda_simple.models import LambdaSimpleBackend

    from local.runners import invoke_function

    def run(fn: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
        payload, failed = invoke_function(
            code=fn.code_bytes,
            handler=fn.handler,
            payload=body if isinstance(body, bytes) else (body or "").encode(),
            environment=dict(fn.environment_vars or {}),
            timeout=int(fn.timeout),
            memory_mb=int(fn.memory_size),
            function_name=fn.function_name,
            function_arn=fn.function_arn,
            endpoint=SERVER["endpoint"],
            region=fn.region,
        )
        if failed:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        return run(self.get_function(function_name, qualifier), body, headers, response_headers)

    LambdaFunction.invoke = run
    LambdaSimpleBackend.invoke = invoke


@fill
def batch_runs_stage_code() -> None:
    """A Batch job runs its stage's entrypoint (moto without Docker marks every job SUCCEEDED unseen)."""
    from moto.batch_simple.models import BatchSimpleBackend

    from local.runners import held, run_stage_job

    def finish(self: Any, include_start_attempt: bool, job: Any) -> None:
        self.backend._jobs[job.job_id] = job
        if held(job.job_definition.name):
            return  # in flight (moto moves it SUBMITTED -> ... -> RUNNING as it is described) until terminated
        job.job_started_at = datetime.datetime.now()
        job.log_stream_name = job._stream_name
        if include_start_attempt:
            job._start_attempt()
        definition = job.job_definition
        timeout = int((job.timeout or definition.timeout or {}).get("attemptDurationSeconds", 600))
        ok, reason = run_stage_job(
            job_definition_name=definition.name,
            container=definition.container_properties or {},
            parameters=dict(job.parameters),
            overrides=job.container_overrides,
            endpoint=SERVER["endpoint"],
            region=self.region_name,
            timeout=timeout,
        )
        job.job_stopped_reason = reason
        job._mark_stopped(success=ok)

    BatchSimpleBackend._mark_job_as_finished = finish


@fill
def sns_lambda_event_names_its_topic() -> None:
    """SNS hands a subscribed function ``TopicArn: arn:aws:sns:EXAMPLE`` and a fixed message id;
    AWS sends the publishing topic's ARN, the subscription's ARN and the message's id
    (https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html). budget_shutdown acts only on its
    budget topic's messages, so it needs the real ARN."""
    import threading

    from moto.awslambda.models import LambdaBackend
    from moto.sns.models import Subscription

    delivering = threading.local()
    publish, send = Subscription.publish, LambdaBackend.send_sns_message

    def publish_from_topic(self: Any, message: str, message_id: str, *args: Any, **kwargs: Any) -> None:
        delivering.names = (self.topic.arn, self.arn, message_id)
        try:
            publish(self, message, message_id, *args, **kwargs)
        finally:
            delivering.names = None

    def send_named(
        self: Any, function_name: str, message: str, subject: str | None = None, qualifier: Any = None
    ) -> None:
        names = getattr(delivering, "names", None)
        if not names:
            return send(self, function_name, message, subject=subject, qualifier=qualifier)
        topic, subscription, message_id = names
        sns = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic,
            "Subject": subject,
            "Message": message,
            "Timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SignatureVersion": "1",
            "MessageAttributes": {},
        }
        event = {
            "Records": [
                {"EventVersion": "1.0", "EventSubscriptionArn": subscription, "EventSource": "aws:sns", "Sns": sns}
            ]
        }
        function = self._lambdas.get_function_by_name_or_arn_with_qualifier(function_name, qualifier)
        function.invoke(json.dumps(event), {}, {})
        return None

    Subscription.publish = publish_from_topic
    LambdaBackend.send_sns_message = send_named


@fill
def batch_terminate_ends_the_job() -> None:
    """TerminateJob only flags a job that no Docker thread runs: it would stay RUNNING forever. AWS
    moves every unfinished job it terminates to FAILED with the given reason
    (https://docs.aws.amazon.com/batch/latest/APIReference/API_TerminateJob.html)."""
    from moto.batch.models import BatchBackend

    terminate = BatchBackend.terminate_job

    def terminate_and_end(self: Any, job_id: str, reason: str) -> None:
        terminate(self, job_id, reason)
        job = self.get_job_by_id(job_id)
        if job is not None and not job.job_stopped and not job.is_alive():
            job._mark_stopped(success=False)
            job.job_stopped_reason = reason

    BatchBackend.terminate_job = terminate_and_end


@fill
def budgets_update_budget() -> None:
    """UpdateBudget is missing. It replaces the budget like AWS: LastUpdatedTime moves and the
    calculatedSpend "drops to zero until AWS has new usage data"
    (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_UpdateBudget.html).
    A ``CalculatedSpend`` in the request is kept, which is how tests set the spend that AWS computes
    from billing data."""
    from moto.budgets.responses import BudgetsResponse

    def update_budget(self: Any) -> str:
        new = self._get_param("NewBudget")
        budget = self.backend.budgets[self._get_param("AccountId")][new["BudgetName"]]
        zero = {"ActualSpend": {"Amount": "0", "Unit": new.get("BudgetLimit", {}).get("Unit", "USD")}}
        budget.budget.update({"CalculatedSpend": zero, **new})
        budget.budget["LastUpdatedTime"] = datetime.datetime.now(datetime.UTC).timestamp()
        return json.dumps({})

    BudgetsResponse.update_budget = update_budget


@fill
def stepfunctions_batch_parameter_conversion() -> None:
    """The Batch integration hands PascalCase parameters (``JobName``) to boto unconverted.

    Step Functions takes ``JobName``/``ContainerOverrides``; the Batch API wants ``jobName``/
    ``containerOverrides``. Convert with the Batch API's own request and response shapes, as AWS does.
    """
    import botocore.session
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )

    model = botocore.session.get_session().get_service_model("batch")

    def operation(self: Any, service_action_name: str | None) -> Any:
        name = service_action_name or self.resource.api_action
        return model.operation_model("".join(part[:1].upper() + part[1:] for part in name.split("_")))

    def normalise_parameters(
        self: Any, parameters: dict, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        self._to_boto_request(parameters, operation(self, service_action_name).input_shape)

    def normalise_response(
        self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        self._from_boto_response(response, operation(self, service_action_name).output_shape)

    StateTaskServiceBatch._normalise_parameters = normalise_parameters
    StateTaskServiceBatch._normalise_response = normalise_response


@fill
def stepfunctions_second_execution() -> None:
    """StartExecution deep-copies the state machine with its past executions, whose worker threads
    hold locks: every execution after the first fails with "cannot pickle '_thread.RLock' object".
    The copy only needs the definition and settings, so it leaves the executions out."""
    import copy

    from moto.stepfunctions.models import StateMachine

    def deepcopy_without_executions(self: Any, memo: dict) -> Any:
        clone = copy.copy(self)
        memo[id(self)] = clone
        for name, value in vars(self).items():
            setattr(clone, name, [] if name == "executions" else copy.deepcopy(value, memo))
        return clone

    StateMachine.__deepcopy__ = deepcopy_without_executions


@fill
def iam_batch_service_linked_role_name() -> None:
    """CreateServiceLinkedRole for batch.amazonaws.com names the role AWSServiceRoleForbatch; AWS names
    it AWSServiceRoleForBatch, the ARN compute environments use."""
    from moto.iam import models

    models.SERVICE_NAME_CONVERSION["batch"] = "Batch"


@fill
def batch_default_service_linked_role() -> None:
    """CreateComputeEnvironment without serviceRole is refused ("ServiceRole is required"); AWS uses
    the account's AWSServiceRoleForBatch then and creates it when missing.
    https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateComputeEnvironment.html"""
    from moto.batch.models import BatchBackend
    from moto.iam.exceptions import NotFoundException as IAMNotFoundException

    iam_batch_service_linked_role_name()
    create = BatchBackend.create_compute_environment
    # Terraform creates both compute environments at once: one creates the role, the other uses it
    # (without the lock the second create failed with EntityAlreadyExists, as once in CI)
    linked = threading.Lock()

    def with_linked_role(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("service_role"):
            with linked:
                try:
                    role = self.iam_backend.get_role("AWSServiceRoleForBatch")
                except IAMNotFoundException:
                    role = self.iam_backend.create_service_linked_role("batch.amazonaws.com", "", "")
            kwargs["service_role"] = role.arn
        return create(self, *args, **kwargs)

    BatchBackend.create_compute_environment = with_linked_role


@fill
def batch_update_compute_resources() -> None:
    """UpdateComputeEnvironment ignores ``computeResources`` (vCPU limits): budget shutdown could not work.

    AWS keeps desiredvCpus within [minvCpus, maxvCpus] and does not scale a compute environment down
    by hand ("Manually scaling down compute environment is not supported",
    https://docs.aws.amazon.com/batch/latest/userguide/error-desired-vcpus-update.html): an update
    whose maxvCpus is below the environment's current desiredvCpus (instances still running) is
    refused, as ASFHyP3 hit (https://github.com/ASFHyP3/hyp3/issues/2965)."""
    from moto.batch.exceptions import ClientException
    from moto.batch.models import BatchBackend

    update = BatchBackend.update_compute_environment

    def resize(
        self: Any,
        compute_environment_name: str,
        state: str | None,
        compute_resources: Any | None,
        service_role: str | None,
    ) -> tuple[str, str]:
        environment = self.get_compute_environment(compute_environment_name)
        current = (environment.compute_resources or {}) if environment is not None else {}
        desired = int((compute_resources or {}).get("desiredvCpus", current.get("desiredvCpus", 0)))
        if compute_resources and "maxvCpus" in compute_resources and desired > int(compute_resources["maxvCpus"]):
            raise ClientException(
                "Manually scaling down compute environment is not supported. Disconnecting job queues from "
                "compute environment will cause it to scale-down to minvCpus."
            )
        result = update(self, compute_environment_name, state, compute_resources, service_role)
        if compute_resources and environment.compute_resources is not None:
            environment.compute_resources.update(
                {k: v for k, v in compute_resources.items() if k in {"minvCpus", "maxvCpus", "desiredvCpus"}}
            )
        return result

    BatchBackend.update_compute_environment = resize


@fill
def backend_names_listed_once() -> None:
    """moto finds a request's backend by name with a fresh listing of its package folder (a ``stat``
    per entry, ~180) on every request, inside the dispatcher's one lock: ~10 % of the server's CPU
    during a deploy (py-spy), and every other request waits meanwhile. The folder does not change
    while the server runs: list it once. (Not a gap in the API: a cost.)"""
    from moto import backends

    names = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: iter(names)


# How many answered mutating requests the emulator remembers for retries (a deploy sends ~3,000).
REPLAY_CAPACITY = 20_000


@fill
def sdk_retries_are_idempotent() -> None:
    """A retried request (same ``amz-sdk-invocation-id``) gets the first attempt's answer replayed.

    Root cause of the flaky local deploys: on a busy machine the provider's HTTP client sometimes
    abandons a connection right after moto answered (a packet capture shows the client's RST 0.2 ms
    after the 200 arrived, before it read the body), and the AWS SDK sends the same request again
    (same invocation id, ``attempt=2``). moto executed it twice: a second CreateFunction answered
    409 (the provider then retried that for 2 minutes), a second RevokeSecurityGroupEgress
    ``InvalidPermission.NotFound``, a second delete NoSuchEntity. AWS makes such retries safe; here
    every non-GET answer is kept by invocation id and replayed to its retry, so an operation runs
    at most once per SDK invocation. A retry that arrives while the first attempt is still being
    served waits for it.
    """
    import collections
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    answered: collections.OrderedDict[str, tuple[str, list, bytes]] = collections.OrderedDict()
    in_flight: dict[str, threading.Event] = {}
    lock = threading.Lock()
    dispatch = DomainDispatcherApplication.__call__

    def replay(answer: tuple[str, list, bytes], start_response: Any) -> list[bytes]:
        status, headers, body = answer
        start_response(status, [*headers, ("x-emulator-replayed", "true")])
        return [body]

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        invocation = environ.get("HTTP_AMZ_SDK_INVOCATION_ID")
        if not invocation or environ.get("REQUEST_METHOD") in {"GET", "HEAD"}:
            return dispatch(self, environ, start_response)
        while True:
            with lock:
                if invocation in answered:
                    return replay(answered[invocation], start_response)
                waiting = in_flight.get(invocation)
                if waiting is None:
                    in_flight[invocation] = threading.Event()
                    break
            waiting.wait(timeout=600)
        captured: dict[str, Any] = {}

        def remember(status: str, headers: list, exc_info: Any = None) -> Any:
            captured.update(status=status, headers=list(headers))
            return start_response(status, headers, exc_info)

        try:
            body = b"".join(dispatch(self, environ, remember))
            with lock:
                answered[invocation] = (captured["status"], captured["headers"], body)
                while len(answered) > REPLAY_CAPACITY:
                    answered.popitem(last=False)
            return [body]
        finally:
            with lock:
                in_flight.pop(invocation).set()

    DomainDispatcherApplication.__call__ = call


@fill
def stepfunctions_sdk_get_object_body_as_text() -> None:
    """The ``aws-sdk:s3:getObject`` integration leaves ``Body`` a stream (the state then fails with
    "'StreamingChecksumBody' object has no attribute 'strip'"); AWS returns the body as a string."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._eval_service_task

    def with_text_body(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        original(self, env, *args, **kwargs)
        response = env.stack[-1]
        if isinstance(response, dict) and hasattr(response.get("Body"), "read"):
            response["Body"] = response["Body"].read().decode("utf-8", errors="replace")

    StateTaskServiceAwsSdk._eval_service_task = with_text_body


@fill
def stepfunctions_distributed_map_fails_on_failed_items() -> None:
    """A Distributed Map whose child executions fail still succeeds (the failure tolerance is a
    TODO in this moto): AWS fails the Map with States.ExceedToleratedFailureThreshold once more
    items failed than ``ToleratedFailureCount``/``ToleratedFailurePercentage`` allow (default 0)."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = DistributedIterationComponent._map_run

    def failing(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        record = eval_input.map_run_record
        items = record.item_counter
        failed = items.failed.get() + items.timed_out.get()
        total = max(items.total.get(), 1)
        allowed = record.tolerated_failure_count or 0
        allowed_pct = record.tolerated_failure_percentage or 0.0
        if failed > allowed and failed * 100.0 / total > allowed_pct:
            error = StatesErrorNameType.StatesExceedToleratedFailureThreshold.to_name()
            cause = f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed"
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold),
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(error=error, cause=cause)
                    ),
                )
            )

    DistributedIterationComponent._map_run = failing


# S3's event names (moto's) -> the ``reason`` of an Object Created event (ev-events.html).
OBJECT_CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}
WHOLE_EVENT = ("aws.events.event", "aws.events.event.json")


def object_created_event(account_id: str, bucket: Any, event_name: str, key: Any) -> dict[str, Any]:
    """The Object Created event S3 sends to EventBridge, in AWS's documented shape
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html): ``etag`` in lower case,
    ``time`` ISO 8601, ``version-id`` only for a versioned object (moto sends ``eTag``, a Unix time
    and ``version-id`` null). The key is sent as stored (unproven: whether AWS URL-encodes it)."""
    import time
    import uuid

    obj: dict[str, Any] = {"key": key.name, "size": key.size, "etag": key.etag.strip('"')}
    if key.version_id and key.version_id != "null":
        obj["version-id"] = key.version_id
    obj["sequencer"] = f"{time.time_ns():018X}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account_id,
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            "reason": OBJECT_CREATED_REASONS[event_name],
        },
    }


def json_path(path: str, event: dict[str, Any]) -> tuple[bool, Any]:
    """(found, value) of an input path: EventBridge's dot notation with dashes and array indices
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html)."""
    import re

    value: Any = event
    for name, index in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path.removeprefix("$")):
        if index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        elif name and isinstance(value, dict) and name in value:
            value = value[name]
        else:
            return False, None
    return True, value


def transformed_input(template: str, paths: dict[str, str], event: dict[str, Any], rule: Any) -> str:
    """A target's input from its InputTransformer, as EventBridge documents it
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html):
    a variable as a JSON value is inserted as JSON (a string quoted); inside a quoted string it is
    inserted as text, unescaped, an object or array without its inner quotes; a path the event
    lacks creates no variable and inserts nothing; ``<aws.events.event>`` (the event without
    ``detail``) and ``<aws.events.event.json>`` (the whole event) only as a JSON value; the rule's
    ARN and name and the ingestion time are predefined. Raises ValueError where AWS fails the
    delivery: a whole-event variable inside a string, or a result that is not JSON."""
    values: dict[str, Any] = {
        "aws.events.rule-arn": rule.arn,
        "aws.events.rule-name": rule.name,
        "aws.events.event.ingestion-time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws.events.event": {k: v for k, v in event.items() if k != "detail"},
        "aws.events.event.json": event,
    }
    missing = set()
    for name, path in paths.items():
        found, value = json_path(path, event)
        if found:
            values[name] = value
        else:
            missing.add(name)
    out: list[str] = []
    at, in_string = 0, False
    while at < len(template):
        char = template[at]
        end = template.find(">", at) if char == "<" else -1
        name = template[at + 1 : end] if end > at else None
        if name in values or name in missing:
            value = values.get(name, "")
            if name in missing:
                text = ""
            elif not in_string:
                text = json.dumps(value, ensure_ascii=False)
            elif name in WHOLE_EVENT:
                raise ValueError(f"<{name}> inside a string: it can only be the value of a JSON field")
            elif isinstance(value, (dict, list)):
                text = json.dumps(value, ensure_ascii=False).replace('"', "")
            else:
                text = value if isinstance(value, str) else json.dumps(value)
            out.append(text)
            at = end + 1
            continue
        if in_string and char == "\\":
            out.append(template[at : at + 2])
            at += 2
            continue
        if char == '"':
            in_string = not in_string
        out.append(char)
        at += 1
    text = "".join(out)
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError as exc:
        raise ValueError(f"the transformed input is not JSON ({exc}): {text[:200]}") from exc


def target_input(target: dict[str, Any], event: dict[str, Any], rule: Any) -> str:
    """What EventBridge hands a target: ``Input`` as given, the ``InputPath`` selection, the
    ``InputTransformer``'s result, or the whole event
    (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html)."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        found, value = json_path(target["InputPath"], event)
        return json.dumps(value if found else None, ensure_ascii=False)
    transformer = target.get("InputTransformer")
    if transformer:
        return transformed_input(transformer["InputTemplate"], transformer.get("InputPathsMap") or {}, event, rule)
    return json.dumps(event, ensure_ascii=False)


def role_may_start(account_id: str, role_arn: str | None, machine_arn: str) -> str | None:
    """Why EventBridge could not start ``machine_arn`` with the target's role, or None. AWS assumes
    the role (its trust policy must admit events.amazonaws.com) and calls StartExecution with it:
    the role's policies must allow ``states:StartExecution`` on the machine and its permissions
    boundary too (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-identity-based.html,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.iam.models import iam_backends

    if not role_arn:
        return "the target has no RoleArn (a Step Functions target needs one)"
    iam = iam_backends[account_id]["global"]
    role = next((r for r in iam.roles.values() if r.arn == role_arn), None)
    if role is None:
        return f"role {role_arn} does not exist"
    trust = json.loads(role.assume_role_policy_document)
    statements = trust["Statement"] if isinstance(trust["Statement"], list) else [trust["Statement"]]

    def admits(s: dict[str, Any]) -> bool:
        services = (s.get("Principal") or {}).get("Service", []) if isinstance(s.get("Principal"), dict) else []
        actions = s.get("Action", [])
        source = ((s.get("Condition") or {}).get("StringEquals") or {}).get("aws:SourceAccount", account_id)
        return (
            s.get("Effect") == "Allow"
            and "events.amazonaws.com" in ([services] if isinstance(services, str) else services)
            and "sts:AssumeRole" in ([actions] if isinstance(actions, str) else actions)
            and account_id in ([source] if isinstance(source, str) else source)
        )

    if not any(admits(s) for s in statements):
        return f"role {role_arn} does not trust events.amazonaws.com of account {account_id}"
    documents = list(role.policies.values()) + [p for p in role.managed_policies.values()]
    results = [IAMPolicy(d).is_action_permitted("states:StartExecution", machine_arn) for d in documents]
    if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
        return f"role {role_arn} is not allowed states:StartExecution on {machine_arn}"
    if role.permissions_boundary_arn:
        boundary = iam.get_policy(role.permissions_boundary_arn)
        if IAMPolicy(boundary).is_action_permitted("states:StartExecution", machine_arn) != PermissionResult.PERMITTED:
            return f"the permissions boundary of {role_arn} does not allow states:StartExecution on {machine_arn}"
    return None


def lambda_may_invoke(function: Any, rule_arn: str) -> str | None:
    """Why EventBridge could not invoke ``function`` for the rule ``rule_arn``, or None: the
    function's resource policy must allow ``lambda:InvokeFunction`` to ``events.amazonaws.com``,
    for this rule's ARN when it names a source
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html)."""
    import fnmatch

    policy = getattr(function, "policy", None)
    statements = list(getattr(policy, "statements", None) or [])

    def admits(s: dict[str, Any]) -> bool:
        principal = s.get("Principal")
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        actions = s.get("Action", [])
        condition = s.get("Condition") or {}
        sources = [
            v
            for operator in ("ArnLike", "ArnEquals", "StringEquals", "StringLike")
            for k, v in (condition.get(operator) or {}).items()
            if k.lower() == "aws:sourcearn"
        ]
        return (
            s.get("Effect") == "Allow"
            and "events.amazonaws.com" in ([services] if isinstance(services, str) else services)
            and bool({"lambda:InvokeFunction", "lambda:*"} & set([actions] if isinstance(actions, str) else actions))
            and all(fnmatch.fnmatchcase(rule_arn, v) for v in sources)
        )

    if not any(admits(s) for s in statements):
        return f"the resource policy of {function.function_arn} does not let rule {rule_arn} invoke it"
    return None


def invoke_later(function: Any, event: dict[str, Any], told: Callable[..., None], rule: Any) -> None:
    """EventBridge invokes a Lambda target asynchronously (Invoke with InvocationType Event): the
    event's delivery does not wait for the handler. Lambda's own retries of a failed asynchronous
    invocation are not emulated: the failure is logged."""
    import threading

    def run() -> None:
        headers: dict[str, str] = {}
        try:
            function.invoke(json.dumps(event, ensure_ascii=False).encode(), {}, headers)
        except Exception as exc:
            told("eventbridge.failed", rule=rule.name, target=function.function_arn, error=str(exc))
            return
        told(
            "eventbridge.invoked" if "x-amz-function-error" not in headers else "eventbridge.function-error",
            rule=rule.name,
            target=function.function_arn,
        )

    threading.Thread(target=run, name=f"eventbridge-{rule.name}", daemon=True).start()


@fill
def s3_eventbridge_starts_state_machines() -> None:
    """S3's EventBridge notifications start no state machine: moto sends its own event shape to
    every rule of every bus without the target's input, and a Step Functions target raises (and is
    swallowed). Here an Object Created event, in AWS's shape, goes to the default bus (where S3
    sends it: https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html); every
    ENABLED rule whose pattern matches (moto's own matcher; moto's matches every event when a rule
    has none, a schedule) hands each target its input; a Lambda function is invoked asynchronously
    with it once its resource policy passes :func:`lambda_may_invoke` (moto delivers to no Lambda
    target); a state machine is started with it once its role passes :func:`role_may_start`.
    Delivery is once per event (AWS: at least once; lambda_src/start_run names the execution so a
    second delivery starts none). A failed delivery is logged and leaves the upload alone, as on
    AWS. Other targets and other events go to moto's own delivery."""
    import copy
    import sys

    from moto.awslambda.utils import get_backend as lambda_backend
    from moto.events.models import events_backends
    from moto.s3 import notifications
    from moto.stepfunctions.responses import get_backend

    original = notifications._send_event_bridge_message

    def told(event: str, **fields: str) -> None:
        print(json.dumps({"event": event, **fields}, ensure_ascii=False), file=sys.stderr, flush=True)

    def deliver(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        if event_name not in OBJECT_CREATED_REASONS:
            return original(account_id, bucket, event_name, key)
        event = object_created_event(account_id, bucket, event_name, key)
        bus = events_backends[account_id][bucket.region_name].event_buses.get("default")
        for rule in list(bus.rules.values()) if bus else []:
            pattern = rule.event_pattern.get_pattern()  # a schedule-only rule has none and matches no event
            if rule.state != "ENABLED" or not pattern or not rule.event_pattern.matches_event(event):
                continue
            for target in list(rule.targets):
                arn = target["Arn"]
                try:
                    if arn.split(":")[2:3] == ["lambda"]:
                        function = lambda_backend(account_id, arn.split(":")[3]).get_function(arn)
                        refused = lambda_may_invoke(function, rule.arn)
                        if refused:
                            raise PermissionError(refused)
                        invoke_later(function, json.loads(target_input(target, event, rule)), told, rule)
                        continue
                    if arn.split(":")[2:3] != ["states"]:
                        one = copy.copy(rule)
                        one.targets = [target]
                        one.send_to_targets(copy.deepcopy(event), transform_input=False)
                        continue
                    given = target_input(target, event, rule)
                    refused = role_may_start(account_id, target.get("RoleArn"), arn)
                    if refused:
                        raise PermissionError(refused)
                    states = get_backend(account_id, arn.split(":")[3])
                    execution = states.start_execution(arn, name=None, execution_input=given)
                    told("eventbridge.start", rule=rule.name, execution=execution.execution_arn)
                except Exception as exc:  # AWS counts a FailedInvocation; the upload stands
                    told("eventbridge.failed", rule=rule.name, target=arn, error=str(exc))
        return None

    notifications._send_event_bridge_message = deliver
