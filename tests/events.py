"""The event a workflow state sends its Lambda function, for handler tests.

Built from the synthesized state machine's Payload template for that state and the context object
Step Functions documents (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html:
``$$.Execution.Name`` the execution's name, ``$$.Execution.StartTime`` an ISO 8601 string,
``$$.Execution.Input`` the execution's input). The Lambda invoke integration sends the resolved
``Payload`` as the function's event
(https://docs.aws.amazon.com/step-functions/latest/dg/connect-lambda.html).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.conftest import SynthResult

REGION = "eu-north-1"
EXECUTION = "3f1c2a9e-0d5b-4c1e-9a7f-2b6d8e4f1a30"
# The context object's fields the Payloads read, as the documentation's example gives them
# (StartTime and Input are set per event).
CONTEXT = {
    "Execution": {
        "Id": f"arn:aws:states:{REGION}:123456789012:execution:odins-ravne-dev-pipeline:{EXECUTION}",
        "Name": EXECUTION,
    }
}


def resolve(path: str, state: dict, context: dict) -> object:
    """A JSONPath of the Payload templates (``$.a.b``, ``$$.Execution.X``) against state/context."""
    value: object = context if path.startswith("$$.") else state
    for part in path.removeprefix("$$.").removeprefix("$.").split("."):
        value = value[part]  # type: ignore[index]
    return value


def event_for(
    synth: SynthResult,
    state_name: str,
    state: dict,
    execution_input: dict | None = None,
    *,
    execution: str = EXECUTION,
) -> dict:
    """What the workflow's state sends its function for this execution state (dev's definition);
    the execution's input is ``execution_input`` (default: just the manifest, as a started-by-hand
    run gives it), its name ``execution``."""
    document = json.loads(synth.only("dev", "aws_sfn_state_machine")["definition"])
    payload = document["States"][state_name]["Parameters"]["Payload"]
    given = execution_input if execution_input is not None else {"manifest": state["manifest"]}
    started = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # just started
    arn = CONTEXT["Execution"]["Id"].rsplit(":", 1)[0]
    context = {"Execution": {"Id": f"{arn}:{execution}", "Name": execution, "Input": given, "StartTime": started}}
    # A field ending in ".$" is a path; any other is sent as written (as ``"mode": "list_missing"``).
    return {
        key.removesuffix(".$"): resolve(value, state, context) if key.endswith(".$") else value
        for key, value in payload.items()
    }
