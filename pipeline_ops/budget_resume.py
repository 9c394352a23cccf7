"""Undo an automatic budget shutdown: ``make budget-resume ENV=<env>``.

Invokes the environment's budget_shutdown function with ``{"action": "resume"}``: it restores the
compute environments' saved vCPU limits, re-enables the job queues and turns the kill switch off.
The function name comes from the applied stack's outputs; credentials from the usual AWS chain
(for ``local`` the Makefile points them at the emulator).

    python -m pipeline_ops.budget_resume cdktf.out/stacks/pipeline-dev
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools import cli


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipeline_ops.budget_resume <stack-dir>", file=sys.stderr)
        return 2
    stack = Path(argv[0])
    if cli.missing_stack(stack):
        return 2
    proc = subprocess.run(
        ["terraform", "output", "-raw", "function_budget_shutdown"],
        cwd=stack,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        print(f"error: no function_budget_shutdown output in {stack}; is the environment deployed?", file=sys.stderr)
        return 2
    import boto3

    response = boto3.client("lambda").invoke(FunctionName=proc.stdout.strip(), Payload=b'{"action": "resume"}')
    result = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        print(f"error: resume failed: {result.get('errorMessage', result)}", file=sys.stderr)
        return 1
    print(f"budget-resume: {result}")
    return 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
