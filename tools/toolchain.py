"""Check the toolchain against ``.tool-versions`` (the one place versions are pinned); install Node.

    python3 -m tools.toolchain            # check, install the pinned Node if PATH's is another major
    python3 -m tools.toolchain --print    # only the versions line

Python and Terraform must match the pinned major.minor (one line saying what to install if not).
Node: the jsii kernel and the cdktf CLI run on whatever ``node`` is first on PATH; a machine whose
Node is another major (e.g. 20, end of life 2026-04-30) gets the pinned LTS from the npm registry's
``node`` package, installed into ``.toolchain/node`` (never over the system's), and the Makefile puts
``NODE_BIN`` first on PATH. Runs with the bare ``python3`` before any virtualenv exists: stdlib only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINS = REPO / ".tool-versions"
NODE_PREFIX = REPO / ".toolchain" / "node"
NODE_BIN = NODE_PREFIX / "node_modules" / ".bin"


def pins(path: Path = PINS) -> dict[str, str]:
    """``tool version`` per line (asdf's format, so asdf/mise users get the same versions)."""
    out = {}
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2:
            out[words[0]] = words[1]
    return out


def matches(version: str, pinned: str) -> bool:
    """``1.11.4`` matches ``1.11`` and ``1.11.4``; the pin's own precision decides."""
    return version.split(".")[: len(pinned.split("."))] == pinned.split(".")


def output(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        return None
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def node_version(node: str) -> str | None:
    found = output(node, "--version")
    return found.lstrip("v") if found else None


def ensure_node(pinned: str) -> tuple[str, str]:
    """(version, where) of the Node that make uses: PATH's if its major is the pin's, else ours."""
    ours = NODE_BIN / "node"
    if ours.exists() and node_version(str(ours)) == pinned:
        return pinned, str(NODE_PREFIX.relative_to(REPO))
    system = node_version("node")
    if system and matches(system, pinned.split(".")[0]):
        return system, shutil.which("node") or "node"
    if shutil.which("npm") is None:
        raise SystemExit(f"error: Node {pinned} is needed and npm is missing to install it: install Node {pinned}")
    where = NODE_PREFIX.relative_to(REPO)
    print(f"toolchain: Node {system or 'none'} on PATH; installing Node {pinned} into {where}/ (npm)")
    proc = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(NODE_PREFIX),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"node@{pinned}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or node_version(str(ours)) != pinned:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: installing Node {pinned} from the npm registry failed: {last[0]}")
    return pinned, str(NODE_PREFIX.relative_to(REPO))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pinned = pins()
    python = ".".join(map(str, sys.version_info[:3]))
    if not matches(python, pinned["python"]):
        print(
            f"error: python3 is {python}; this repository needs Python {pinned['python']} (.tool-versions)",
            file=sys.stderr,
        )
        return 2
    tf_json = output("terraform", "version", "-json")
    terraform = json.loads(tf_json)["terraform_version"] if tf_json else None
    if terraform is None or not matches(terraform, ".".join(pinned["terraform"].split(".")[:2])):
        print(
            f"error: terraform is {terraform or 'missing'}; install Terraform {pinned['terraform']} (.tool-versions)",
            file=sys.stderr,
        )
        return 2
    if "--print" in argv:
        node = node_version(str(NODE_BIN / "node")) or node_version("node")
        print(f"toolchain: Python {python}, Node {node}, Terraform {terraform}")
        return 0
    node, where = ensure_node(pinned["nodejs"])
    print(f"toolchain: Python {python}, Node {node} ({where}), Terraform {terraform}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
