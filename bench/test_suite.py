"""Test-suite benchmark: wall time of ``make test`` (lint, shared synth, parallel pytest) and its slowest tests.

Target (issue: fast local loop): ``make test`` <= 240 s on this 2-core machine without dropping a check.

    python bench/test_suite.py [--top 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 240.0


def slowest(junit: Path, top: int) -> list[tuple[float, str]]:
    cases = ET.parse(junit).getroot().iter("testcase")  # noqa: S314 - the report pytest just wrote
    timed = [(float(c.get("time", 0)), f"{c.get('classname')}::{c.get('name')}") for c in cases]
    return sorted(timed, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    junit = REPO / "build" / "bench-test" / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "--no-print-directory", "test", f"PYTEST_ARGS=--junitxml={junit} -q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        print(f"make test failed (exit {proc.returncode}) after {wall:.1f}s")
        return 1
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if " passed" in ln), "")
    print(f"slowest {args.top} tests (seconds in the worker that ran them):")
    for seconds, name in slowest(junit, args.top):
        print(f"  {seconds:7.1f}s  {name}")
    print(f"pytest: {summary.strip('= ')}")
    verdict = "OK" if wall <= TARGET_S else "OVER TARGET"
    print(f"make test: {wall:.1f}s wall (target <= {TARGET_S:.0f}s) -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
