"""Terraform state backends: a local file for the emulator, S3 with native locking in the cloud."""

from __future__ import annotations

import os

from cdktf import LocalBackend, S3Backend, TerraformStack

from conf import Profile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACKS_OUT = os.path.join("cdktf.out", "stacks")


def state_key(profile: Profile) -> str:
    """One state object per environment, so two environments can never share a state file."""
    return f"{profile.state_backend.key_prefix}/{profile.name}/terraform.tfstate"


# S3-native state locking (use_lockfile) needs 1.10; 2.x may change the language.
REQUIRED_TERRAFORM = ">= 1.10.0, < 2.0.0"


def require_terraform(stack: TerraformStack) -> None:
    """Fail fast on a Terraform CLI that cannot read this config (cdktf has no typed setter)."""
    stack.add_override("terraform.required_version", REQUIRED_TERRAFORM)


def configure_backend(stack: TerraformStack, stack_id: str, profile: Profile) -> None:
    require_terraform(stack)
    backend = profile.state_backend
    if backend.type == "local":
        local_backend(stack, stack_id, backend.path)
        return
    # SSE-KMS with the account's state key (its alias ARN: the key's own ARN is known only after
    # the bootstrap apply); the state bucket refuses uploads encrypted any other way.
    S3Backend(
        stack,
        bucket=backend.bucket,
        key=state_key(profile),
        region=backend.region,
        encrypt=True,
        kms_key_id=profile.state_key_alias_arn,
    )
    # S3-native locking (Terraform >= 1.10); cdktf 0.21's S3Backend has no typed field for it.
    stack.add_override("terraform.backend.s3.use_lockfile", True)


def local_backend(stack: TerraformStack, stack_id: str, path: str) -> LocalBackend:
    """A local state file at ``path`` (relative to the repo root), outside cdktf.out so synth never wipes it.

    Terraform resolves the path from the stack's folder in cdktf.out; a relative path keeps the
    synthesized JSON identical on every machine.
    """
    target = os.path.join(REPO_ROOT, path)
    return LocalBackend(stack, path=os.path.relpath(target, os.path.join(REPO_ROOT, STACKS_OUT, stack_id)))
