"""Local deployment benchmark: cold ``make deploy-local``, a re-plan, and ``make destroy-local``.

Starts from the emulator down and nothing deployed (after ``make setup``), as a user would.
Targets (issue: local deployment): cold deploy <= 90 s, re-plan <= 15 s, destroy <= 90 s.

    python bench/deploy_local.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"deploy-local": 90.0, "re-plan": 15.0, "destroy-local": 90.0}
REPLAN = [sys.executable, "-m", "local.deploy", "plan", "cdktf.out/stacks/pipeline-local"]


def timed(target: str) -> tuple[float, str]:
    """``make <target>``; the re-plan is terraform's plan of the applied stack alone (no synth)."""
    command = REPLAN if target == "re-plan" else ["make", "--no-print-directory", target]
    env = None
    if target == "re-plan":
        endpoint = subprocess.run(
            [sys.executable, "-m", "conf", "local", "emulator_endpoint"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = {**os.environ, "EMULATOR_ENDPOINT": endpoint}
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"make {target} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def main() -> int:
    subprocess.run(["make", "--no-print-directory", "destroy-local"], cwd=REPO, capture_output=True)
    subprocess.run(["make", "--no-print-directory", "synth-local"], cwd=REPO, capture_output=True, check=True)
    results = {}
    for target in TARGETS:
        seconds, output = timed(target)
        results[target] = seconds
        if target != "re-plan":
            slow = re.findall(r"^\s+(\d+)s\s+(\S+)$", output, re.MULTILINE)
            print(f"five slowest resources of {target}:")
            for secs, address in slow[:5]:
                print(f"  {secs:>4}s  {address}")
    for target, seconds in results.items():
        verdict = "OK" if seconds <= TARGETS[target] else "OVER TARGET"
        print(f"{target:<14} {seconds:6.1f}s  (target <= {TARGETS[target]:.0f}s)  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
