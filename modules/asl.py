"""Reusable Amazon States Language building blocks (the seed's "workflow components").

Plain functions returning dicts: error handling (``retrying``, ``catching``), service tasks
(``lambda_task``, ``batch_job_task``, ``sns_publish_task``), parallel processing (``distributed_map``)
and conditional logic (``boolean_choice``). ``modules/workflow.py`` composes them; nothing here
knows the pipeline.
"""

from __future__ import annotations

from typing import Any

LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
BATCH_TRANSIENT = ["Batch.AWSBatchException", "Batch.ServerException", "Batch.TooManyRequestsException"]
# A Distributed Map raises only States.* errors of its own (a failed child is counted against the
# tolerated failures, then States.ExceedToleratedFailureThreshold); reading the item list from S3
# may fail transiently (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
MAP_TRANSIENT = ["States.ItemReaderFailed"]
SNS_TRANSIENT = ["SNS.SdkClientException", "SNS.InternalErrorException", "SNS.ThrottledException"]


def retrying(
    state: dict, errors: list[str], *, max_attempts: int, interval: int = 2, backoff: float = 2.0, max_delay: int = 60
) -> dict:
    """Exponential backoff with full jitter, bounded attempts."""
    rule = {
        "ErrorEquals": errors,
        "IntervalSeconds": interval,
        "MaxAttempts": max_attempts,
        "BackoffRate": backoff,
        "MaxDelaySeconds": max_delay,
        "JitterStrategy": "FULL",
    }
    return {**state, "Retry": [*state.get("Retry", []), rule]}


def catching(state: dict, next_state: str, *, result_path: str = "$.error") -> dict:
    return {**state, "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]}


def lambda_task(
    function_arn: str, payload: dict[str, Any], *, result_selector: dict[str, str], result_path: str, timeout: int
) -> dict:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
        "ResultSelector": result_selector,
        "ResultPath": result_path,
        "TimeoutSeconds": timeout,
    }


def batch_job_task(
    *,
    job_name: str,
    queue_arn: str,
    job_definition_arn: str,
    parameters: dict[str, Any],
    environment: list[dict[str, Any]],
    timeout: int,
) -> dict:
    """SubmitJob and wait for the job (``.sync``); the task's result is discarded."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {
            "JobName": job_name,
            "JobQueue": queue_arn,
            "JobDefinition": job_definition_arn,
            "Parameters": parameters,
            "ContainerOverrides": {"Environment": environment},
        },
        "ResultPath": None,
        "TimeoutSeconds": timeout,
    }


def sns_publish_task(topic_arn: str, *, subject: str, message_format: str, message_args: list[str]) -> dict:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {
            "TopicArn": topic_arn,
            "Subject": subject,
            "Message.$": f"States.Format('{message_format}', {', '.join(message_args)})",
        },
        "ResultPath": None,
    }


def distributed_map(
    *,
    bucket: str,
    key_path: str,
    item_selector: dict[str, Any],
    processor_start: str,
    processor_states: dict[str, dict],
    max_concurrency: int,
    results_bucket: str,
    results_prefix: str,
    tolerated_failure_percentage: float = 0,
) -> dict:
    """Run ``processor_states`` as one child execution per item of a JSON array in S3 (read by
    reference, never through the state), at most ``max_concurrency`` at a time. Children are
    STANDARD executions: EXPRESS ones cannot wait for a job (``.sync``). Up to
    ``tolerated_failure_percentage`` of the children may fail without failing the Map. The children's
    results (a failed one's error and cause included) go to S3 under ``results_prefix`` (ResultWriter):
    gathered in the state they could pass 256 KiB, States.DataLimitExceeded, which no Catch takes
    (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html)."""
    return {
        "Type": "Map",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket": bucket, "Key.$": key_path},
        },
        "ItemSelector": item_selector,
        "ResultWriter": {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": results_bucket, "Prefix": results_prefix},
        },
        "MaxConcurrency": max_concurrency,
        "ToleratedFailurePercentage": tolerated_failure_percentage,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": processor_start,
            "States": processor_states,
        },
        "ResultPath": None,
    }


def boolean_choice(variable: str, *, if_true: str, otherwise: str) -> dict:
    return {
        "Type": "Choice",
        "Choices": [{"Variable": variable, "BooleanEquals": True, "Next": if_true}],
        "Default": otherwise,
    }


def mark_failed(state_name: str, next_state: str) -> dict:
    """Record which state failed, for the failure notification."""
    return {"Type": "Pass", "Result": state_name, "ResultPath": "$.failed_state", "Next": next_state}


def then(state: dict, next_state: str | None) -> dict:
    """Chain ``state`` to ``next_state``, or end the (sub-)workflow there."""
    return {**state, "Next": next_state} if next_state else {**state, "End": True}


def reachable(definition: dict) -> set[str]:
    """Names of all states reachable from StartAt (Next, Default, Choices, Catch), top level."""
    states, seen, todo = definition["States"], set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
        todo += [t for t in targets if t]
    return seen
