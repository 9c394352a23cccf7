"""The S3 bucket that holds Terraform state for one AWS account."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from modules.secure_bucket import SecureBucket, SecureBucketProps


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
        secure = SecureBucket(self, "bucket", SecureBucketProps(bucket_name=props.bucket_name, prevent_destroy=True))
        self.bucket_name: str = secure.bucket_name
        self.bucket_arn: str = secure.bucket_arn
