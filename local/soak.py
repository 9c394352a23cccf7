"""``make soak-local``: deploy, run the sample, re-plan and destroy the local stack N times in a row.

    python -m local.soak --sample MODULE:FUNCTION [--emulator-setup MODULE:FUNCTION] [--cycles 10]
                         [--emulators both|shared|fresh] [--burn 2] [--tf-log]

``shared`` runs every cycle on one emulator; ``fresh`` starts a new emulator for each cycle;
``both`` (the default) runs the first half of the cycles on one emulator and the rest on fresh
ones. ``--burn K`` keeps K busy processes running beside it (a loaded laptop or CI machine is
where the flakes showed). Each cycle must: apply cleanly, run the sample to SUCCEEDED, re-plan
with no changes, destroy cleanly and leave nothing behind. Every phase's whole output (and, with
``--tf-log``, Terraform's debug log) is kept in ``build/soak/cycle-NN/``; a failure prints its
phase, the tail of its output and that folder. Exit 0 only if every cycle passed.

Pipeline-agnostic: the sample run (``--sample``, a function returning the execution's description,
``DescribeExecution``'s fields) and the emulator's set-up (``--emulator-setup``, see local.emulator)
are parameters; ``make soak-local`` passes this repository's. Imports no construct.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from local import deploy
from local.emulator import EmulatorError, free_port, load_callable, setup_args
from tools import cli

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "cdktf.out" / "stacks" / "pipeline-local"
PHASES = ("deploy", "run", "replan", "destroy", "leftovers")


class PhaseFailed(Exception):
    """One phase of a cycle did not do what it must; the message is one line."""


class Emulator:
    """One moto server with its own state folder and port, started through ``local.emulator``."""

    def __init__(self, state_dir: Path, port: int, setup: Sequence[str] = ()) -> None:
        self.state_dir = state_dir
        self.port = port  # one port for the whole soak: the stack's provider override names it
        self.setup = setup

    @property
    def env(self) -> dict[str, str]:
        return {"EMULATOR_STATE_DIR": str(self.state_dir), "EMULATOR_ENDPOINT": f"http://127.0.0.1:{self.port}"}

    def _call(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "local.emulator", *args],
            cwd=REPO,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        proc = self._call("start", "--port", str(self.port), *setup_args(self.setup))
        if proc.returncode:
            raise SystemExit(f"error: the emulator did not start: {proc.stderr.strip()}")
        os.environ.update(self.env)

    def stop(self) -> None:
        self._call("stop")


@contextlib.contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` processes that keep one core each busy until the soak ends."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL) for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def prepare_stack(source: Path, work: Path) -> Path:
    """A copy of the synthesized stack whose local state lives in ``work`` (the user's state is untouched)."""
    if not (source / "cdk.tf.json").exists():
        raise SystemExit(f"error: {source}/cdk.tf.json not found; run `make synth-local` first")
    stack = work / "pipeline-local"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, stack, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "localstack_*"))
    config = json.loads((stack / "cdk.tf.json").read_text())
    config["terraform"]["backend"]["local"]["path"] = str(work / "terraform.tfstate")
    (stack / "cdk.tf.json").write_text(json.dumps(config))
    return stack


def run_phase(name: str, action: Callable[[], None], folder: Path) -> float:
    """Run one phase with its output in ``folder/<name>.log``; return its wall time."""
    log = folder / f"{name}.log"
    deploy.LOG["path"] = log
    if os.environ.get("SOAK_TF_LOG"):
        os.environ.update(TF_LOG="DEBUG", TF_LOG_PATH=str(folder / f"{name}.tf-debug.log"))
    buffer = io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            action()
    finally:
        deploy.LOG["path"] = None
        with log.open("a") as out:
            out.write(buffer.getvalue())
    return time.monotonic() - started


def phases(stack: Path, sample_run: Callable[[], dict]) -> dict[str, Callable[[], None]]:
    def apply() -> None:
        if deploy.apply(stack) != 0:
            raise PhaseFailed("terraform apply failed")

    def sample() -> None:
        described = sample_run()
        if described["status"] != "SUCCEEDED":
            raise PhaseFailed(f"the sample execution ended {described['status']}: {described.get('cause', '')[:200]}")

    def replan() -> None:
        code = deploy.plan(stack)
        if code != 0:
            raise PhaseFailed("the re-plan after apply shows changes" if code == 2 else "terraform plan failed")

    def destroy() -> None:
        if deploy.destroy(stack) != 0:
            raise PhaseFailed("terraform destroy failed")

    def leftovers() -> None:
        from local.leftovers import leftovers as listed
        from local.status import clients

        found = listed(clients())
        if found:
            raise PhaseFailed(f"{len(found)} leftovers after destroy: {', '.join(found[:5])}")

    return dict(zip(PHASES, (apply, sample, replan, destroy, leftovers), strict=True))


