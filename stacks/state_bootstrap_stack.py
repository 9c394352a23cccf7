"""Per-account bootstrap: the Terraform state bucket and the CI roles of that account's environments."""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from constructs import Construct

from conf import Profile
from modules.backend import local_backend, require_terraform, state_key
from modules.ci_access import CiAccess, CiAccessProps, GithubOidc
from modules.iam import render_grants
from modules.provider import pipeline_provider
from modules.state_bucket import StateBucket, StateBucketProps


def bootstrap_stack_id(profile: Profile) -> str:
    return f"state-bootstrap-{profile.account_id}"


class StateBootstrapStack(TerraformStack):
    """Applied once per account with a local backend; every cloud env's S3 backend points here.

    ``profiles`` are the environments living in this account; the first one's settings (region,
    state bucket) are the account's.
    """

    def __init__(self, scope: Construct, profiles: list[Profile]) -> None:
        profile = profiles[0]
        stack_id = bootstrap_stack_id(profile)
        super().__init__(scope, stack_id)
        require_terraform(self)
        local_backend(self, stack_id, f".state/{stack_id}/terraform.tfstate")
        pipeline_provider(self, profile)
        bucket = StateBucket(
            self,
            "state",
            StateBucketProps(
                bucket_name=profile.state_backend.bucket,
                account_id=profile.account_id,
                region=profile.state_backend.region,
                key_alias_name=profile.state_key_alias,
            ),
        )
        TerraformOutput(self, "state_bucket", value=bucket.bucket_name)
        oidc = GithubOidc(self, "github-oidc")
        for env in profiles:
            access = CiAccess(
                self,
                f"ci-{env.name}",
                CiAccessProps(
                    prefix=env.prefix,
                    environment=env.name,
                    account_id=env.account_id,
                    github_repository=env.ci.github_repository,
                    state_bucket=bucket,
                    state_key_prefix=state_key(env).rsplit("/", 1)[0],
                    oidc=oidc,
                    region=env.region,
                    pipeline_key_alias=f"alias/{env.prefix}-pipeline",
                ),
            )
            TerraformOutput(self, f"ci_plan_role_{env.name}", value=access.plan_role_arn)
            TerraformOutput(self, f"ci_deploy_role_{env.name}", value=access.deploy_role_arn)
        # Cost allocation tags are not activated here: a key cannot be activated before tagged usage
        # makes it exist (up to 24 h), so a first apply would fail. `make cost-tags ENV=<env>` does it.
        render_grants()
