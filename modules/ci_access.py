"""GitHub Actions access to one AWS account: the OIDC provider and the per-environment CI roles.

No long-lived keys: workflows exchange GitHub's OIDC token for short sessions. The plan role is
read-only (pull requests, and prod's plan on main); the deploy role can only be assumed from the
environment's protected GitHub environment, so prod's manual approval gates every apply. Every
role the deploy role creates must carry the env's permissions boundary (no IAM or account
changes), so a deploy cannot mint a role more powerful than itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_policy import IamPolicy
from constructs import Construct

from modules.iam import GrantableRole, GrantableRoleProps, statement, web_identity_trust
from modules.state_bucket import StateBucket

GITHUB_ISSUER = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
# Thumbprints of GitHub's OIDC certificate chain; AWS validates GitHub tokens against its own
# trust store and ignores them, but the API still wants at least one.
GITHUB_THUMBPRINTS = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
# Everything but IAM and Organizations; IAM is granted below, scoped to the environment's names.
POWER_USER = "arn:aws:iam::aws:policy/PowerUserAccess"
# What Terraform needs to manage the stack's roles, inline policies and instance profile. The
# actions that create or widen a role are only allowed when the role carries the env's boundary.
DEPLOY_IAM_ACTIONS = [
    "iam:AddRoleToInstanceProfile",
    "iam:CreateInstanceProfile",
    "iam:DeleteInstanceProfile",
    "iam:DeleteRole",
    "iam:GetInstanceProfile",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:PassRole",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
]
BOUNDED_IAM_ACTIONS = [
    "iam:AttachRolePolicy",
    "iam:CreateRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
]
# What no role of the pipeline may ever do, whatever its own policies say.
BOUNDARY_DENIED = [
    "account:*",
    "iam:Add*",
    "iam:Attach*",
    "iam:Change*",
    "iam:CreateAccessKey",
    "iam:CreateGroup",
    "iam:CreateInstanceProfile",
    "iam:CreateLoginProfile",
    "iam:CreateOpenIDConnectProvider",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:CreateRole",
    "iam:CreateSAMLProvider",
    "iam:CreateUser",
    "iam:Deactivate*",
    "iam:Delete*",
    "iam:Detach*",
    "iam:Put*",
    "iam:Remove*",
    "iam:Set*",
    "iam:Tag*",
    "iam:Untag*",
    "iam:Update*",
    "iam:Upload*",
    "organizations:*",
]


def boundary_document() -> dict:
    """A cap, not a grant: roles keep only what their own policies allow, minus IAM/account changes.

    ``iam:PassRole``, reads and ``iam:CreateServiceLinkedRole`` stay possible (the Batch service
    role's managed policy needs them).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            # "*" here grants nothing: a boundary only intersects with identity policies.
            {"Sid": "CapAtIdentityPolicies", "Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Sid": "NoIamOrAccountChanges", "Effect": "Deny", "Action": BOUNDARY_DENIED, "Resource": "*"},
        ],
    }


def plan_decrypt_statements(props: CiAccessProps) -> list[dict]:
    """kms:Decrypt with the env's pipeline key, which a refresh needs (ReadOnlyAccess has no Decrypt):
    DescribeStateMachine of its encrypted state machine, GetFunction of its functions, whose
    environments (no secrets: tests/test_aws_defects.py) are encrypted with it (AWS does not document
    what a caller without Decrypt gets back; a missing variable map would be a permanent diff). Never via SSM: pull
    requests assume this role, and the env's SecureString parameters hold its secrets. The key lives
    in the env's stack, so this account-level stack names it by alias (kms:ResourceAliases); each
    grant holds only through that service and for that env's resources (kms:ViaService and the
    encryption context each service sends).
    https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
    https://docs.aws.amazon.com/step-functions/latest/dg/encryption-at-rest.html
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html
    """
    keys = [f"arn:aws:kms:{props.region}:{props.account_id}:key/*"]  # the key's id is not known here
    uses = {
        "lambda": (
            "kms:EncryptionContext:aws:lambda:FunctionArn",
            f"arn:aws:lambda:{props.region}:{props.account_id}:function:{props.prefix}-*",
        ),
        "states": (
            "kms:EncryptionContext:aws:states:stateMachineArn",
            f"arn:aws:states:{props.region}:{props.account_id}:stateMachine:{props.prefix}-*",
        ),
    }
    return [
        statement(
            ["kms:Decrypt"],
            keys,
            condition={
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": props.pipeline_key_alias},
                "StringEquals": {"kms:ViaService": f"{service}.{props.region}.amazonaws.com"},
                "StringLike": {context: arn},
            },
        )
        for service, (context, arn) in uses.items()
    ]