def tail(log: Path, lines: int = 25) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [ln for ln in text if "Error" in ln or "error" in ln]
    return "\n".join((errors or text)[-lines:])


def cycle(
    number: int, kind: str, emulator: Emulator, stack: Path, out: Path, sample_run: Callable[[], dict]
) -> tuple[bool, dict[str, float]]:
    folder = out / f"cycle-{number:02d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for state in stack.parent.glob("terraform.tfstate*"):  # a cycle starts from nothing deployed
        state.unlink()
    times: dict[str, float] = {}
    steps = phases(stack, sample_run)
    for name, action in steps.items():
        try:
            times[name] = run_phase(name, action, folder)
        except Exception as exc:  # PhaseFailed or anything else a phase raises: a failed cycle, with its log
            print(f"cycle {number:02d} [{kind}] FAILED in {name}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            print(f"  log: {os.path.relpath(folder / (name + '.log'), REPO)}")
            print("  " + tail(folder / f"{name}.log").replace("\n", "\n  "))
            if name not in {"destroy", "leftovers"}:
                with contextlib.suppress(Exception):
                    run_phase("cleanup-destroy", steps["destroy"], folder)
            shutil.copyfile(emulator.state_dir / "moto.log", folder / "moto.log")
            return False, times
    line = "  ".join(f"{name} {seconds:5.1f}s" for name, seconds in times.items())
    print(f"cycle {number:02d} [{kind}] ok  {line}  total {sum(times.values()):6.1f}s", flush=True)
    return True, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.soak", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sample", required=True, metavar="MODULE:FUNCTION", help="runs the sample once, returns its description"
    )
    parser.add_argument(
        "--emulator-setup", action="append", default=[], metavar="MODULE:FUNCTION", help="see local.emulator --setup"
    )
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--emulators", choices=["both", "shared", "fresh"], default="both")
    parser.add_argument("--burn", type=int, default=0, help="busy processes to run beside the soak")
    parser.add_argument("--tf-log", action="store_true", help="keep TF_LOG=DEBUG output of every phase")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "soak")
    args = parser.parse_args(argv)
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
    try:
        sample_run = load_callable(args.sample)
    except EmulatorError as exc:
        parser.error(f"--sample: {exc}")
    if args.tf_log:
        os.environ["SOAK_TF_LOG"] = "1"
    shared_count = {"both": (args.cycles + 1) // 2, "shared": args.cycles, "fresh": 0}[args.emulators]
    args.out.mkdir(parents=True, exist_ok=True)
    stack = prepare_stack(SOURCE, args.out / "work")
    port = free_port()
    print(
        f"soak: {args.cycles} cycles ({shared_count} on one emulator, {args.cycles - shared_count} on fresh ones), "
        f"{args.burn} busy processes beside it; emulator port {port}; logs in {os.path.relpath(args.out, REPO)}/",
        flush=True,
    )
    passed, totals = 0, []
    with burners(args.burn):
        shared = Emulator(args.out / "emulator-shared", port, args.emulator_setup) if shared_count else None
        if shared:
            shared.start()
        try:
            for number in range(1, args.cycles + 1):
                fresh = number > shared_count
                if fresh and shared is not None:  # the fresh emulators take over the soak's port
                    shared.stop()
                    shared = None
                emulator = Emulator(args.out / f"emulator-{number:02d}", port, args.emulator_setup) if fresh else shared
                assert emulator is not None
                if fresh:
                    emulator.start()
                try:
                    ok, times = cycle(number, "fresh" if fresh else "shared", emulator, stack, args.out, sample_run)
                finally:
                    if fresh:
                        emulator.stop()
                passed += ok
                if ok:
                    totals.append(sum(times.values()))
                elif not fresh and shared is not None:
                    shared.stop()  # a failed cycle may have left state behind: go on with a clean one
                    shared = Emulator(args.out / f"emulator-shared-{number:02d}", port, args.emulator_setup)
                    shared.start()
        finally:
            if shared:
                shared.stop()
    mean = f", mean cycle {sum(totals) / len(totals):.1f}s" if totals else ""
    print(f"soak: {passed} of {args.cycles} cycles passed{mean}")
    return 0 if passed == args.cycles else 1


if __name__ == "__main__":
    cli.run(main)
