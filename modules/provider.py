"""The AWS provider of a stack: region, default tags, account guard, emulator settings."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags, AwsProviderEndpoints
from constructs import Construct

from conf import Profile

LOCAL_ACCESS_KEY = "test"  # moto and LocalStack accept any key; "test" is their convention
LOCAL_MAX_RETRIES = 5
# Every AWS API the stacks call, by the provider's endpoint key (canonical names, not their aliases:
# the provider refuses an alias and its canonical key together). tests/test_foundation.py fails when a
# resource type of the local stack calls an API missing here, which would otherwise go to real AWS.
# Python keyword arguments of the binding: ``lambda_`` is the provider's ``lambda``.
EMULATOR_SERVICES = (
    "athena", "batch", "bcmdataexports", "budgets", "ce", "cloudwatch", "dynamodb", "ec2", "ecr", "events", "glue",
    "iam", "kms", "lambda_", "logs", "s3", "sfn", "sns", "sqs", "ssm", "sts", "xray",
)  # fmt: skip


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


def _emulator_url(profile: Profile) -> str:
    """The profile's endpoint as the provider should dial it: IPv4 (moto listens on 127.0.0.1 only)."""
    return profile.emulator_endpoint.rstrip("/").replace("localhost", "127.0.0.1")


def pipeline_provider(
    scope: Construct, profile: Profile, *, region: str | None = None, alias: str | None = None
) -> AwsProvider:
    """A provider that can only ever touch the profile's account (cloud) or the emulator (local).

    For local, credentials are the emulator's dummy ones and the SDK makes at most
    ``LOCAL_MAX_RETRIES`` attempts: few, so a call the emulator does not support fails in seconds
    instead of minutes, and more than two, because on a busy machine the client sometimes drops an
    answered connection and then its retry's too (the emulator replays the answer to every retry).
    Every API the stacks call points at the profile's ``emulator_endpoint`` (``endpoints``), so a
    plain ``cdktf deploy pipeline-local`` or ``terraform apply`` reaches the emulator and never AWS;
    tflocal's override file replaces that block with its own port (tests run emulators on free ports).
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
        endpoints=[AwsProviderEndpoints(**dict.fromkeys(EMULATOR_SERVICES, _emulator_url(profile)))],
        **common,
    )
