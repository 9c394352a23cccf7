"""Apply a synthesized stack to the local emulator through tflocal, and take it down again.

    python -m local.deploy apply   cdktf.out/stacks/pipeline-local   # init + apply, outputs, slowest resources
    python -m local.deploy plan    cdktf.out/stacks/pipeline-local   # exit 0: no changes, 2: changes
    python -m local.deploy destroy cdktf.out/stacks/pipeline-local

Endpoint and region come from EMULATOR_ENDPOINT and AWS_DEFAULT_REGION (the Makefile reads both
from the local profile). Works on any Terraform config; imports no construct.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools import cli, progress
from tools.tf_cli_config import plugin_cache_lock

REPO = Path(__file__).resolve().parent.parent
LOCK_FILE = REPO / ".terraform.lock.hcl"
TFLOCAL = Path(sys.executable).parent / "tflocal"
COMPLETE = re.compile(r"^(?P<address>\S+): (Creation|Modifications|Destruction) complete after (?P<t>[0-9hms]+)")
PARALLELISM = "30"  # the provider waits on some resources (S3 lifecycle ~55 s): let the rest go on


def cli_config() -> dict[str, str]:
    """The Makefile's Terraform CLI config (provider mirror) when the environment names none that exists."""
    ours = REPO / "build" / "terraformrc"
    current = os.environ.get("TF_CLI_CONFIG_FILE")
    return {"TF_CLI_CONFIG_FILE": str(ours)} if ours.exists() and not (current and Path(current).exists()) else {}


def emulator_env() -> dict[str, str]:
    endpoint = os.environ.get("EMULATOR_ENDPOINT", "http://127.0.0.1:4566").replace("localhost", "127.0.0.1")
    host = endpoint.split("://", 1)[1].split(":", 1)[0]
    return dict(
        os.environ,
        AWS_ENDPOINT_URL=endpoint,
        S3_HOSTNAME=host,  # makes tflocal use path-style S3 on our endpoint
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # noqa: S106 - the emulator's dummy credentials
        AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "eu-north-1"),
        TF_IN_AUTOMATION="1",
        **cli_config(),
    )


