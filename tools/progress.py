"""Run a long command with a progress line and a full log under build/logs/.

Progress is what Terraform itself reports: resources completed (``Creation complete``,
``Modifications complete``, ``Destruction complete``) out of the ``Plan: N to add, M to change,
K to destroy`` total (or a total the caller knows, e.g. from a saved plan's review), resources
refreshed while planning, and the elapsed time. On a terminal it is one line redrawn in place; when
stderr is not a terminal (CI, a pipe) a plain line every ``PLAIN_EVERY`` seconds and no escape codes.
Everything the command prints goes to the log; its path is printed when the command fails.
Works for any command; imports nothing of the app.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "build" / "logs"
PLAIN_EVERY = 15.0
PLAN_TOTAL = re.compile(r"^Plan: (\d+) to add, (\d+) to change, (\d+) to destroy")
DONE = re.compile(r": (Creation|Modifications|Destruction) complete after ")
REFRESHED = re.compile(r": Refreshing state\.\.\.")


class Progress:
    """Counts Terraform's own lines; ``line()`` is what is shown."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label, self.total, self.done, self.refreshed = label, total, 0, 0
        self.started = time.monotonic()

    def feed(self, text: str) -> None:
        if match := PLAN_TOTAL.match(text):
            self.total = sum(int(n) for n in match.groups())
        elif DONE.search(text):
            self.done += 1
        elif REFRESHED.search(text):
            self.refreshed += 1

    def line(self) -> str:
        parts = []
        if self.refreshed:
            parts.append(f"{self.refreshed} refreshed")
        if self.done or self.total:
            parts.append(f"{self.done}/{self.total if self.total is not None else '?'} done")
        return f"{self.label}: {', '.join(parts) or 'running'} ({time.monotonic() - self.started:.0f} s)"


def log_path(name: str) -> Path:
    LOGS.mkdir(parents=True, exist_ok=True)
    return LOGS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def run(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    label: str,
    log: Path | None = None,
    total: int | None = None,
    show: bool = True,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` with progress and a log.

    Returns the same CompletedProcess (stdout and stderr captured); on an exit code not in ``ok``
    prints ``<label>: failed (exit N); full log: <path>`` to stderr (``plan -detailed-exitcode``
    exits 2 for "changes present": such callers pass ``ok=(0, 2)``).
    """
    log = log or log_path(re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-"))
    progress = Progress(label, total)
    tty = sys.stderr.isatty()
    out_lines: list[str] = []
    err_lines: list[str] = []
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(cmd)}  (in {cwd})\n")
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lock = threading.Lock()

        def drain_stderr() -> None:
            for text in proc.stderr:
                err_lines.append(text)
                with lock:
                    sink.write(text)

        stop = threading.Event()

        def tick() -> None:
            """Redraw the line every second on a terminal; a plain line every PLAIN_EVERY seconds elsewhere."""
            while not stop.wait(1.0 if tty else PLAIN_EVERY):
                if tty:
                    sys.stderr.write(f"\r\033[K{progress.line()}")
                    sys.stderr.flush()
                else:
                    print(progress.line(), file=sys.stderr, flush=True)

        reader = threading.Thread(target=drain_stderr, daemon=True)
        ticker = threading.Thread(target=tick, daemon=True)
        reader.start()
        if show:
            ticker.start()
        for text in proc.stdout:
            out_lines.append(text)
            with lock:
                sink.write(text)
            progress.feed(text)
        code = proc.wait()
        reader.join()
        stop.set()
        if show:
            ticker.join()
        sink.write(f"(exit {code})\n")
    if show and tty:
        sys.stderr.write("\r\033[K")
    if show:
        print(progress.line().replace("running", "finished"), file=sys.stderr, flush=True)
    if code not in ok:
        print(f"{label}: failed (exit {code}); full log: {log}", file=sys.stderr, flush=True)
    return subprocess.CompletedProcess(cmd, code, "".join(out_lines), "".join(err_lines))
