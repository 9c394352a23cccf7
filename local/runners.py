"""Run the real code behind the emulator's Lambda functions and Batch jobs.

moto without Docker only echoes a Lambda payload and marks Batch jobs SUCCEEDED without running
anything. Here a Lambda invocation unpacks the function's deployed zip and runs its handler in a
child process (its environment, its time-out, a Lambda-like context); a Batch job runs the
stage's entrypoint from ``images/<stage>/`` in a child process with the job definition's
environment and command. Both talk back to the emulator. Imports no construct.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from local.paths import STATE_DIR

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".state" / "emulator" / "functions"
BOOTSTRAP = Path(__file__).resolve().parent / "lambda_bootstrap.py"
MODELS = REPO / ".state" / "emulator" / "models"
FAILURES_FILE = STATE_DIR / "batch-failures.json"
HOLDS_FILE = STATE_DIR / "batch-holds.json"
# Process environment a child may inherit; everything else comes from the function or job.
INHERITED = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")


def emulator_aws_env(endpoint: str, region: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # noqa: S106
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def unpack(code: bytes) -> Path:
    """The zip's folder under .state/emulator/functions, keyed by the zip's hash."""
    target = CACHE / hashlib.sha256(code).hexdigest()[:20]
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=CACHE))
        zipfile.ZipFile(io.BytesIO(code)).extractall(staging)
        try:
            staging.rename(target)
        except OSError:  # a concurrent invocation of the same zip unpacked it first: same bytes
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return target


def invoke_function(
    *,
    code: bytes,
    handler: str,
    payload: bytes,
    environment: dict[str, str],
    timeout: int,
    memory_mb: int,
    function_name: str,
    function_arn: str,
    endpoint: str,
    region: str,
) -> tuple[bytes, bool]:
    """Run the handler once; returns (response payload, whether it is a function error)."""
    folder = unpack(code)
    env = emulator_aws_env(endpoint, region)
    env.update(environment)
    env.update(
        PYTHONPATH=str(folder),
        LAMBDA_TASK_ROOT=str(folder),
        AWS_LAMBDA_FUNCTION_NAME=function_name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory_mb),
        LOCAL_FUNCTION_TIMEOUT=str(timeout),
        LOCAL_FUNCTION_ARN=function_arn,
        _HANDLER=handler,
    )
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as result:
        result_path = result.name
    try:
        proc = subprocess.run(
            [sys.executable, str(BOOTSTRAP), handler, result_path],
            input=payload or b"{}",
            cwd=folder,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        sys.stdout.write(proc.stdout.decode(errors="replace"))
        sys.stdout.write(proc.stderr.decode(errors="replace"))
        text = Path(result_path).read_text() if os.path.getsize(result_path) else ""
        if not text:
            return _error(
                f"RequestId: local Error: Runtime exited with code {proc.returncode}", "Runtime.ExitError"
            ), True
        outcome = json.loads(text)
    except subprocess.TimeoutExpired as exc:
        # What the handler logged before it was stopped (and the bootstrap's stack dump) is the
        # only evidence of where it hung: keep it in the emulator's log, as CloudWatch keeps it.
        for output in (exc.stdout, exc.stderr):
            sys.stdout.write((output or b"").decode(errors="replace"))
        return _error(f"Task timed out after {timeout:.2f} seconds", "Sandbox.Timedout"), True
    finally:
        os.unlink(result_path)
    if "result" in outcome:
        return json.dumps(outcome["result"]).encode(), False
    return json.dumps(outcome).encode(), True


def _error(message: str, kind: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": kind}).encode()


def forced_failure(job_definition_name: str, parameters: dict[str, str] | None = None) -> bool:
    """Tests make jobs fail by listing them in .state/emulator/batch-failures.json: a job definition
    name fails all its jobs, ``<name>:<parameter>=<value>`` only those given that parameter (one shard)."""
    try:
        names = json.loads(FAILURES_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return False
    for entry in names:
        name, _, condition = entry.partition(":")
        key, _, value = condition.partition("=")
        if name == job_definition_name and (not condition or (parameters or {}).get(key) == value):
            return True
    return False


def held(job_definition_name: str) -> bool:
    """Tests keep jobs of one definition in flight (never placed, until terminated) by listing it in
    .state/emulator/batch-holds.json: what a job waiting for an instance looks like."""
    try:
        names = json.loads(HOLDS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return False
    return job_definition_name in names


def run_stage_job(
    *,
    job_definition_name: str,
    container: dict[str, Any],
    parameters: dict[str, str],
    overrides: dict[str, Any],
    endpoint: str,
    region: str,
    timeout: int,
) -> tuple[bool, str]:
    """Run the job's stage entrypoint; returns (succeeded, status reason)."""
    if forced_failure(job_definition_name, parameters):
        return False, "Essential container in task exited (forced failure, batch-failures.json)"
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    env.update({e["name"]: e["value"] for e in (overrides or {}).get("environment", [])})
    stage = env.get("STAGE", "")
    entrypoint = REPO / "images" / stage / "stage.py"
    if not entrypoint.exists():
        return False, f"no local runner for job definition {job_definition_name} (images/{stage}/stage.py)"
    args = [parameters.get(arg[5:], arg) if arg.startswith("Ref::") else arg for arg in container.get("command", [])]
    child = emulator_aws_env(endpoint, region)
    child.update(env)
    child.update(PYTHONPATH=f"{REPO / 'images' / 'runtime'}", MODEL_DIR=str(MODELS / stage))
    try:
        proc = subprocess.run(
            [sys.executable, str(entrypoint), *args], env=child, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False, f"Job attempt duration exceeded timeout ({timeout}s)"
    sys.stdout.write(proc.stdout.decode(errors="replace"))
    sys.stdout.write(proc.stderr.decode(errors="replace"))
    if proc.returncode == 0:
        return True, "Essential container in task exited"
    return False, f"Essential container in task exited with code {proc.returncode}"
