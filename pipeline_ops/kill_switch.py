"""The budget kill switch by hand, and the apply gate that keeps Terraform from undoing it.

    python -m pipeline_ops.kill_switch stop <stack-dir> --confirm <env> [--reason TEXT]   # make emergency-stop
    python -m pipeline_ops.kill_switch resume <stack-dir>                                 # make budget-resume
    python -m pipeline_ops.kill_switch check <stack-dir>                                  # before every apply

``stop`` and ``resume`` invoke the environment's budget_shutdown function (its own scoped role does
the work, the same code as the automatic shutdown); its name comes from the synthesized config, so
no ``terraform init`` of the stack is needed; ``stop`` takes its reason from ``--reason`` or the
REASON environment variable (``make emergency-stop REASON=...``, any quoting). ``check`` refuses
(exit 1, one line) while the kill switch is on: the queues' ``ENABLED`` and the compute
environments' vCPU limits are in the Terraform config, so any apply would silently start
everything again. ``make budget-resume`` first, then apply. The switch's name is read from the
synthesized config (output ``kill_switch_parameter``); a switch that does not exist
yet (first deploy) lets the apply pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from tools import cli
from tools.quotas import region_of

SWITCH_ON = {"on", "true", "1", "stop"}  # what GuardBudget also reads as on


def resolved_output(stack: Path, output: str) -> str:
    """An output of the synthesized config whose value is ``${<type>.<name>.<attribute>}``, resolved to
    that resource's literal attribute: no ``terraform init`` of the stack directory needed."""
    config = json.loads((stack / "cdk.tf.json").read_text())
    reference = config["output"][output]["value"]
    match = re.fullmatch(r"\$\{(\w+)\.([\w-]+)\.(\w+)\}", reference)
    return config["resource"][match.group(1)][match.group(2)][match.group(3)] if match else reference


def switch_name(stack: Path) -> str:
    """The kill switch parameter's name from the synthesized config."""
    return resolved_output(stack, "kill_switch_parameter")


def check(stack: Path, ssm: object) -> int:
    name = switch_name(stack)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]  # type: ignore[attr-defined]
    except ssm.exceptions.ParameterNotFound:  # type: ignore[attr-defined]
        return 0
    if value.strip().lower() in SWITCH_ON:
        env = stack.name.removeprefix("pipeline-")
        print(
            f"error: kill switch {name} is {value.strip()!r} (budget shutdown): an apply now would re-enable the job "
            f"queues and compute environments; run `make budget-resume ENV={env}` first, then apply",
            file=sys.stderr,
        )
        return 1
    return 0


def region(stack: Path) -> str | None:
    """The stack's own region (its provider's), so no AWS_DEFAULT_REGION is needed."""
    return region_of(json.loads((stack / "cdk.tf.json").read_text()))


def invoke(stack: Path, payload: dict) -> int:
    try:
        function = resolved_output(stack, "function_budget_shutdown")
    except KeyError:
        print(
            f"error: {stack}/cdk.tf.json has no budget_shutdown function; synthesize it (make synth)", file=sys.stderr
        )
        return 2
    import boto3

    client = boto3.client("lambda", region_name=region(stack))
    try:
        response = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    except client.exceptions.ResourceNotFoundException:
        env = stack.name.removeprefix("pipeline-")
        print(f"error: function {function} not found; is {env} deployed? (make deploy ENV={env})", file=sys.stderr)
        return 2
    result = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        print(f"error: {payload['action']} failed: {result.get('errorMessage', result)}", file=sys.stderr)
        return 1
    print(f"kill-switch {payload['action']}: {json.dumps(result, sort_keys=True)}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.kill_switch")
    parser.add_argument("command", choices=("stop", "resume", "check"))
    parser.add_argument("stack_dir", type=Path)
    parser.add_argument("--confirm", default="", help="stop: the environment's name, typed again")
    parser.add_argument(
        "--reason",
        default=os.environ.get("REASON", ""),
        help="stop: why (goes into every terminated job's reason; default: $REASON)",
    )
    args = parser.parse_args(argv)
    if cli.missing_stack(args.stack_dir):
        return 2
    if args.command == "check":
        import boto3

        return check(args.stack_dir, boto3.client("ssm", region_name=region(args.stack_dir)))
    if args.command == "stop":
        env = args.stack_dir.name.removeprefix("pipeline-")
        if args.confirm != env:
            print(
                f"error: an emergency stop terminates every job and execution of {env}; re-run with CONFIRM={env}",
                file=sys.stderr,
            )
            return 2
        return invoke(args.stack_dir, {"action": "shutdown", "reason": args.reason or "make emergency-stop"})
    return invoke(args.stack_dir, {"action": "resume"})


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
