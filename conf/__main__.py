"""Print a profile, or one key of it: ``python -m conf local emulator_endpoint``.

``python -m conf local --shell EMULATOR_ENDPOINT=emulator_endpoint AWS_DEFAULT_REGION=region``
prints ``EMULATOR_ENDPOINT=<value> AWS_DEFAULT_REGION=<value>`` for ``env $(...) command``: one
process for several keys (each start loads pydantic, ~0.5 CPU s, and the Makefile asks before
every local target).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from conf.profile import INSTANCE_TYPES_FILE, ProfileError, botocore_instance_types, load_profile

INSTANCE_TYPES_HEADER = (
    "# The EC2 InstanceType enum of the pinned botocore (service-2.json): the instance types a profile may\n"
    "# name. tests/test_profiles.py fails when botocore lists others; renew: python -m conf --write-instance-types\n"
)


def lookup(env: str, profile: dict[str, Any], path: str) -> Any:
    value: Any = profile
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise LookupError(f"profile {env!r} has no key {path!r}")
        value = value[part]
    return value


def shell_words(env: str, profile: dict[str, Any], pairs: list[str]) -> str:
    words = []
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.isidentifier() or not path:
            raise ValueError(f"--shell takes NAME=key.path pairs, not {pair!r}")
        value = lookup(env, profile, path)
        if not isinstance(value, str) or not value or any(c.isspace() or c in "'\"$`\\" for c in value):
            raise ValueError(f"profile {env!r} key {path!r} is not one plain word: {value!r}")
        words.append(f"{name}={value}")
    return " ".join(words)


USAGE = """usage: python -m conf <env> [key.path | --shell NAME=key.path ...]
       python -m conf --write-instance-types

Print an environment's profile (conf/profiles/<env>.yaml over defaults.yaml) as JSON, or one key
of it (e.g. `python -m conf local emulator_endpoint`); --shell prints NAME=value words for
`env $(...)`. --write-instance-types renews conf/ec2_instance_types.txt from the installed botocore."""


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if argv == ["--write-instance-types"]:
        INSTANCE_TYPES_FILE.write_text(INSTANCE_TYPES_HEADER + "\n".join(botocore_instance_types()) + "\n")
        print(f"wrote {INSTANCE_TYPES_FILE}")
        return 0
    shell = len(argv) >= 2 and argv[1] == "--shell"
    if (shell and len(argv) < 3) or (not shell and not 1 <= len(argv) <= 2) or argv[0].startswith("-"):
        print(USAGE.splitlines()[0] + " (--help for more)", file=sys.stderr)
        return 2
    try:
        profile = load_profile(argv[0]).model_dump(mode="json")
        if shell:
            print(shell_words(argv[0], profile, argv[2:]))
            return 0
        value = lookup(argv[0], profile, argv[1]) if len(argv) == 2 else profile
    except (ProfileError, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(value if isinstance(value, str) else json.dumps(value, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