def tflocal(stack_dir: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """tflocal writes ``localstack_providers_override.tf`` (emulator endpoints), then runs terraform."""
    cmd = [str(TFLOCAL) if TFLOCAL.exists() else "tflocal", *args]
    return subprocess.run(cmd, cwd=stack_dir, env=emulator_env(), text=True, capture_output=capture, check=False)


# Where the last command's whole output goes (``local.soak`` keeps one file per phase); None: nowhere.
LOG: dict[str, Path | None] = {"path": None}


def terraform(
    stack_dir: Path, *args: str, capture: bool = True, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess:
    """Plain terraform once tflocal's override is in place (tflocal adds ~5 s to every command).

    Captured runs show Terraform's progress and keep the whole output in a log under build/logs/
    (or ``LOG["path"]``), whose path is printed when the command fails.
    """
    if not capture:
        return subprocess.run(["terraform", *args], cwd=stack_dir, env=emulator_env(), text=True, check=False)
    label = f"{stack_dir.name} {args[0]}"
    return progress.run(["terraform", *args], cwd=stack_dir, env=emulator_env(), label=label, log=LOG["path"], ok=ok)


OVERRIDE = "emulator_override.tf.json"


def point_at_emulator(stack_dir: Path) -> None:
    """Aim a config's own ``endpoints`` at this emulator (an override file Terraform merges in).

    A provider block that names endpoints (the local profile's, so that a bare ``cdktf deploy``
    reaches only the emulator) wins over ``AWS_ENDPOINT_URL``, and tflocal's override is gone after
    its ``init``: an emulator on another port (tests, soak) needs its own endpoints here.
    """
    endpoint = emulator_env()["AWS_ENDPOINT_URL"]
    configs = [c for c in sorted(stack_dir.glob("*.tf.json")) if not c.name.endswith("override.tf.json")]
    providers = [p for c in configs for p in json.loads(c.read_text()).get("provider", {}).get("aws", [])]
    overrides = [
        {**({"alias": p["alias"]} if p.get("alias") else {}), "endpoints": [dict.fromkeys(p["endpoints"][0], endpoint)]}
        for p in providers
        if p.get("endpoints")
    ]
    target = stack_dir / OVERRIDE
    if overrides:
        target.write_text(json.dumps({"provider": {"aws": overrides}}, indent=1) + "\n")
    else:
        target.unlink(missing_ok=True)


def init(stack_dir: Path) -> None:
    """``tflocal init`` unless the folder is initialised with the committed lock file already."""
    point_at_emulator(stack_dir)
    lock = stack_dir / ".terraform.lock.hcl"
    overrides = stack_dir / "localstack_providers_override.tf"
    if (
        (stack_dir / ".terraform" / "providers").is_dir()
        and overrides.exists()
        and LOCK_FILE.exists()
        and lock.exists()
        and lock.read_bytes() == LOCK_FILE.read_bytes()
    ):
        return
    if LOCK_FILE.exists():
        shutil.copyfile(LOCK_FILE, lock)
    with plugin_cache_lock(stack_dir, emulator_env()):
        proc = tflocal(stack_dir, "init", "-input=false", "-no-color", "-lockfile=readonly", capture=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: tflocal init failed in {stack_dir}:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")


def seconds(text: str) -> int:
    minutes = re.search(r"(\d+)m", text)
    secs = re.search(r"(\d+)s", text)
    return (int(minutes.group(1)) * 60 if minutes else 0) + (int(secs.group(1)) if secs else 0)


def slowest(output: str, count: int = 5) -> list[tuple[int, str]]:
    timings = [(seconds(m["t"]), m["address"]) for m in map(COMPLETE.match, output.splitlines()) if m]
    return sorted(timings, reverse=True)[:count]


def apply(stack_dir: Path) -> int:
    started = time.monotonic()
    init(stack_dir)
    proc = terraform(
        stack_dir, "apply", "-auto-approve", "-input=false", "-no-color", f"-parallelism={PARALLELISM}", capture=True
    )
    print(
        proc.stdout[-4000:]
        if proc.returncode
        else "\n".join(
            line
            for line in proc.stdout.splitlines()
            if line.startswith(("Apply complete", "Outputs:")) or " = " in line
        )
    )
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    print(f"deploy-local: applied in {time.monotonic() - started:.1f}s; slowest resources:")
    for secs, address in slowest(proc.stdout):
        print(f"  {secs:4d}s  {address}")
    return 0


def plan(stack_dir: Path) -> int:
    init(stack_dir)
    proc = terraform(
        stack_dir,
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-no-color",
        "-lock=false",
        f"-parallelism={PARALLELISM}",
        capture=True,
        ok=(0, 2),
    )
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith(("No changes", "Plan:")) or "will be" in ln]
    print("\n".join(summary) or proc.stdout[-2000:])
    if proc.returncode == 1:
        print(proc.stderr, file=sys.stderr)
    return proc.returncode


def destroy(stack_dir: Path) -> int:
    init(stack_dir)
    proc = terraform(
        stack_dir, "destroy", "-auto-approve", "-input=false", "-no-color", f"-parallelism={PARALLELISM}", capture=True
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("Destroy complete")]
    print("\n".join(lines) or proc.stdout[-3000:])
    for secs, address in slowest(proc.stdout):
        print(f"  {secs:4d}s  {address}")
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
    return proc.returncode


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"apply", "plan", "destroy"}:
        print("usage: python -m local.deploy apply|plan|destroy <stack-dir>", file=sys.stderr)
        return 2
    stack_dir = Path(argv[1])
    if not (stack_dir / "cdk.tf.json").exists():
        print(f"error: {stack_dir}/cdk.tf.json not found; run `make synth` (SYNTH_ENVS=local) first", file=sys.stderr)
        return 2
    return {"apply": apply, "plan": plan, "destroy": destroy}[argv[0]](stack_dir)


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
