"""GitHub Actions workflows (schema, zizmor, pinning, the seven steps) and the CI roles they assume."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conf import known_environments, load_profile
from tests.conftest import REPO, SynthResult

WORKFLOWS = REPO / ".github" / "workflows"
SETUP_ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
SCAN_BIN = REPO / ".venv-scan" / "bin"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def cloud_envs() -> list[str]:
    return [env for env in known_environments() if load_profile(env).is_cloud]


def steps_text(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


@pytest.mark.parametrize(
    ("schema", "files"),
    [
        ("vendor.github-workflows", sorted(WORKFLOWS.glob("*.yml"))),
        ("vendor.github-actions", [SETUP_ACTION]),
    ],
)
def test_workflows_and_actions_match_githubs_schemas(schema: str, files: list[Path]) -> None:
    assert len(files) in {1, 3}
    proc = subprocess.run(
        [SCAN_BIN / "check-jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing() -> None:
    proc = subprocess.run(
        [SCAN_BIN / "zizmor", "--offline", "--no-progress", str(WORKFLOWS.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


def test_zizmor_config_disables_only_the_self_repository_rule() -> None:
    """`uses: $/...` is behind a runner feature flag (actions/runner#4457): we keep `./...`."""
    config = yaml.safe_load((WORKFLOWS.parent / "zizmor.yml").read_text())
    assert config == {"rules": {"self-repository": {"disable": True}}}


def test_third_party_actions_are_pinned_by_commit_sha() -> None:
    for path in [*WORKFLOWS.glob("*.yml"), SETUP_ACTION]:
        uses = re.findall(r"^\s*(?:- )?uses:\s*(\S+)(.*)$", path.read_text(), re.MULTILINE)
        assert uses, path
        for target, comment in uses:
            if target.startswith("./"):
                continue  # this repository's own reusable workflow
            assert PINNED.match(target), f"{path.name}: {target} is not pinned by a 40-hex commit SHA"
            assert re.match(r"\s*# v\d", comment), f"{path.name}: {target} lacks its `# vX.Y.Z` comment"


def test_checks_run_the_makefile_steps_in_order() -> None:
    [job] = workflow("checks.yml")["jobs"].values()
    assert [s.get("uses", "").split("@")[0] for s in job["steps"][:2]] == [
        "actions/checkout",
        "./.github/actions/setup",
    ]
    setup = yaml.safe_load(SETUP_ACTION.read_text())["runs"]["steps"]
    assert setup[-1]["run"] == "make setup", "CI sets up through the same Makefile as a laptop"
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == [
        "make lint lint-workflows",
        "make test",
        "make synth",
        "make preflight",
        "make validate",
        "make security",
    ]
    assert job["permissions"] == {"contents": "read"}


def test_pull_requests_plan_every_cloud_env_with_its_read_only_role() -> None:
    flow = workflow("pull-request.yml")
    assert flow["permissions"] == {}
    plan = flow["jobs"]["plan"]
    assert plan["needs"] == "checks" and sorted(plan["strategy"]["matrix"]["env"]) == cloud_envs()
    assert plan["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    text = steps_text(plan)
    assert 'conf "$ENV" ci_plan_role_arn' in text and "ci_deploy_role_arn" not in text
    assert 'make plan ENV="$ENV" LOCK=false' in text
    assert "actions/upload-artifact@" in text and "actions/github-script@" in text
    script = next(s["with"]["script"] for s in plan["steps"] if "github-script" in s.get("uses", ""))
    assert "review\\.part-" in script and "deleteComment" in script  # numbered parts, stale parts removed


def test_main_deploys_staging_then_the_reviewed_prod_plan_after_approval() -> None:
    jobs = workflow("main.yml")["jobs"]
    assert [jobs[j].get("needs") for j in ("deploy-staging", "plan-prod", "deploy-prod")] == [
        "checks",
        "deploy-staging",
        "plan-prod",
    ]
    staging = steps_text(jobs["deploy-staging"])
    order = [staging.index(s) for s in ("make plan", "make apply-plan", "make health", "make integration")]
    assert order == sorted(order) and "ci_deploy_role_arn" in staging
    assert jobs["deploy-staging"]["environment"] == "staging"
    prod_plan = steps_text(jobs["plan-prod"])
    assert "ci_plan_role_arn" in prod_plan and "LOCK=false" in prod_plan and "environment" not in jobs["plan-prod"]
    deploy = jobs["deploy-prod"]
    assert deploy["environment"] == "prod", "the prod GitHub environment's reviewers are the manual approval"
    text = steps_text(deploy)
    assert "download-artifact" in text and "make plan" not in text, "prod applies the reviewed plan, not a new one"
    assert text.index("make apply-plan") < text.index("make health")


def test_ci_entry_point_runs_the_readme_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "make setup" in script and "make test" in script
    assert "make test" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_bootstrap_creates_the_roles_the_profiles_name(synth: SynthResult, env: str) -> None:
    profile = load_profile(env)
    stack = synth.stack(f"state-bootstrap-{profile.account_id}")
    roles = {r["name"]: r for r in stack["resource"]["aws_iam_role"].values()}
    plan_name = profile.ci_plan_role_arn.rsplit("/", 1)[1]
    deploy_name = profile.ci_deploy_role_arn.rsplit("/", 1)[1]
    assert profile.ci_plan_role_arn == f"arn:aws:iam::{profile.account_id}:role/{plan_name}"
    [provider] = stack["resource"]["aws_iam_openid_connect_provider"].values()
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["client_id_list"] == ["sts.amazonaws.com"]

    def subjects(name: str) -> list[str]:
        [trust] = json.loads(roles[name]["assume_role_policy"])["Statement"]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Condition"]["StringEquals"] == {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
        return trust["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"]

    repo = f"repo:{profile.ci.github_repository}"
    assert subjects(plan_name) == [f"{repo}:pull_request", f"{repo}:ref:refs/heads/main"]
    assert subjects(deploy_name) == [f"{repo}:environment:{env}"]
    attachments = {a["policy_arn"]: a["role"] for a in stack["resource"]["aws_iam_role_policy_attachment"].values()}
    assert "arn:aws:iam::aws:policy/ReadOnlyAccess" in attachments
    policies = {
        p["role"]: json.loads(p["policy"])["Statement"] for p in stack["resource"]["aws_iam_role_policy"].values()
    }
    plan_policy = next(v for k, v in policies.items() if f"ci-{env}_plan" in k)
    plan_actions = {a for s in plan_policy for a in s["Action"]}
    # Reads state (and decrypts it with the state key); never writes.
    assert plan_actions == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "kms:Decrypt", "kms:DescribeKey"}
    deploy_policy = next(v for k, v in policies.items() if f"ci-{env}_deploy" in k)
    iam = next(s for s in deploy_policy if "iam:GetRole" in s["Action"])
    assert iam["Resource"] == [
        f"arn:aws:iam::{profile.account_id}:instance-profile/{profile.prefix}-*",
        f"arn:aws:iam::{profile.account_id}:role/{profile.prefix}-*",
    ]
    assert not any(a == "iam:*" or a == "*" for s in deploy_policy for a in s["Action"])
    [boundary_key] = [k for k in stack["resource"]["aws_iam_policy"] if k.startswith(f"ci-{env}_boundary")]
    boundary = stack["resource"]["aws_iam_policy"][boundary_key]
    assert profile.permissions_boundary_arn.endswith(f":policy/{boundary['name']}")
    widening = {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary"}
    bounded = {"StringEquals": {"iam:PermissionsBoundary": f"${{aws_iam_policy.{boundary_key}.arn}}"}}
    granting = [s for s in deploy_policy if widening & set(s["Action"])]
    assert granting, "the deploy role manages the stack's roles"
    for grant in granting:  # the deploy role can only create or widen roles that carry the boundary
        assert grant.get("Condition") == bounded, grant
        assert grant["Resource"] == [f"arn:aws:iam::{profile.account_id}:role/{profile.prefix}-*"]
    deny = next(s for s in json.loads(boundary["policy"])["Statement"] if s["Effect"] == "Deny")
    assert {"iam:CreateRole", "iam:CreatePolicy", "iam:Put*", "iam:Attach*", "iam:Delete*"} <= set(deny["Action"])
    assert "iam:PassRole" not in deny["Action"] and "iam:CreateServiceLinkedRole" not in deny["Action"]


def test_every_cloud_pipeline_role_carries_the_boundary(synth: SynthResult) -> None:
    for env in ("dev", "staging", "prod", "local"):
        profile = load_profile(env)
        roles = synth.resources(env, "aws_iam_role")
        assert len(roles) >= 10
        for name, role in roles.items():
            assert role.get("permissions_boundary") == profile.permissions_boundary_arn, (env, name)


def test_main_pushes_stage_images_before_the_apply_that_references_them() -> None:
    jobs = workflow("main.yml")["jobs"]
    for name in ("deploy-staging", "deploy-prod"):
        runs = [step.get("run", "") for step in jobs[name]["steps"]]
        images = next(i for i, run in enumerate(runs) if run.startswith('make images ENV="$ENV"'))
        apply = next(i for i, run in enumerate(runs) if "make apply-plan" in run)
        assert images < apply, f"{name}: images are pushed before the apply"
        assert any("make images-check" in run for run in runs[apply:]), f"{name}: ECR is checked after the apply"
    staging = [step.get("run", "") for step in jobs["deploy-staging"]["steps"]]
    assert staging.index('make preflight ENV="$ENV"') < staging.index('make plan ENV="$ENV"')
    pull = [s.get("run", "") for s in workflow("pull-request.yml")["jobs"]["plan"]["steps"]]
    assert any("make preflight" in run for run in pull)
