"""IAM roles whose permissions come from wiring: constructs call ``grant_*`` on them.

A :class:`GrantableRole` starts with a trust policy and no permissions. Grants add statements in
Python; when the stack is complete, :func:`render_grants` creates each role's one inline policy,
so a role's policy is exactly the sum of the grants made to it, each scoped to the ARNs of the
resource that granted it (rendered once: every jsii property write is a round trip to Node).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import ClassVar

from cdktf_cdktf_provider_aws.iam_policy import IamPolicy
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


_TOKEN_NUMBER = re.compile(r"TOKEN\.\d+")


def token_blind(value: str) -> str:
    """A sort key that ignores the process-specific numbers inside cdktf tokens."""
    return _TOKEN_NUMBER.sub("TOKEN", value)


def statement(
    actions: list[str], resources: list[str], *, sid: str | None = None, condition: dict | None = None
) -> dict:
    """One Allow statement; actions and resources are sorted so the JSON is stable.

    Unresolved tokens (``${TfToken[TOKEN.12]}``) sort as equals and keep the caller's order: their
    numbers depend on how much else the process built, and must not reorder the output.
    """
    unique = list(dict.fromkeys(resources))
    out: dict = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": sorted(unique, key=token_blind)}
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
    """An IAM role with one inline policy built from grants (created by :func:`render_grants`)."""

    # Roles whose policy is not rendered yet: those of the stack under construction.
    unrendered: ClassVar[list[GrantableRole | GrantablePolicy]] = []

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
        self.role_arn: str = self.role.arn
        self.role_name: str = self.role.name
        # What uses the role's managed policies must wait for these (IAM attaches them after the role).
        self.attachments = [
            IamRolePolicyAttachment(self, f"managed-{index}", role=self.role_name, policy_arn=arn)
            for index, arn in enumerate(props.managed_policy_arns)
        ]
        self.statements: list[dict] = []
        self.policy: IamRolePolicy | None = None
        self.rendered = False
        GrantableRole.unrendered.append(self)

    def add_statements(self, *statements: dict) -> None:
        if self.rendered:
            raise RuntimeError(f"role {self.node.path}: grant after render_grants(); grant while building the stack")
        for new in statements:
            if new not in self.statements:
                self.statements.append(new)

    def render(self) -> None:
        """Create the inline policy from every statement granted so far (no policy without grants)."""
        if self.statements and not self.rendered:
            document = json.dumps({"Version": "2012-10-17", "Statement": self.statements})
            self.policy = IamRolePolicy(self, "grants", name="grants", role=self.role_name, policy=document)
        self.rendered = True


class GrantablePolicy(Construct):
    """A customer-managed policy built from grants, like a :class:`GrantableRole`'s inline one, for
    principals this stack does not define (people's roles, groups): they attach it by name."""

    def __init__(self, scope: Construct, id_: str, *, name: str, description: str) -> None:
        super().__init__(scope, id_)
        self.name, self.description = name, description
        self.statements: list[dict] = []
        self.policy: IamPolicy | None = None
        self.rendered = False
        GrantableRole.unrendered.append(self)

    add_statements = GrantableRole.add_statements

    def render(self) -> None:
        if self.statements and not self.rendered:
            document = json.dumps({"Version": "2012-10-17", "Statement": self.statements})
            self.policy = IamPolicy(self, "policy", name=self.name, description=self.description, policy=document)
        self.rendered = True


def render_grants() -> None:
    """Render the inline policy of every role built since the last call; a stack calls it last."""
    while GrantableRole.unrendered:
        GrantableRole.unrendered.pop(0).render()
