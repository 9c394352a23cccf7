"""CDKTF app entry point (run by ``cdktf synth``): one pipeline stack per environment.

``SYNTH_ENVS=local,dev`` limits synthesis to those environments (default: every profile in
conf/profiles). Cloud environments also get one state-bootstrap stack per AWS account.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import modules  # noqa: F401  (installs the lean provider loader before any binding import)
from conf import ProfileError, known_environments, load_profile

if TYPE_CHECKING:
    from cdktf import App

ENV_VAR = "SYNTH_ENVS"


def selected_environments(value: str | None) -> list[str]:
    if not value:
        return known_environments()
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise ProfileError(f"{ENV_VAR}={value!r} names no environment; use e.g. {ENV_VAR}=local,dev")
    return names


def build_app(environments: list[str], outdir: str | None = None) -> App:
    """Build (not synthesize) the app for ``environments``; raises ProfileError on a bad profile.

    The profiles are loaded before cdktf and the stacks are imported (which starts the jsii
    kernel and loads the provider assembly, ~6 s): a bad value is reported at once."""
    profiles = [load_profile(env) for env in environments]
    from cdktf import App

    from stacks.pipeline_stack import PipelineStack
    from stacks.state_bootstrap_stack import StateBootstrapStack

    app = App(outdir=outdir) if outdir else App()
    by_account: dict[str, list] = {}
    for profile in profiles:
        PipelineStack(app, profile)
        if profile.is_cloud:
            by_account.setdefault(profile.account_id, []).append(profile)
    for account_profiles in by_account.values():
        StateBootstrapStack(app, account_profiles)
    return app


def main() -> int:
    try:
        app = build_app(selected_environments(os.environ.get(ENV_VAR)))
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
