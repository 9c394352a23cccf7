"""The AWS provider of a stack: region, default tags, account guard, emulator settings."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

from conf import Profile

LOCAL_ACCESS_KEY = "test"  # moto and LocalStack accept any key; "test" is their convention
LOCAL_MAX_RETRIES = 5


COST_SCOPE_TAG = "CostScope"  # the one tag the budget and the anomaly monitor select on


def cost_scope(profile: Profile) -> str:
    """The environment's value of ``CostScope``: unique per environment, so one tag alone selects it."""
    return profile.prefix


def default_tags(profile: Profile) -> dict[str, str]:
    """Cost allocation tags put on every taggable resource of the environment."""
    return {
        COST_SCOPE_TAG: cost_scope(profile),
        "Project": profile.project,
        "Environment": profile.name,
        "ManagedBy": "cdktf",
        "CostCenter": profile.cost_center,
    }


def pipeline_provider(
    scope: Construct, profile: Profile, *, region: str | None = None, alias: str | None = None
) -> AwsProvider:
    """A provider that can only ever touch the profile's account (cloud) or the emulator (local).

    For local, credentials are the emulator's dummy ones and the SDK makes at most
    ``LOCAL_MAX_RETRIES`` attempts: few, so a call the emulator does not support fails in seconds
    instead of minutes, and more than two, because on a busy machine the client sometimes drops an
    answered connection and then its retry's too (the emulator replays the answer to every retry).
    The endpoint itself comes from ``AWS_ENDPOINT_URL`` or tflocal's override, so one config
    serves both.
    """
    common = {
        "region": region or profile.region,
        "default_tags": [AwsProviderDefaultTags(tags=default_tags(profile))],
        "alias": alias,
    }
    if profile.is_cloud:
        return AwsProvider(
            scope, f"aws{'-' + alias if alias else ''}", allowed_account_ids=[profile.account_id], **common
        )
    return AwsProvider(
        scope,
        f"aws{'-' + alias if alias else ''}",
        access_key=LOCAL_ACCESS_KEY,
        secret_key=LOCAL_ACCESS_KEY,
        s3_use_path_style=True,
        skip_credentials_validation=True,
        skip_metadata_api_check="true",
        skip_region_validation=True,
        max_retries=LOCAL_MAX_RETRIES,
        **common,
    )
