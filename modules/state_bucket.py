"""The S3 bucket that holds Terraform state for one AWS account."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import S3BucketLifecycleConfigurationRuleExpiration
from constructs import Construct

from modules.encryption import PipelineKey, PipelineKeyProps
from modules.iam import GrantableRole, statement
from modules.secure_bucket import (
    SecureBucket,
    SecureBucketProps,
    housekeeping_rules,
    log_delivery_statement,
    whole_bucket_rule,
)

# Old state versions are the undo history of every apply: keep the last 50 for at least 90 days.
STATE_VERSIONS_KEPT = 50
STATE_VERSION_DAYS = 90
ACCESS_LOG_DAYS = 365  # who read or wrote state, kept a year for audits


@dataclass(frozen=True)
class StateBucketProps:
    bucket_name: str
    account_id: str
    region: str
    key_alias_name: str  # ``alias/...``; the S3 backends name its ARN (derived in the profile)


class StateBucket(Construct):
    """Versioned, KMS-encrypted, access-logged, private, TLS-only, protected from ``terraform destroy``.

    Its own customer-managed key (one per account, not a pipeline key): state must stay readable
    even if an environment's key is scheduled for deletion, and the bootstrap stack must not
    depend on any pipeline stack. Server access logs go to a companion SSE-S3 bucket (S3 cannot
    deliver them to an SSE-KMS one). Granting state access grants the key with it.
    """

    def __init__(self, scope: Construct, id_: str, props: StateBucketProps) -> None:
        super().__init__(scope, id_)
        self.key = PipelineKey(
            self,
            "key",
            PipelineKeyProps(
                prefix=props.bucket_name,
                account_id=props.account_id,
                region=props.region,
                prevent_destroy=True,
                purpose="state",
                alias_name=props.key_alias_name,
                service_statements=False,
            ),
        )
        log_name = f"{props.bucket_name}-logs"
        self.logs = SecureBucket(
            self,
            "logs",
            SecureBucketProps(
                bucket_name=log_name,
                prevent_destroy=True,
                lifecycle_rules=(
                    *housekeeping_rules(7, STATE_VERSION_DAYS),
                    whole_bucket_rule(
                        "expire-access-logs",
                        expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=ACCESS_LOG_DAYS)],
                    ),
                ),
                extra_policy_statements=(log_delivery_statement(log_name, props.account_id, props.bucket_name),),
            ),
        )
        alias_arn = f"arn:aws:kms:{props.region}:{props.account_id}:{props.key_alias_name}"
        secure = SecureBucket(
            self,
            "bucket",
            SecureBucketProps(
                bucket_name=props.bucket_name,
                key=self.key,
                key_aliases=(alias_arn,),
                prevent_destroy=True,
                log_target=self.logs,
                log_prefix="state/",
                lifecycle_rules=housekeeping_rules(7, STATE_VERSION_DAYS, keep_versions=STATE_VERSIONS_KEPT),
            ),
        )
        self.bucket = secure
        self.bucket_name: str = secure.bucket_name
        self.bucket_arn: str = secure.bucket_arn

    def grant_read_state(self, role: GrantableRole, key_prefix: str) -> None:
        """Read the state objects under ``key_prefix`` (a plan without taking the lock)."""
        self.bucket.grant_read(role, key_prefix)

    def grant_write_state(self, role: GrantableRole, key_prefix: str) -> None:
        """Read and write state under ``key_prefix``, and create/delete its ``.tflock`` objects."""
        self.bucket.grant_read(role, key_prefix)
        self.bucket.grant_write(role, key_prefix)
        role.add_statements(statement(["s3:DeleteObject"], [f"{self.bucket_arn}/{key_prefix.strip('/')}/*.tflock"]))
