"""``terraform init`` + ``terraform validate`` for every synthesized stack, offline.

Stacks with a remote backend are initialised with ``-backend=false`` (validation needs no state).
The repo's committed ``.terraform.lock.hcl`` is copied into each stack and used read-only, so a
provider whose hash differs from the reviewed one fails here instead of being installed.

    python -m tools.tf_validate [cdktf.out/stacks/<stack> ...]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tools import cli
from tools.tf_cli_config import plugin_cache_lock

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = REPO_ROOT / ".terraform.lock.hcl"
STACKS_DIR = REPO_ROOT / "cdktf.out" / "stacks"


def has_remote_backend(stack_dir: Path) -> bool:
    config = json.loads((stack_dir / "cdk.tf.json").read_text())
    backends = config.get("terraform", {}).get("backend", {})
    return any(kind != "local" for kind in backends)


def init(stack_dir: Path, *, backend: bool | None = None) -> None:
    """``terraform init`` against the committed lock file; raises CalledProcessError on failure."""
    if LOCK_FILE.exists():
        shutil.copyfile(LOCK_FILE, stack_dir / ".terraform.lock.hcl")
    use_backend = not has_remote_backend(stack_dir) if backend is None else backend
    cmd = ["terraform", "init", "-input=false", "-no-color", "-lockfile=readonly"]
    if not use_backend:
        cmd.append("-backend=false")
    with plugin_cache_lock(stack_dir):
        subprocess.run(cmd, cwd=stack_dir, check=True, capture_output=True, text=True)


def validate(stack_dir: Path) -> tuple[str, bool, str, float]:
    started = time.monotonic()
    try:
        init(stack_dir, backend=False)
    except subprocess.CalledProcessError as exc:
        return (
            stack_dir.name,
            False,
            "init failed: " + _last_error(exc.stderr or exc.stdout),
            time.monotonic() - started,
        )
    proc = subprocess.run(
        ["terraform", "validate", "-json", "-no-color"], cwd=stack_dir, capture_output=True, text=True
    )
    result = json.loads(proc.stdout or "{}")
    problems = [
        f"{d.get('severity')}: {d.get('summary')} {d.get('detail', '')}".strip()
        for d in result.get("diagnostics", [])
        if d.get("severity") == "error"
    ]
    ok = bool(result.get("valid")) and not problems
    return stack_dir.name, ok, "; ".join(problems) or "valid", time.monotonic() - started


def _last_error(text: str) -> str:
    lines = [line.strip("│ ").strip() for line in (text or "").splitlines() if line.strip("│ ").strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["(no output)"])[-1]


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(p for p in STACKS_DIR.glob("*") if (p / "cdk.tf.json").exists())
    if not dirs:
        print(f"no synthesized stacks in {STACKS_DIR}; run `make synth` first", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(validate, dirs))
    for name, ok, message, seconds in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<32} {seconds:5.1f}s  {message}")
    failed = [r for r in results if not r[1]]
    print(f"terraform validate: {len(results) - len(failed)} valid, {len(failed)} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
