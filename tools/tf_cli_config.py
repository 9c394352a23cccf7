"""Write the Terraform CLI config the Makefile exports as TF_CLI_CONFIG_FILE.

Where a local filesystem mirror of registry.terraform.io exists (offline machines), providers
from it are installed from there and every other provider still comes from its registry; where
none exists, Terraform uses the normal registry. Either way providers are cached once per checkout.

    python -m tools.tf_cli_config build/terraformrc
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tools import cli

# Searched in order; TF_PROVIDER_MIRROR names a mirror explicitly.
CANDIDATE_MIRRORS = (
    "/opt/tf-plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    os.path.expanduser("~/.terraform.d/plugins"),
    os.path.expanduser("~/.local/share/terraform/plugins"),
)


def find_mirror(candidates: tuple[str, ...] = CANDIDATE_MIRRORS) -> Path | None:
    explicit = os.environ.get("TF_PROVIDER_MIRROR")
    for root in ((explicit,) if explicit else ()) + candidates:
        if root and (Path(root) / "registry.terraform.io").is_dir():
            return Path(root)
    return None


def mirrored_providers(mirror: Path) -> list[str]:
    """``registry.terraform.io/<namespace>/<type>`` for each provider the mirror holds."""
    base = mirror / "registry.terraform.io"
    return sorted(
        f"registry.terraform.io/{ns.name}/{p.name}"
        for ns in base.iterdir()
        if ns.is_dir()
        for p in ns.iterdir()
        if p.is_dir()
    )


def render(mirror: Path | None, cache_dir: Path) -> str:
    lines = [
        "# Written by `make setup` (tools/tf_cli_config.py); do not edit, it is regenerated.",
        f'plugin_cache_dir = "{cache_dir}"',
        "disable_checkpoint = true",
    ]
    if mirror is not None:
        providers = ", ".join(f'"{p}"' for p in mirrored_providers(mirror))
        lines += [
            "provider_installation {",
            "  filesystem_mirror {",
            f'    path    = "{mirror}"',
            f"    include = [{providers}]",
            "  }",
            "  direct {",
            f"    exclude = [{providers}]",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def plugin_cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The plugin cache Terraform uses under ``env`` (default: this process's environment), if any."""
    env = os.environ if env is None else env
    if env.get("TF_PLUGIN_CACHE_DIR"):
        return Path(env["TF_PLUGIN_CACHE_DIR"])
    config = Path(env.get("TF_CLI_CONFIG_FILE", ""))
    if not config.is_file():
        return None
    found = re.search(r'^\s*plugin_cache_dir\s*=\s*"([^"]+)"', config.read_text(), re.MULTILINE)
    return Path(found.group(1)) if found else None


@contextlib.contextmanager
def plugin_cache_lock(stack_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Held around every ``terraform init``: Terraform's plugin cache is not safe for concurrent
    installs (two inits filling a cold cache fail with "mkdir ...: file exists"), and the test
    workers, ``make validate`` and the emulator deploys share one cache per checkout.

    Once an init with the same dependency lock file has succeeded, the cache holds every provider
    that lock file names and later inits only read it, so they run without the lock."""
    cache = plugin_cache_dir(env)
    if cache is None:
        yield
        return
    lock_file = stack_dir / ".terraform.lock.hcl"
    digest = hashlib.sha256(lock_file.read_bytes()).hexdigest()[:16] if lock_file.is_file() else None
    warm = cache / f".warm-{digest}"
    if digest and warm.exists():
        yield
        return
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".init.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
            if digest:
                warm.touch()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.tf_cli_config OUTPUT_FILE", file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    cache = out.parent / "plugin-cache"
    cache.mkdir(parents=True, exist_ok=True)
    mirror = find_mirror()
    text = render(mirror, cache)
    if not out.exists() or out.read_text() != text:  # said once, when it changes (every make target runs this)
        out.write_text(text)
        print(f"terraform: providers from {'mirror ' + str(mirror) if mirror else 'the public registry'} ({out})")
    return 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
