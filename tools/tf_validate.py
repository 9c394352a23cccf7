"""``terraform init`` + ``terraform validate`` for every synthesized stack, offline, in one run.

Stacks with a remote backend are initialised with ``-backend=false`` (validation needs no state).
The repo's committed ``.terraform.lock.hcl`` is copied into each stack and used read-only, so a
provider whose hash differs from the reviewed one fails here instead of being installed.

    python -m tools.tf_validate [cdktf.out/stacks/<stack> ...]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import cli
from tools.tf_cli_config import plugin_cache_lock

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = REPO_ROOT / ".terraform.lock.hcl"
STACKS_DIR = REPO_ROOT / "cdktf.out" / "stacks"
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # a module call's name: errors say module.<stack>


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


def wrapper_root(stack_dirs: list[Path], folder: Path) -> None:
    """A root module in ``folder`` that calls each stack as a child module.

    One ``terraform validate`` then checks every stack: each Terraform command spends ~6 CPU
    seconds loading the AWS provider and its schema: seven stacks cost 21 CPU s instead of 57.
    A stack is the same configuration as a child module (its own ``provider`` blocks; the
    ``backend`` block, ignored in a child with a warning, is not validated either way: init runs
    with ``-backend=false``); a stack with a block that only a root module may hold (``import``)
    is validated on its own by ``main``.
    """
    calls: dict[str, Path] = {}
    for index, stack in enumerate(stack_dirs):
        named = IDENTIFIER.fullmatch(stack.name) and stack.name not in calls
        calls[stack.name if named else f"stack_{index}"] = stack
    sources = {name: os.path.relpath(stack.resolve(), folder.resolve()) for name, stack in calls.items()}
    modules = {name: {"source": src if src.startswith("..") else f"./{src}"} for name, src in sources.items()}
    (folder / "main.tf.json").write_text(json.dumps({"module": modules}, indent=2))


def root_only(stack_dir: Path) -> bool:
    return "import" in json.loads((stack_dir / "cdk.tf.json").read_text())


def validate_together(stack_dirs: list[Path]) -> list[tuple[str, bool, str, float]]:
    """Validate ``stack_dirs`` as child modules of one wrapper root; one result per stack."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tf-validate-") as tmp:
        wrapper_root(stack_dirs, Path(tmp))
        results = validate(Path(tmp), stack_dirs)
    seconds = time.monotonic() - started
    return [(name, ok, message, seconds) for name, ok, message in results]


def validate(root: Path, stacks: list[Path] | None = None) -> list[tuple[str, bool, str]]:
    """``init -backend=false`` + ``validate -json`` in ``root`` (a stack, or the wrapper root of
    ``stacks``); errors are told per stack by the file they point at (an error in no stack's file
    fails every stack)."""
    stacks = stacks or [root]
    try:
        init(root, backend=False)
    except subprocess.CalledProcessError as exc:
        problem = "init failed: " + _last_error(exc.stderr or exc.stdout)
        return [(stack.name, False, problem) for stack in stacks]
    proc = subprocess.run(["terraform", "validate", "-json", "-no-color"], cwd=root, capture_output=True, text=True)
    result = json.loads(proc.stdout or "{}")
    if not result:
        problem = "validate gave no report: " + _last_error(proc.stderr)
        return [(stack.name, False, problem) for stack in stacks]
    problems: dict[Path, list[str]] = {stack.resolve(): [] for stack in stacks}
    for diagnostic in result.get("diagnostics", []):
        if diagnostic.get("severity") != "error":
            continue
        text = f"error: {diagnostic.get('summary')} {diagnostic.get('detail', '')}".strip()
        filename = (diagnostic.get("range") or {}).get("filename")
        owner = (root / filename).resolve().parent if filename else None
        for folder in [owner] if owner in problems else problems:
            problems[folder].append(text)
    if not result.get("valid") and not any(problems.values()):
        problems = {folder: ["terraform validate reported the configuration invalid"] for folder in problems}
    return [(folder.name, not found, "; ".join(found) or "valid") for folder, found in problems.items()]


def _last_error(text: str) -> str:
    lines = [line.strip("│ ").strip() for line in (text or "").splitlines() if line.strip("│ ").strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["(no output)"])[-1]


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(p for p in STACKS_DIR.glob("*") if (p / "cdk.tf.json").exists())
    if not dirs:
        print(f"no synthesized stacks in {STACKS_DIR}; run `make synth` first", file=sys.stderr)
        return 2
    alone = [d for d in dirs if root_only(d)]
    together = [d for d in dirs if d not in alone]
    results = validate_together(together) if together else []
    for stack in alone:
        started = time.monotonic()
        results += [(*r, time.monotonic() - started) for r in validate(stack)]
    for name, ok, message, seconds in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<32} {seconds:5.1f}s  {message}")
    failed = [r for r in results if not r[1]]
    print(f"terraform validate: {len(results) - len(failed)} valid, {len(failed)} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
