"""An S3 bucket with secure defaults, the building block of the data lake and the state bucket.

Every bucket: public access block (all four), BucketOwnerEnforced, versioning, default
encryption, a policy that denies plain-HTTP access and uploads encrypted any other way than the
bucket's, optional server access logging and lifecycle rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktf import TerraformProvider
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_logging import S3BucketLoggingA
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import S3BucketVersioningA, S3BucketVersioningVersioningConfiguration
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement


@dataclass(frozen=True)
class SecureBucketProps:
    bucket_name: str
    key: PipelineKey | None = None  # None: SSE-S3 (access-log targets cannot use SSE-KMS)
    force_destroy: bool = False
    prevent_destroy: bool = False
    log_target: SecureBucket | None = None  # the access-log bucket (whose policy admits log delivery)
    log_prefix: str | None = None
    key_aliases: tuple[str, ...] = ()  # alias ARNs of ``key`` that uploads may name instead of its ARN
    lifecycle_rules: tuple[S3BucketLifecycleConfigurationRule, ...] = ()
    extra_policy_statements: tuple[dict, ...] = field(default_factory=tuple)
    provider: TerraformProvider | None = None  # another region's provider (replicas)


def whole_bucket_rule(rule_id: str, **kwargs) -> S3BucketLifecycleConfigurationRule:
    return S3BucketLifecycleConfigurationRule(
        id=rule_id, status="Enabled", filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")], **kwargs
    )


def housekeeping_rules(
    abort_multipart_days: int, noncurrent_days: int, *, keep_versions: int | None = None
) -> tuple[S3BucketLifecycleConfigurationRule, ...]:
    """Abort stale multipart uploads; expire old versions (keeping the newest ``keep_versions``)."""
    return (
        whole_bucket_rule(
            "abort-incomplete-multipart",
            abort_incomplete_multipart_upload=[
                S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                    days_after_initiation=abort_multipart_days
                )
            ],
        ),
        whole_bucket_rule(
            "expire-noncurrent-versions",
            noncurrent_version_expiration=[
                S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=noncurrent_days, newer_noncurrent_versions=keep_versions
                )
            ],
        ),
    )


def deny_insecure_transport(bucket_arn: str) -> dict:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def log_delivery_statement(log_bucket_name: str, account_id: str, source_bucket_pattern: str) -> dict:
    """Lets S3 server access logging of this account's ``source_bucket_pattern`` buckets write here."""
    return {
        "Sid": "S3ServerAccessLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{log_bucket_name}/*",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account_id},
            "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{source_bucket_pattern}"},
        },
    }


def deny_foreign_encryption(bucket_arn: str, key_arn: str, aliases: tuple[str, ...] = ()) -> list[dict]:
    """Uploads either rely on the default (our key) or name SSE-KMS with our key; all else is refused.

    Each statement denies only when its header is present (``Null: false``) and differs: an
    ``...IfExists`` operator would also match an absent header and refuse default-encrypted uploads.
    """
    sse, key_id = "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id"
    return [
        {
            "Sid": "DenyUploadsNotSseKms",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/*",
            "Condition": {"StringNotEquals": {sse: "aws:kms"}, "Null": {sse: "false"}},
        },
        {
            "Sid": "DenyUploadsWithOtherKey",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/*",
            "Condition": {
                "StringNotEquals": {key_id: [key_arn, *aliases] if aliases else key_arn},
                "Null": {key_id: "false"},
            },
        },
    ]


class SecureBucket(Construct):
    def __init__(self, scope: Construct, id_: str, props: SecureBucketProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        self.bucket = S3Bucket(
            self,
            "bucket",
            provider=props.provider,
            bucket=props.bucket_name,
            force_destroy=props.force_destroy or None,
            lifecycle={"prevent_destroy": True} if props.prevent_destroy else None,
        )
        self.bucket_name: str = self.bucket.bucket
        self.bucket_arn: str = self.bucket.arn
        bucket_id: str = self.bucket.id  # read once: every attribute read is a round trip to jsii
        self.key = props.key
        S3BucketPublicAccessBlock(
            self,
            "public-access-block",
            provider=props.provider,
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketOwnershipControls(
            self,
            "ownership",
            provider=props.provider,
            bucket=bucket_id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        self.versioning = S3BucketVersioningA(
            self,
            "versioning",
            provider=props.provider,
            bucket=bucket_id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        by_default = S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
            sse_algorithm="aws:kms" if props.key else "AES256",
            kms_master_key_id=props.key.key_arn if props.key else None,
        )
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            provider=props.provider,
            bucket=bucket_id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=by_default,
                    bucket_key_enabled=True if props.key else None,
                )
            ],
        )
        statements = [deny_insecure_transport(self.bucket_arn)]
        if props.key:
            statements += deny_foreign_encryption(self.bucket_arn, props.key.key_arn, props.key_aliases)
        statements += list(props.extra_policy_statements)
        self.policy = S3BucketPolicy(
            self,
            "policy",
            provider=props.provider,
            bucket=bucket_id,
            policy=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        if props.log_target:
            S3BucketLoggingA(
                self,
                "logging",
                provider=props.provider,
                bucket=bucket_id,
                target_bucket=props.log_target.bucket_name,
                target_prefix=props.log_prefix or f"{props.bucket_name}/",
                depends_on=[props.log_target.policy],
            )
        if props.lifecycle_rules:
            S3BucketLifecycleConfiguration(
                self,
                "lifecycle",
                provider=props.provider,
                bucket=bucket_id,
                rule=list(props.lifecycle_rules),
                depends_on=[self.versioning],
            )

    def _objects(self, prefix: str | None) -> str:
        return f"{self.bucket_arn}/{prefix.strip('/') + '/' if prefix else ''}*"

    def _list(self, prefix: str | None) -> dict:
        condition = {"StringLike": {"s3:prefix": [f"{prefix.strip('/')}/*"]}} if prefix else None
        return statement(["s3:ListBucket"], [self.bucket_arn], condition=condition)

    def grant_read(self, role: GrantableRole, prefix: str | None = None) -> None:
        """GetObject under ``prefix`` (whole bucket if None), ListBucket of that prefix, decrypt."""
        role.add_statements(
            statement(["s3:GetObject", "s3:GetObjectVersion"], [self._objects(prefix)]), self._list(prefix)
        )
        if self.key:
            self.key.grant_decrypt(role)

    def grant_write(self, role: GrantableRole, prefix: str | None = None) -> None:
        """PutObject (and multipart abort) under ``prefix`` only; encrypt with the bucket's key."""
        role.add_statements(
            statement(["s3:PutObject", "s3:AbortMultipartUpload"], [self._objects(prefix)]), self._list(prefix)
        )
        if self.key:
            self.key.grant_encrypt_decrypt(role)