class GithubOidc(Construct):
    """The account's one OIDC identity provider for GitHub Actions (one per URL per account)."""

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        provider = IamOpenidConnectProvider(
            self,
            "provider",
            url=f"https://{GITHUB_ISSUER}",
            client_id_list=[AUDIENCE],
            thumbprint_list=GITHUB_THUMBPRINTS,
        )
        self.provider_arn: str = provider.arn


@dataclass(frozen=True)
class CiAccessProps:
    prefix: str  # e.g. odins-ravne-prod: the deploy role may manage IAM names with this prefix only
    environment: str
    account_id: str
    github_repository: str
    state_bucket: StateBucket
    state_key_prefix: str  # e.g. odins-ravne/prod
    oidc: GithubOidc
    region: str  # the environment's region (its pipeline key, functions and state machine)
    pipeline_key_alias: str  # e.g. alias/odins-ravne-prod-pipeline (the key itself is in the env's stack)


class CiAccess(Construct):
    """The plan and deploy roles of one environment, trusted through the account's GitHub OIDC."""

    def __init__(self, scope: Construct, id_: str, props: CiAccessProps) -> None:
        super().__init__(scope, id_)
        provider_arn = props.oidc.provider_arn
        repo = f"repo:{props.github_repository}"
        self.plan_role = GrantableRole(
            self,
            "plan",
            GrantableRoleProps(
                name=f"{props.prefix}-ci-plan",
                description="Plans from pull requests and main: read-only, state read without the lock",
                trust_policy=web_identity_trust(
                    provider_arn,
                    AUDIENCE,
                    [f"{repo}:pull_request", f"{repo}:ref:refs/heads/main"],
                    issuer=GITHUB_ISSUER,
                ),
                managed_policy_arns=(READ_ONLY,),
            ),
        )
        props.state_bucket.grant_read_state(self.plan_role, props.state_key_prefix)
        self.plan_role.add_statements(*plan_decrypt_statements(props))
        self.deploy_role = GrantableRole(
            self,
            "deploy",
            GrantableRoleProps(
                name=f"{props.prefix}-ci-deploy",
                description=f"Applies reviewed plans from the protected GitHub environment {props.environment}",
                trust_policy=web_identity_trust(
                    provider_arn, AUDIENCE, [f"{repo}:environment:{props.environment}"], issuer=GITHUB_ISSUER
                ),
                managed_policy_arns=(POWER_USER,),
            ),
        )
        props.state_bucket.grant_write_state(self.deploy_role, props.state_key_prefix)
        self.boundary = IamPolicy(
            self,
            "boundary",
            name=f"{props.prefix}-boundary",
            description=f"Permissions boundary of every role of {props.prefix}: no IAM or account changes",
            policy=json.dumps(boundary_document()),
        )
        iam = f"arn:aws:iam::{props.account_id}"
        own = [f"{iam}:role/{props.prefix}-*", f"{iam}:instance-profile/{props.prefix}-*"]
        self.deploy_role.add_statements(
            statement(DEPLOY_IAM_ACTIONS, own),
            statement(
                BOUNDED_IAM_ACTIONS,
                [own[0]],
                condition={"StringEquals": {"iam:PermissionsBoundary": self.boundary.arn}},
            ),
            # CreateServiceLinkedRole names AWS's own roles (AWSServiceRoleForBatch, ...); it takes
            # no prefix we control, so it is limited by the service it creates the role for.
            statement(
                ["iam:CreateServiceLinkedRole"],
                [f"{iam}:role/aws-service-role/*"],
                condition={"StringLike": {"iam:AWSServiceName": ["batch.amazonaws.com", "spot.amazonaws.com"]}},
            ),
        )
        self.plan_role_arn: str = self.plan_role.role_arn
        self.deploy_role_arn: str = self.deploy_role.role_arn
        self.boundary_arn: str = self.boundary.arn
