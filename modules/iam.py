"""IAM roles whose permissions come from wiring: constructs call ``grant_*`` on them.

A :class:`GrantableRole` starts with a trust policy and no permissions. Every ``add_statements``
call re-renders one inline policy, so a role's policy is exactly the sum of the grants made to
it, each scoped to the ARNs of the resource that granted it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

# Context key under which a stack names the permissions boundary every GrantableRole below it gets.
BOUNDARY_CONTEXT = "odins-ravne:permissionsBoundary"


def apply_permissions_boundary(scope: Construct, boundary_arn: str) -> None:
    """Cap every GrantableRole created below ``scope`` (like AWS CDK's ``PermissionsBoundary.of``).

    Call it before adding children: construct context is fixed once a node has children.
    """
    scope.node.set_context(BOUNDARY_CONTEXT, boundary_arn)


def statement(
    actions: list[str], resources: list[str], *, sid: str | None = None, condition: dict | None = None
) -> dict:
    """One Allow statement; actions and resources are sorted so the JSON is stable."""
    out: dict = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": sorted(set(resources))}
    if sid:
        out["Sid"] = sid
    if condition:
        out["Condition"] = condition
    return out


def service_trust(service: str, *, source_account: str | None = None) -> dict:
    trust: dict = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if source_account:
        trust["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return {"Version": "2012-10-17", "Statement": [trust]}


def web_identity_trust(provider_arn: str, audience: str, subjects: list[str], *, issuer: str) -> dict:
    """Trust for OIDC federation (GitHub Actions): this audience and these subject patterns only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{issuer}:aud": audience},
                    "StringLike": {f"{issuer}:sub": sorted(subjects)},
                },
            }
        ],
    }


@dataclass(frozen=True)
class GrantableRoleProps:
    """Who may assume the role: an AWS ``service`` or, for federation, a whole ``trust_policy``."""

    name: str
    description: str
    service: str | None = None
    source_account: str | None = None
    managed_policy_arns: tuple[str, ...] = field(default_factory=tuple)
    trust_policy: dict | None = None

    def __post_init__(self) -> None:
        if (self.service is None) == (self.trust_policy is None):
            raise ValueError(f"role {self.name}: give exactly one of service and trust_policy")

    def trust(self) -> dict:
        return self.trust_policy or service_trust(self.service, source_account=self.source_account)


class GrantableRole(Construct):
    """An IAM role with one inline policy built from grants."""

    def __init__(self, scope: Construct, id_: str, props: GrantableRoleProps) -> None:
        super().__init__(scope, id_)
        self.role = IamRole(
            self,
            "role",
            name=props.name,
            description=props.description,
            assume_role_policy=json.dumps(props.trust()),
            max_session_duration=3600,
            permissions_boundary=self.node.try_get_context(BOUNDARY_CONTEXT),
        )
        for index, arn in enumerate(props.managed_policy_arns):
            IamRolePolicyAttachment(self, f"managed-{index}", role=self.role.name, policy_arn=arn)
        self.statements: list[dict] = []
        self._policy: IamRolePolicy | None = None
        self.role_arn: str = self.role.arn
        self.role_name: str = self.role.name

    def add_statements(self, *statements: dict) -> None:
        for new in statements:
            if new not in self.statements:
                self.statements.append(new)
        document = json.dumps({"Version": "2012-10-17", "Statement": self.statements})
        if self._policy is None:
            self._policy = IamRolePolicy(self, "grants", name="grants", role=self.role.name, policy=document)
        else:
            self._policy.policy = document
