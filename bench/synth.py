"""Synth benchmark: wall time, peak Python memory and jsii kernel calls of synthesizing every environment.

Compares ``main.py`` (all environments), run with the interpreter flags of ``cdktf.json``'s app
command (``-O``: jsii's Python-side type checks off, as ``cdktf synth`` runs it), with a floor that
only starts the jsii kernel and loads the AWS provider assembly under the same flags, the least any
synth must do. "cold" runs with an empty jsii package cache, "warm" with a populated one. Target:
warm synth <= 1.3x warm floor, peak RSS of the Python process <= 100 MB. Last, the cost of
``make synth`` when no input changed (<= 0.5 s). With ``NODE_COMPILE_CACHE`` set (Node 22's
on-disk cache of compiled modules; the Makefile leaves it unset, see docs/benchmarks.md), floor and
synth are measured again without it, in the same run, and the ratio printed.

    python bench/synth.py [--runs 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEASURE = """
import resource, runpy, sys, time
t0 = time.perf_counter()
from jsii._kernel.providers import process
calls = [0]
send = process._NodeProcess.send
def counted(self, request, response_type):
    calls[0] += 1
    return send(self, request, response_type)
process._NodeProcess.send = counted
sys.argv = [{script!r}]
try:
    runpy.run_path({script!r}, run_name="__main__") if {script!r} else exec({code!r})
except SystemExit as exc:
    if exc.code:
        raise
print("BENCH", time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, calls[0])
"""
FLOOR = "import modules, cdktf_cdktf_provider_aws._jsii"


@functools.cache
def app_flags(cdktf_json: Path = REPO / "cdktf.json") -> tuple[str, ...]:
    """The Python flags of the app command (``<python> [flags] main.py``), e.g. ``("-O",)``; read once per bench."""
    words = shlex.split(json.loads(cdktf_json.read_text())["app"])
    if len(words) < 2 or words[-1] != "main.py" or not all(w.startswith("-") for w in words[1:-1]):
        shape = "'<python> [flags] main.py', the shape bench/synth.py reads"
        raise SystemExit(f"{cdktf_json}: app {' '.join(words)!r} is not {shape}")
    return tuple(words[1:-1])


def run_once(
    script: str, code: str, cache_root: str, outdir: str, env_drop: tuple[str, ...] = ()
) -> tuple[float, float, int]:
    env = dict(os.environ, JSII_RUNTIME_PACKAGE_CACHE_ROOT=cache_root, CDKTF_OUTDIR=outdir)
    for name in env_drop:
        env.pop(name, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as tools.synth runs the app: its bytecode is cached
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *app_flags(), "-c", MEASURE.format(script=script, code=code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"benchmark run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    _, _, rss_kb, calls = line.split()
    return wall, int(rss_kb) / 1024, int(calls)


def measure(label: str, script: str, code: str, runs: int, env_drop: tuple[str, ...] = ()) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cold_root, tempfile.TemporaryDirectory() as outdir:
        out["cold_s"], _, _ = run_once(script, code, cold_root, outdir, env_drop)
        warm = [run_once(script, code, cold_root, outdir, env_drop) for _ in range(runs)]
    out["warm_s"] = statistics.median(w for w, _, _ in warm)
    out["peak_mb"] = max(m for _, m, _ in warm)
    out["kernel_calls"] = warm[-1][2]
    print(
        f"{label:<8} cold {out['cold_s']:6.2f}s  warm {out['warm_s']:6.2f}s (median of {runs})  "
        f"peak python RSS {out['peak_mb']:6.1f} MB  jsii kernel calls {out['kernel_calls']}",
        flush=True,
    )
    return out


def no_change(runs: int) -> float:
    """``python -m tools.synth`` on an output that is current: what ``make synth`` costs when nothing changed."""
    with tempfile.TemporaryDirectory() as outdir:
        command = [sys.executable, "-m", "tools.synth", "--output", outdir]
        subprocess.run(command, cwd=REPO, capture_output=True, check=True)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - started)
            if "up to date" not in proc.stdout:
                raise SystemExit(f"no-change synth re-synthesized: {proc.stdout}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    print(f"python flags of the app command (cdktf.json): {' '.join(app_flags()) or 'none'}")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"node {node}; NODE_COMPILE_CACHE={os.environ.get('NODE_COMPILE_CACHE', '(unset)')}")
    if os.environ.get("NODE_COMPILE_CACHE"):
        plain = ("NODE_COMPILE_CACHE",)
        floor_plain = measure("floor-nc", "", FLOOR, args.runs, plain)
        synth_plain = measure("synth-nc", str(REPO / "main.py"), "", args.runs, plain)
    floor = measure("floor", "", FLOOR, args.runs)
    synth = measure("synth", str(REPO / "main.py"), "", args.runs)
    ratio = synth["warm_s"] / floor["warm_s"]
    verdict = "OK" if ratio <= 1.3 and synth["peak_mb"] <= 100 else "OVER TARGET"
    print(
        f"ratio warm synth / warm floor = {ratio:.2f} (target <= 1.30); peak {synth['peak_mb']:.1f} MB "
        f"(target <= 100) -> {verdict}"
    )
    if os.environ.get("NODE_COMPILE_CACHE"):
        print(
            f"compile cache: warm floor {floor['warm_s']:.2f}s vs {floor_plain['warm_s']:.2f}s without "
            f"(x{floor['warm_s'] / floor_plain['warm_s']:.2f}), warm synth {synth['warm_s']:.2f}s vs "
            f"{synth_plain['warm_s']:.2f}s (x{synth['warm_s'] / synth_plain['warm_s']:.2f})"
        )
    unchanged = no_change(args.runs)
    print(f"no-change synth (make synth, inputs unchanged) {unchanged:.2f}s (target <= 0.50)")
    if args.json:
        Path(args.json).write_text(json.dumps({"floor": floor, "synth": synth, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
