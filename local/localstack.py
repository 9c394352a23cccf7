"""LocalStack instead of moto (``LOCAL_EMULATOR=localstack make up-localstack``).

Needs a Docker engine and ``LOCALSTACK_AUTH_TOKEN`` (the current image requires one; Batch is a
paid feature there). The container is recorded by id in .state/emulator/localstack.cid and
stopped by that id.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from local.emulator import STATE_DIR

IMAGE = "localstack/localstack-pro:4.10.0"
CID_FILE = STATE_DIR / "localstack.cid"


def start() -> int:
    if not os.environ.get("LOCALSTACK_AUTH_TOKEN"):
        print(
            "error: LOCALSTACK_AUTH_TOKEN is not set; LocalStack's image needs it (or use the default moto emulator)",
            file=sys.stderr,
        )
        return 2
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("error: no Docker engine (`docker info` failed); use the default moto emulator", file=sys.stderr)
        return 2
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", "127.0.0.1:4566:4566", "-e", "LOCALSTACK_AUTH_TOKEN", IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        print(f"error: docker run failed: {proc.stderr.strip()}", file=sys.stderr)
        return 1
    CID_FILE.write_text(proc.stdout.strip())
    for _ in range(120):
        try:
            with urllib.request.urlopen("http://127.0.0.1:4566/_localstack/health", timeout=2):
                print(
                    f"emulator: LocalStack up (container {proc.stdout.strip()[:12]}); the local profile has no "
                    "Budgets there, so budget resources are not available with LocalStack"
                )
                return 0
        except OSError:
            time.sleep(1)
    print("error: LocalStack did not become healthy in 120 s", file=sys.stderr)
    return 1


def stop() -> int:
    cid = CID_FILE.read_text().strip() if CID_FILE.exists() else ""
    if cid:
        subprocess.run(["docker", "stop", cid], capture_output=True, check=False)
        CID_FILE.unlink()
    print("emulator: LocalStack stopped" if cid else "emulator: LocalStack was not running")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in {"start", "stop"}:
        print("usage: python -m local.localstack start|stop", file=sys.stderr)
        sys.exit(2)
    sys.exit(start() if command == "start" else stop())
