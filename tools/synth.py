"""``make synth``: run ``cdktf synth`` only when something that can change its output changed.

    python -m tools.synth [--output cdktf.out] [--force] [--check]

The inputs are hashed: every file of the app (``main.py``, ``cdktf.json``, ``conf/``, ``stacks/``,
``modules/``, ``lambda_src/``, the profile folder ``ODINS_PROFILE_DIR`` names), the lock files,
the installed Python and npm package versions, the Python version and the environment variables
the app reads (``SYNTH_ENVS``, ``ODINS_PROFILE_DIR``, ``CDKTF_*``). When the hash equals the one
recorded by the last synth into the same folder, and that synth's output files are still as it
left them, nothing runs. ``--check`` only says whether a synth is due (exit 1) or not (exit 0).

Specific to this repository's layout (the folder list); imports no construct and nothing heavy,
so a no-change run costs a Python start and a few hundred small file reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from pathlib import Path

from tools import cli, progress

REPO = Path(__file__).resolve().parent.parent
APP_FILES = ("main.py", "cdktf.json", "requirements.txt", "package-lock.json", ".terraform.lock.hcl")
APP_DIRS = ("conf", "stacks", "modules", "lambda_src")
ENV_VARS = ("SYNTH_ENVS", "ODINS_PROFILE_DIR")
ENV_PREFIXES = ("CDKTF_",)
NPM_PACKAGES = ("cdktf", "cdktf-cli")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
STAMP = ".synth-inputs.json"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # what a spinner leaves when its output is piped


def _files(dirs: Iterable[Path], files: Iterable[Path]) -> list[Path]:
    found = [f for f in files if f.is_file()]
    for folder in dirs:
        if folder.is_dir():
            found += [
                p
                for p in folder.rglob("*")
                if p.is_file() and not SKIPPED_PARTS & set(p.parts) and p.suffix not in {".pyc", ".pyo"}
            ]
    return sorted(set(found), key=lambda p: str(p))


def package_versions(site_packages: Path, node_modules: Path) -> list[str]:
    """Installed distributions (``name-version.dist-info``) and the npm packages synth runs."""
    python = sorted(p.name for p in site_packages.glob("*.dist-info")) if site_packages.is_dir() else []
    npm = []
    for name in NPM_PACKAGES:
        manifest = node_modules / name / "package.json"
        if manifest.is_file():
            npm.append(f"{name}@{json.loads(manifest.read_text()).get('version')}")
    return python + npm


def inputs_digest(
    root: Path = REPO,
    env: Mapping[str, str] | None = None,
    site_packages: Path | None = None,
    node_modules: Path | None = None,
) -> str:
    """One hash of everything that can change what ``cdktf synth`` writes."""
    env = os.environ if env is None else env
    digest = hashlib.sha256()
    profile_dir = env.get("ODINS_PROFILE_DIR")
    dirs = [root / d for d in APP_DIRS] + ([Path(profile_dir)] if profile_dir else [])
    for path in _files(dirs, [root / f for f in APP_FILES]):
        data = path.read_bytes()
        digest.update(f"file {os.path.relpath(path, root)} {len(data)}\n".encode())
        digest.update(data)
    site = site_packages or Path(sysconfig.get_paths()["purelib"])
    for line in package_versions(site, node_modules or root / "node_modules"):
        digest.update(f"package {line}\n".encode())
    digest.update(f"python {sys.version}\n".encode())
    for key in sorted(env):
        if key in ENV_VARS or (key.startswith(ENV_PREFIXES) and key != "CDKTF_OUTDIR"):
            digest.update(f"env {key}={env[key]}\n".encode())
    return digest.hexdigest()


def output_fingerprint(output: Path) -> dict[str, list[int]]:
    """Size and mtime of every file the synth wrote; a hand-edited or deleted output re-synthesizes."""
    files = [output / "manifest.json", *sorted(output.glob("stacks/*/cdk.tf.json"))]
    return {os.path.relpath(f, output): [f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()}


def up_to_date(output: Path, digest: str) -> bool:
    stamp = output / STAMP
    try:
        recorded = json.loads(stamp.read_text())
    except (FileNotFoundError, ValueError):
        return False
    fingerprint = output_fingerprint(output)
    return recorded.get("inputs") == digest and bool(fingerprint) and recorded.get("outputs") == fingerprint


def synthesize(output: Path, quiet: bool = False) -> int:
    cdktf = REPO / "node_modules" / ".bin" / "cdktf"
    if not cdktf.exists():
        print("error: the cdktf CLI is not installed; run `make setup`", file=sys.stderr)
        return 2
    (output / STAMP).unlink(missing_ok=True)
    # The app runs as ``python -O`` (cdktf.json), whose bytecode pip does not precompile: let its
    # first run write it (``.opt-1.pyc``), or every synth recompiles the binding it imports (~6 s).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [str(cdktf), "synth", "--output", str(output)]
    if quiet:  # quiet hides the CLI's progress, never its failure
        proc = subprocess.run(cmd, cwd=REPO, env=env, check=False, capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(ANSI.sub("", proc.stdout + proc.stderr))
        return proc.returncode
    if sys.stdout.isatty():  # the CLI's own spinner
        return subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode
    # Not a terminal (CI, a pipe): the CLI's spinner would be escape codes; keep them in the log.
    # So is Node 22's `[DEP0044] DeprecationWarning: util.isArray`, raised inside the cdktf CLI's
    # own dependencies (not our code, nothing to act on); a failure still prints the CLI's stderr.
    proc = progress.run(cmd, cwd=REPO, env=env, label="synth")
    done = [ln for ln in ANSI.sub("", proc.stdout).splitlines() if ln.startswith("Generated Terraform code")]
    print("\n".join(done) if proc.returncode == 0 else ANSI.sub("", proc.stderr or proc.stdout)[-2000:])
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "cdktf.out")
    parser.add_argument("--force", action="store_true", help="synthesize even when nothing changed")
    parser.add_argument("--check", action="store_true", help="exit 1 if a synth is due, 0 if not; change nothing")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless the synth fails")
    args = parser.parse_args(argv)
    output = args.output if args.output.is_absolute() else REPO / args.output
    digest = inputs_digest()
    current = up_to_date(output, digest)
    if args.check:
        print(f"synth: {'up to date' if current else 'due'} ({digest[:12]})")
        return 0 if current else 1
    if current and not args.force:
        if not args.quiet:
            print(f"synth: up to date, inputs unchanged ({digest[:12]}); `make synth FORCE_SYNTH=1` redoes it")
        return 0
    code = synthesize(output, args.quiet)
    if code == 0:
        stamp = {"inputs": digest, "outputs": output_fingerprint(output)}
        (output / STAMP).write_text(json.dumps(stamp, indent=1))
    return code


if __name__ == "__main__":
    cli.run(main)
