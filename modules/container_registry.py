"""ECR repositories for the Batch stage images: scanned, immutable, KMS-encrypted, pruned."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktf_cdktf_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement


@dataclass(frozen=True)
class StageRepositoriesProps:
    prefix: str
    stages: tuple[str, ...]
    key: PipelineKey
    keep_last_images: int
    force_delete: bool


def keep_last_policy(count: int) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Keep the last {count} images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count},
                    "action": {"type": "expire"},
                }
            ]
        }
    )


class StageRepositories(Construct):
    """One repository per stage; ``url(stage)`` is what a job definition's image starts with."""

    def __init__(self, scope: Construct, id_: str, props: StageRepositoriesProps) -> None:
        super().__init__(scope, id_)
        self.repositories: dict[str, EcrRepository] = {}
        self._urls: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        for stage in props.stages:
            repo = EcrRepository(
                self,
                stage,
                name=f"{props.prefix}/{stage}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
                encryption_configuration=[
                    EcrRepositoryEncryptionConfiguration(encryption_type="KMS", kms_key=props.key.key_arn)
                ],
                force_delete=props.force_delete or None,
            )
            EcrLifecyclePolicy(
                self, f"{stage}-lifecycle", repository=repo.name, policy=keep_last_policy(props.keep_last_images)
            )
            self.repositories[stage] = repo
            self._urls[stage], self._arns[stage] = repo.repository_url, repo.arn

    def url(self, stage: str) -> str:
        return self._urls[stage]

    def arn(self, stage: str) -> str:
        return self._arns[stage]

    def grant_pull(self, role: GrantableRole) -> None:
        role.add_statements(
            statement(
                ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                list(self._arns.values()),
            ),
            # GetAuthorizationToken is account-wide: AWS defines no resource for it.
            statement(["ecr:GetAuthorizationToken"], ["*"]),
        )
