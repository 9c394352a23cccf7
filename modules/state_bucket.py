"""The S3 bucket that holds Terraform state for one AWS account."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from modules.iam import GrantableRole, statement
from modules.secure_bucket import SecureBucket, SecureBucketProps, housekeeping_rules

# Old state versions are the undo history of every apply: keep the last 50 for at least 90 days.
STATE_VERSIONS_KEPT = 50
STATE_VERSION_DAYS = 90


@dataclass(frozen=True)
class StateBucketProps:
    bucket_name: str


class StateBucket(Construct):
    """Versioned, encrypted, private, TLS-only, and protected from ``terraform destroy``.

    SSE-S3 rather than a pipeline key: state must stay readable even if an environment's key is
    scheduled for deletion, and the bootstrap stack must not depend on any pipeline stack.
    """

    def __init__(self, scope: Construct, id_: str, props: StateBucketProps) -> None:
        super().__init__(scope, id_)
        secure = SecureBucket(
            self,
            "bucket",
            SecureBucketProps(
                bucket_name=props.bucket_name,
                prevent_destroy=True,
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
