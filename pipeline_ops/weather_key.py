"""Set or rotate an environment's weather API key: ``make weather-key ENV=<env>``.

Terraform never holds the key (modules/parameters.py): this writes it as a SecureString with the
environment's pipeline key, ``--overwrite``. The value comes from stdin (a prompt without echo on a
terminal), never from the command line, where it would land in shell history and ``ps``.

    printf %s "$KEY" | python -m pipeline_ops.weather_key dev
    python -m pipeline_ops.weather_key local --dummy   # the emulator's stand-in value
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from conf import load_profile
from tools import cli

SECRET = "weather-api-key"  # noqa: S105 - a parameter name, not a value
DUMMY = "local-dummy-key"  # the emulator's stand-in; the loopback weather server takes any


def parameter_name(project: str, environment: str) -> str:
    """The name modules/parameters.py grants the weather function and passes it."""
    return f"/{project}/{environment}/secrets/{SECRET}"


def read_value() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("weather API key (not echoed): ").strip()
    return sys.stdin.read().strip()


def put(ssm: Any, name: str, key_alias: str, value: str) -> None:
    ssm.put_parameter(Name=name, Value=value, Type="SecureString", KeyId=key_alias, Overwrite=True)


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2 or (len(argv) == 2 and argv[1] != "--dummy"):
        print("usage: python -m pipeline_ops.weather_key <env> [--dummy]  (the key on stdin)", file=sys.stderr)
        return 2
    profile = load_profile(argv[0])
    value = DUMMY if len(argv) == 2 else read_value()
    if not value:
        print('error: no key given; pipe it in (printf %s "$KEY" | make weather-key ENV=...)', file=sys.stderr)
        return 2
    import boto3

    name = parameter_name(profile.project, profile.name)
    put(boto3.client("ssm", region_name=profile.region), name, f"alias/{profile.prefix}-pipeline", value)
    print(f"weather-key: {name} set (SecureString, alias/{profile.prefix}-pipeline)")
    return 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
