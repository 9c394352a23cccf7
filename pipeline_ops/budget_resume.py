"""Undo a budget shutdown or an emergency stop: ``make budget-resume ENV=<env>``.

Invokes the environment's budget_shutdown function with ``{"action": "resume"}``: it restores the
compute environments' saved vCPU limits, re-enables the job queues and turns the kill switch off
(pipeline_ops/kill_switch.py). Credentials from the usual AWS chain (for ``local`` the Makefile
points them at the emulator).

    python -m pipeline_ops.budget_resume cdktf.out/stacks/pipeline-dev
"""

from __future__ import annotations

import sys

from pipeline_ops import kill_switch
from tools import cli


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipeline_ops.budget_resume <stack-dir>", file=sys.stderr)
        return 2
    return kill_switch.main(["resume", argv[0]])


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
