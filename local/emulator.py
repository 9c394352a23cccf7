"""Launcher of the local AWS emulator: moto in server mode on 127.0.0.1, no Docker, no token.

    python -m local.emulator start [--port 4566] [--setup MODULE:FUNCTION]  # background, PID + log in .state/emulator/
    python -m local.emulator stop                  # by PID, never by name
    python -m local.emulator status
    python -m local.emulator serve [--port 4566] [--setup ...]   # foreground (what `start` runs)

``--setup`` names a function (no arguments) the server process calls before it serves: what the
workload run on the emulator needs beside it (this repository: ``pipeline_ops.models:ensure_emulator``,
the stand-in models the Batch runner's stages load). The launcher itself knows no pipeline.

moto is configured before anything is created (Lambda and Batch without Docker, the Step
Functions interpreter on, AWS-managed IAM policies loaded), and the API gaps that the AWS
provider hits on this moto version are filled by small named patches in ``local/moto_fills.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from local.paths import REPO, STATE_DIR
from tools import cli

PID_FILE = STATE_DIR / "moto.pid"
LOG_FILE = STATE_DIR / "moto.log"
DEFAULT_PORT = 4566
HOST = "127.0.0.1"

MOTO_CONFIG = {
    "batch": {"use_docker": False},
    "lambda": {"use_docker": False},
    "stepfunctions": {"execute_state_machine": True},
    "iam": {"load_aws_managed_policies": True},
}


class EmulatorError(Exception):
    """A one-line reason the emulator could not be started, stopped or reached."""


def port_from_env() -> int:
    """EMULATOR_ENDPOINT (the local profile's, set by the Makefile) or EMULATOR_PORT, else 4566."""
    url = os.environ.get("EMULATOR_ENDPOINT", "")
    tail = url.rsplit(":", 1)[-1].strip("/") if url.count(":") == 2 else ""
    if tail.isdigit():
        return int(tail)
    return int(os.environ.get("EMULATOR_PORT", DEFAULT_PORT))


def endpoint(port: int = DEFAULT_PORT) -> str:
    return f"http://{HOST}:{port}"


def free_port() -> int:
    """A loopback port nothing listens on now (for an emulator beside a developer's)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        # The dashboard page is cheap; /moto-api/data.json serialises every backend (seconds).
        with urllib.request.urlopen(f"{endpoint(port)}/moto-api/", timeout=timeout) as resp:  # noqa: S310
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def read_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def load_callable(spec: str) -> Callable[..., Any]:
    """``package.module:function`` -> that function; EmulatorError with one line if there is none."""
    module_name, _, name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name) if name else None
    except (ImportError, AttributeError, ValueError):
        function = None
    if not callable(function):
        raise EmulatorError(
            f"{spec!r} names no function; give MODULE:FUNCTION, e.g. pipeline_ops.models:ensure_emulator"
        )
    return function


def start(port: int = DEFAULT_PORT, wait_seconds: float = 60.0, setup: Sequence[str] = ()) -> int:
    """Start the server in the background unless ours already runs; return its PID."""
    for spec in setup:
        load_callable(spec)  # a bad name fails here, in one line, not in the server's log
    pid = read_pid()
    if pid and healthy(port):
        return pid
    if healthy(port):
        raise EmulatorError(
            f"port {port} already answers but not from our PID file; stop that server or set another port"
        )
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_FILE.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.emulator", "serve", "--port", str(port), *setup_args(setup)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"emulator exited with code {proc.returncode}; see {LOG_FILE}")
        if healthy(port, timeout=1.0):
            PID_FILE.write_text(str(proc.pid))
            return proc.pid
        time.sleep(0.2)
    proc.terminate()
    raise EmulatorError(f"emulator did not answer on {endpoint(port)} within {wait_seconds:.0f}s; see {LOG_FILE}")


def stop(wait_seconds: float = 15.0) -> bool:
    """Stop the server recorded in the PID file; True if one was running."""
    pid = read_pid()
    if pid is None:
        PID_FILE.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    return True


def setup_args(setup: Sequence[str]) -> list[str]:
    return [arg for spec in setup for arg in ("--setup", spec)]


def configure_moto(port: int = DEFAULT_PORT, setup: Sequence[str] = ()) -> None:
    """Apply MOTO_CONFIG and the gap fills in this process, then run the ``setup`` functions, before
    the server creates anything."""
    from moto.core.config import default_user_config

    for section, values in MOTO_CONFIG.items():
        default_user_config.setdefault(section, {}).update(values)  # type: ignore[misc]
    from local import moto_fills

    moto_fills.SERVER["endpoint"] = endpoint(port)
    moto_fills.apply_all()
    for spec in setup:
        load_callable(spec)()


def serve(port: int, setup: Sequence[str] = ()) -> None:
    os.environ.setdefault("MOTO_PORT", str(port))
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    configure_moto(port, setup)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"event": "emulator.start", "endpoint": endpoint(port), "config": MOTO_CONFIG}), flush=True)
    run_simple(HOST, port, app, threaded=True, use_reloader=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description="local AWS emulator (moto)")
    parser.add_argument("command", choices=["start", "stop", "status", "serve"])
    parser.add_argument("--port", type=int, default=port_from_env())
    parser.add_argument(
        "--setup", action="append", default=[], metavar="MODULE:FUNCTION", help="run in the server before it serves"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.port, args.setup)
        elif args.command == "start":
            pid = start(args.port, setup=args.setup)
            print(f"emulator: moto on {endpoint(args.port)} (pid {pid}, log {os.path.relpath(LOG_FILE)})")
        elif args.command == "stop":
            print("emulator: stopped" if stop() else "emulator: was not running")
        else:
            pid = read_pid()
            up = healthy(args.port)
            print(f"emulator: {'up' if up else 'down'} on {endpoint(args.port)}" + (f" (pid {pid})" if pid else ""))
            return 0 if up else 3
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
