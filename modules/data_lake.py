"""The S3 data lake: raw camera-trap images, stage outputs, curated Parquet, and access logs.

Every data bucket is a :class:`SecureBucket` under the pipeline key, logging to the access-log
bucket. In prod, raw and curated are replicated to another region under that region's own key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import TerraformProvider
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleTransition,
)
from cdktf_cdktf_provider_aws.s3_bucket_notification import S3BucketNotification
from cdktf_cdktf_provider_aws.s3_bucket_replication_configuration import (
    S3BucketReplicationConfigurationA,
    S3BucketReplicationConfigurationRule,
    S3BucketReplicationConfigurationRuleDeleteMarkerReplication,
    S3BucketReplicationConfigurationRuleDestination,
    S3BucketReplicationConfigurationRuleDestinationEncryptionConfiguration,
    S3BucketReplicationConfigurationRuleFilter,
    S3BucketReplicationConfigurationRuleSourceSelectionCriteria,
    S3BucketReplicationConfigurationRuleSourceSelectionCriteriaSseKmsEncryptedObjects,
)
from constructs import Construct

from conf.profile import DataLakeSettings
from modules.encryption import PipelineKey, PipelineKeyProps
from modules.iam import GrantableRole, GrantableRoleProps, statement
from modules.secure_bucket import (
    SecureBucket,
    SecureBucketProps,
    housekeeping_rules,
    log_delivery_statement,
    whole_bucket_rule,
)

DATA_BUCKETS = ("raw", "processed", "curated")
REPLICATED = ("raw", "curated")
ARCHIVED_PREFIX = "images/"  # the raw bucket's camera images; never manifests/


@dataclass(frozen=True)
class DataLakeProps:
    prefix: str
    account_id: str
    region: str
    key: PipelineKey
    settings: DataLakeSettings
    replica_provider: TerraformProvider | None = None


def lifecycle_rules(
    settings: DataLakeSettings,
    *,
    tiering: bool,
    expire_days: int | None = None,
    noncurrent_days: int | None = None,
) -> tuple[S3BucketLifecycleConfigurationRule, ...]:
    """Abort stale multipart uploads, expire old versions; raw images also tier down and archive.

    Only ``images/`` is archived, and to Glacier Instant Retrieval: GetObject reads it at once
    (GLACIER would need a restore first, InvalidObjectState, and a re-run of an old manifest reads
    its images); camera-trap images are above its 128 KB minimum billable size. ``expire_days``
    ends current versions (processed: intermediate stage outputs)."""
    rules = list(
        housekeeping_rules(settings.abort_multipart_days, noncurrent_days or settings.noncurrent_expiration_days)
    )
    if tiering:
        rules.append(
            S3BucketLifecycleConfigurationRule(
                id="tier-then-archive",
                status="Enabled",
                filter=[S3BucketLifecycleConfigurationRuleFilter(prefix=ARCHIVED_PREFIX)],
                transition=[
                    S3BucketLifecycleConfigurationRuleTransition(
                        days=settings.intelligent_tiering_days, storage_class="INTELLIGENT_TIERING"
                    ),
                    S3BucketLifecycleConfigurationRuleTransition(
                        days=settings.archive_days, storage_class="GLACIER_IR"
                    ),
                ],
            )
        )
    if expire_days:
        rules.append(
            whole_bucket_rule(
                "expire-objects", expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=expire_days)]
            )
        )
    return tuple(rules)


class DataLake(Construct):
    """``raw``, ``processed``, ``curated`` and ``logs`` buckets; ``bucket(name)`` returns one."""

    def __init__(self, scope: Construct, id_: str, props: DataLakeProps) -> None:
        super().__init__(scope, id_)
        settings = props.settings
        self.logs = self._log_bucket("logs", f"{props.prefix}-access-logs-{props.account_id}", props)
        self.buckets: dict[str, SecureBucket] = {"logs": self.logs}
        for name in DATA_BUCKETS:
            self.buckets[name] = SecureBucket(
                self,
                name,
                SecureBucketProps(
                    bucket_name=f"{props.prefix}-{name}-{props.account_id}",
                    key=props.key,
                    force_destroy=settings.force_destroy,
                    prevent_destroy=settings.prevent_destroy,
                    log_target=self.logs,
                    log_prefix=f"{name}/",
                    lifecycle_rules=lifecycle_rules(
                        settings,
                        tiering=name == "raw",
                        expire_days=settings.processed_expiration_days if name == "processed" else None,
                    ),
                ),
            )
        # New objects in raw (e.g. manifests/) become EventBridge events the workflow can start from.
        S3BucketNotification(self, "raw-events", bucket=self.raw.bucket.id, eventbridge=True)
        if settings.replica_region and props.replica_provider is not None:
            self._replicate(props)

    @property
    def raw(self) -> SecureBucket:
        return self.buckets["raw"]

    @property
    def processed(self) -> SecureBucket:
        return self.buckets["processed"]

    @property
    def curated(self) -> SecureBucket:
        return self.buckets["curated"]

    def bucket(self, name: str) -> SecureBucket:
        return self.buckets[name]

    def _log_bucket(self, id_: str, name: str, props: DataLakeProps, provider=None) -> SecureBucket:
        """Server access logs of this env's buckets in one region (SSE-S3: S3 delivers to no SSE-KMS bucket)."""
        settings = props.settings
        return SecureBucket(
            self,
            id_,
            SecureBucketProps(
                bucket_name=name,
                force_destroy=settings.force_destroy,
                prevent_destroy=settings.prevent_destroy,
                lifecycle_rules=(
                    *lifecycle_rules(settings, tiering=False),
                    whole_bucket_rule(
                        "expire-access-logs",
                        expiration=[
                            S3BucketLifecycleConfigurationRuleExpiration(days=settings.access_log_expiration_days)
                        ],
                    ),
                ),
                extra_policy_statements=(log_delivery_statement(name, props.account_id, f"{props.prefix}-*"),),
                provider=provider,
            ),
        )

    def _replicate(self, props: DataLakeProps) -> None:
        """Cross-region copies of raw and curated, encrypted with the replica region's own key."""
        settings = props.settings
        replica_key = PipelineKey(
            self,
            "replica-key",
            PipelineKeyProps(
                prefix=f"{props.prefix}-replica",
                account_id=props.account_id,
                region=settings.replica_region,
                prevent_destroy=settings.prevent_destroy,
                provider=props.replica_provider,
            ),
        )
        role = GrantableRole(
            self,
            "replication-role",
            GrantableRoleProps(
                name=f"{props.prefix}-s3-replication",
                service="s3.amazonaws.com",
                description="Replicates raw and curated to the replica region",
                source_account=props.account_id,
            ),
        )
        props.key.grant_decrypt(role)
        replica_key.grant_encrypt_decrypt(role)
        self.replicas: dict[str, SecureBucket] = {}
        # Access logs cannot cross regions: the replicas log to a log bucket in their own region.
        self.replica_logs = self._log_bucket(
            "logs-replica", f"{props.prefix}-access-logs-replica-{props.account_id}", props, props.replica_provider
        )
        for name in REPLICATED:
            source = self.buckets[name]
            replica = SecureBucket(
                self,
                f"{name}-replica",
                SecureBucketProps(
                    bucket_name=f"{props.prefix}-{name}-replica-{props.account_id}",
                    key=replica_key,
                    prevent_destroy=settings.prevent_destroy,
                    # A replica is the copy a deletion or overwrite in the source must not reach:
                    # it keeps old versions longer than the source does.
                    lifecycle_rules=lifecycle_rules(
                        settings, tiering=True, noncurrent_days=settings.replica_noncurrent_expiration_days
                    ),
                    log_target=self.replica_logs,
                    log_prefix=f"{name}-replica/",
                    provider=props.replica_provider,
                ),
            )
            self.replicas[name] = replica
            role.add_statements(
                statement(["s3:GetReplicationConfiguration", "s3:ListBucket"], [source.bucket_arn]),
                statement(
                    ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
                    [f"{source.bucket_arn}/*"],
                ),
                statement(
                    ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"], [f"{replica.bucket_arn}/*"]
                ),
            )
            S3BucketReplicationConfigurationA(
                self,
                f"{name}-replication",
                bucket=source.bucket.id,
                role=role.role_arn,
                depends_on=[source.versioning, replica.versioning],
                rule=[
                    S3BucketReplicationConfigurationRule(
                        id=f"{name}-to-{settings.replica_region}",
                        status="Enabled",
                        filter=S3BucketReplicationConfigurationRuleFilter(prefix=""),
                        # Deletions stay in the source: the replica keeps what was deleted there.
                        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/delete-marker-replication.html
                        delete_marker_replication=S3BucketReplicationConfigurationRuleDeleteMarkerReplication(
                            status="Disabled"
                        ),
                        source_selection_criteria=S3BucketReplicationConfigurationRuleSourceSelectionCriteria(
                            sse_kms_encrypted_objects=(
                                S3BucketReplicationConfigurationRuleSourceSelectionCriteriaSseKmsEncryptedObjects(
                                    status="Enabled"
                                )
                            )
                        ),
                        destination=S3BucketReplicationConfigurationRuleDestination(
                            bucket=replica.bucket_arn,
                            storage_class="STANDARD_IA",
                            encryption_configuration=(
                                S3BucketReplicationConfigurationRuleDestinationEncryptionConfiguration(
                                    replica_kms_key_id=replica_key.key_arn
                                )
                            ),
                        ),
                    )
                ],
            )
