"""Test-suite benchmark: wall time of ``make test`` (lint, shared synth, parallel pytest) and its slowest tests.

Target (issue: fast local loop): ``make test`` <= 240 s on this 2-core machine without dropping a check.
Also prints how busy the machine's cores were meanwhile (``/proc/stat``, every process: pytest
workers, terraform, the emulators, the local Lambda and Batch processes): busy core-seconds / cores
is the least wall time this work can take here, however well it is spread.

    python bench/test_suite.py [--top 10]
"""

from __future__ import annotations

import argparse
import os
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


def reference_cpu_seconds() -> float:
    """CPU seconds of a fixed single-thread loop: this host's speed varies (measured: 0.60 to 1.09 s
    for this loop on one day, often within one run), so a run's numbers are comparable only beside
    this figure."""
    started, total = time.process_time(), 0
    for number in range(10_000_000):
        total += number * number
    return time.process_time() - started


def busy_core_seconds() -> float:
    """Seconds the machine's cores have spent busy since boot (all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    junit = REPO / "build" / "bench-test" / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    reference_before = reference_cpu_seconds()
    started, busy_before = time.monotonic(), busy_core_seconds()
    proc = subprocess.run(
        ["make", "--no-print-directory", "test", f"PYTEST_ARGS=--junitxml={junit} -q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall, busy = time.monotonic() - started, busy_core_seconds() - busy_before
    reference = (reference_before, reference_cpu_seconds())
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        print(f"make test failed (exit {proc.returncode}) after {wall:.1f}s")
        return 1
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if " passed" in ln), "")
    print(f"slowest {args.top} tests (seconds in the worker that ran them):")
    for seconds, name in slowest(junit, args.top):
        print(f"  {seconds:7.1f}s  {name}")
    print(f"pytest: {summary.strip('= ')}")
    cores = os.cpu_count() or 1
    print(
        f"cpu: {busy:.0f} core-seconds busy on {cores} cores ({busy / (wall * cores):.0%} of what the run had): "
        f"the work alone needs >= {busy / cores:.0f}s here"
    )
    print(f"host speed: a fixed loop took {reference[0]:.2f} / {reference[1]:.2f} CPU s before / after (less: faster)")
    verdict = "OK" if wall <= TARGET_S else "OVER TARGET"
    print(f"make test: {wall:.1f}s wall (target <= {TARGET_S:.0f}s) -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
