"""One-line errors for every command a make target runs, and the checks make runs before them.

    python -m tools.cli check-env <env> [--reachable]   # exit 2 with one line if not usable

Every ``python -m local.X`` / ``python -m tools.X`` entry point ends in ``cli.run(main, ...)``:
an expected failure (emulator down, no or refused AWS credentials, a missing file, a bad
profile, a command that timed out) becomes ``error: <what is wrong>; <what to run>`` on stderr
and exit 2, never a traceback. Anything else is a bug and keeps its traceback.

Generic: imports nothing of this repository at module level (``conf`` only in ``check-env``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

REFUSED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}
CREDENTIALS_HINT = (
    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, for the env's account "
    "(CI assumes the role `python -m conf <env> ci_plan_role_arn` names)"
)


def _loopback(url: str) -> bool:
    return urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}


def explain(exc: BaseException) -> str | None:
    """The one line for an expected failure, or None for a bug (which keeps its traceback)."""
    name = type(exc).__name__
    if type(exc).__module__.startswith("botocore"):
        if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}:
            url = str(getattr(exc, "kwargs", {}).get("endpoint_url", ""))
            if _loopback(url):
                return f"cannot reach the emulator at {url}; start it with `make up-localstack` or `make deploy-local`"
            return f"cannot reach {url or 'the AWS endpoint'} ({name}); check the network and AWS_ENDPOINT_URL"
        if name in {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
            return f"no usable AWS credentials ({name}); {CREDENTIALS_HINT}"
        if name == "NoRegionError":
            return "no AWS region; set AWS_DEFAULT_REGION (the profile's `region`)"
        if name == "ClientError":
            error = getattr(exc, "response", {}).get("Error", {})
            code = error.get("Code", "")
            if code in REFUSED:
                operation = getattr(exc, "operation_name", "the call")
                return f"AWS refused {operation}: {code}: {error.get('Message', '')}; {CREDENTIALS_HINT}"
    if name == "ProfileError":
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        missing = exc.filename or str(exc)
        hint = "run `make synth`" if "cdktf.out" in str(missing) else "check the path"
        if exc.filename and os.sep not in str(exc.filename) and not os.path.exists(str(exc.filename)):
            hint = f"install `{exc.filename}` or run `make setup`"
        return f"{missing} not found; {hint}"
    if isinstance(exc, subprocess.TimeoutExpired):
        command = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        return f"`{command}` did not finish within {exc.timeout:.0f}s"
    if isinstance(exc, subprocess.CalledProcessError):
        command = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        return f"`{command}` failed with exit code {exc.returncode}"
    return None


def guarded(main: Callable[..., int | None], *args: Any) -> int:
    try:
        return main(*args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def run(main: Callable[..., int | None], *args: Any) -> NoReturn:
    """``sys.exit(main(*args))`` with expected failures as one line."""
    sys.exit(guarded(main, *args))


def missing_stack(stack_dir: Path | str) -> bool:
    """True (after saying so in one line) when ``stack_dir`` holds no synthesized stack."""
    if (Path(stack_dir) / "cdk.tf.json").is_file():
        return False
    print(f"error: {stack_dir}/cdk.tf.json not found; run `make synth` first", file=sys.stderr)
    return True


def listening(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def check_env(env: str, reachable: bool) -> int:
    """The env has a valid profile and, with ``reachable``, what its commands talk to is at hand:
    AWS credentials for a cloud env, a listening emulator for the local one."""
    from conf import load_profile

    profile = load_profile(env)
    if not reachable:
        return 0
    if profile.is_cloud:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            print(f"error: ENV={env} needs AWS credentials and none were found; {CREDENTIALS_HINT}", file=sys.stderr)
            return 2
        return 0
    endpoint = os.environ.get("EMULATOR_ENDPOINT") or str(profile.emulator_endpoint)
    if not listening(endpoint):
        print(
            f"error: the emulator is not running at {endpoint}; start it with `make up-localstack` "
            "(or `make deploy-local` to start it and deploy)",
            file=sys.stderr,
        )
        return 2
    return 0


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] != "check-env" or (len(argv) == 3 and argv[2] != "--reachable"):
        print("usage: python -m tools.cli check-env <env> [--reachable]", file=sys.stderr)
        return 2
    return check_env(argv[1], len(argv) == 3)


if __name__ == "__main__":
    run(main, sys.argv[1:])
