"""Print a profile, or one key of it: ``python -m conf local emulator_endpoint``."""

from __future__ import annotations

import json
import sys

from conf.profile import ProfileError, load_profile


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m conf <env> [key.path]", file=sys.stderr)
        return 2
    try:
        value = load_profile(argv[0]).model_dump(mode="json")
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for part in argv[1].split(".") if len(argv) == 2 else []:
        if not isinstance(value, dict) or part not in value:
            print(f"error: profile {argv[0]!r} has no key {argv[1]!r}", file=sys.stderr)
            return 2
        value = value[part]
    print(value if isinstance(value, str) else json.dumps(value, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
