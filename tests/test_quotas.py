"""Quotas before apply (tools/quotas.py): the synthesized stack's needs against the account's quotas.

Service Quotas is not reachable here and moto serves only VPC quotas, so its answers come through
botocore's Stubber, which checks every request and answer against the service's own API model; the
answers have the documented shape of GetServiceQuota / GetAWSDefaultServiceQuota
(https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html). Batch's
per-account counts are read from moto's Batch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from moto import mock_aws

from tests.conftest import REPO, SynthResult
from tools import quotas

REGION = "eu-north-1"


def client(service: str):
    return boto3.client(service, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")


def answer(need: quotas.Need, value: float) -> dict:
    return {
        "Quota": {
            "ServiceCode": need.service,
            "ServiceName": need.service,
            "QuotaArn": f"arn:aws:servicequotas:{REGION}:111111111111:{need.service}/{need.code}",
            "QuotaCode": need.code,
            "QuotaName": need.name,
            "Value": value,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
        }
    }


def judged(config: dict, values: dict[str, float | None]) -> list[str]:
    """tools.quotas.check with Service Quotas answering ``values`` by quota code (None: never changed,
    so NoSuchResourceException and then AWS's default of 0)."""
    service_quotas = client("service-quotas")
    with Stubber(service_quotas) as stub:
        for need in quotas.needs(config)[0]:
            params = {"ServiceCode": need.service, "QuotaCode": need.code}
            if values[need.code] is None:
                stub.add_client_error("get_service_quota", "NoSuchResourceException", expected_params=params)
                stub.add_response("get_aws_default_service_quota", answer(need, 0.0), params)
            else:
                stub.add_response("get_service_quota", answer(need, values[need.code]), params)
        lines = quotas.check(config, REGION, service_quotas, None)
        stub.assert_no_pending_responses()
    return lines


def reserving(config: dict, units: int) -> dict:
    """``config`` with ``units`` of concurrency reserved on each function (the profiles reserve none by
    default: functions.reserved_concurrency is opt-in, after the account's quota is raised)."""
    config = copy.deepcopy(config)
    for function in config["resource"]["aws_lambda_function"].values():
        function["reserved_concurrent_executions"] = units
    return config


def test_no_reservation_needs_no_lambda_quota(synth: SynthResult) -> None:
    assert "L-B99A9384" not in {need.code for need in quotas.needs(synth.pipeline("dev"))[0]}


def test_needs_of_the_dev_stack(synth: SynthResult) -> None:
    config = reserving(synth.pipeline("dev"), 5)
    functions = len(config["resource"]["aws_lambda_function"])
    environments = config["resource"]["aws_batch_compute_environment"].values()
    by_code = {need.code: need for need in quotas.needs(config)[0]}
    assert by_code["L-B99A9384"].amount == 5 * functions + 100
    gpu = next(e for e in environments if e["compute_environment_name"].endswith("-gpu"))
    cpu = next(e for e in environments if e["compute_environment_name"].endswith("-cpu"))
    assert by_code["L-3819A6DF"].amount == gpu["compute_resources"]["max_vcpus"]  # All G and VT Spot
    assert by_code["L-34B43A08"].amount == cpu["compute_resources"]["max_vcpus"]  # All Standard Spot
    assert quotas.needs(config)[1] == []


@pytest.mark.parametrize(
    ("instance_type", "family"),
    [("g4dn.xlarge", "g"), ("vt1.3xlarge", "g"), ("c6i.2xlarge", "standard"), ("m5.large", "standard"),
     ("p4d.24xlarge", "p"), ("inf2.xlarge", "inf"), ("x2idn.16xlarge", "x"), ("trn1.2xlarge", "trn")],
)  # fmt: skip
def test_instance_families(instance_type: str, family: str) -> None:
    assert quotas.family(instance_type) == family


def test_too_small_quotas_are_refused_one_line_each(synth: SynthResult) -> None:
    config = reserving(synth.pipeline("dev"), 5)
    lines = judged(config, {"L-B99A9384": 50.0, "L-3819A6DF": None, "L-34B43A08": 1000.0})
    assert len(lines) == 2, lines
    lambda_line = next(line for line in lines if "L-B99A9384" in line)
    assert "quota 'Concurrent executions' (lambda L-B99A9384) is 50 in eu-north-1" in lambda_line
    assert "+ the 100 AWS keeps unreserved" in lambda_line
    assert (
        "https://eu-north-1.console.aws.amazon.com/servicequotas/home/services/lambda/quotas/L-B99A9384" in lambda_line
    )
    gpu_line = next(line for line in lines if "L-3819A6DF" in line)
    assert gpu_line.startswith("quota 'All G and VT Spot Instance Requests' (ec2 L-3819A6DF) is 0 in eu-north-1")
    assert "odins-ravne-dev-gpu max_vcpus" in gpu_line and "\n" not in gpu_line


def test_quotas_that_hold_pass(synth: SynthResult) -> None:
    config = synth.pipeline("prod")
    assert judged(config, {need.code: 10_000.0 for need in quotas.needs(config)[0]}) == []


def test_an_unknown_instance_family_is_refused(synth: SynthResult) -> None:
    config = copy.deepcopy(synth.pipeline("dev"))
    environment = next(iter(config["resource"]["aws_batch_compute_environment"].values()))
    environment["compute_resources"]["instance_type"] = ["trn1.2xlarge"]
    problems = quotas.needs(config)[1]
    assert len(problems) == 1 and "no SPOT vCPU quota known for instance family 'trn'" in problems[0]


@mock_aws
def test_batch_compute_environments_per_account(synth: SynthResult) -> None:
    """The account already has 49 compute environments (moto's Batch); the stack's two make 51 > 50."""
    role = client("iam").create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = client("batch")
    for index in range(49):
        batch.create_compute_environment(computeEnvironmentName=f"other-{index}", type="UNMANAGED", serviceRole=role)
    lines = list(quotas.batch_counts(batch, synth.pipeline("dev")))
    assert len(lines) == 1 and "Batch allows 50 compute environments per account and region" in lines[0], lines
    assert "the account has 49 and this stack adds 2 (51)" in lines[0]


def test_command_line_missing_stack_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.quotas", str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def real_dev(synth: SynthResult, tmp_path: Path) -> tuple[Path, Path]:
    """The dev profile and its synthesized stacks with a real-looking account and alert address (the
    example ones stop deploy-aws at preflight): (profiles folder, stacks folder)."""
    swap = {"111111111111": "210987654321", "odins-ravne-dev-alerts@example.org": "ops@odins-ravne.no"}

    def real(text: str) -> str:
        for old, new in swap.items():
            text = text.replace(old, new)
        return text

    profiles, stacks = tmp_path / "profiles", tmp_path / "stacks"
    profiles.mkdir()
    for source in (REPO / "conf" / "profiles").glob("*.yaml"):
        (profiles / source.name).write_text(
            real(source.read_text()) if source.name == "dev.yaml" else source.read_text()
        )
    for name in ("pipeline-dev", "state-bootstrap-111111111111"):
        folder = stacks / real(name)
        folder.mkdir(parents=True)
        (folder / "cdk.tf.json").write_text(real((synth.outdir / "stacks" / name / "cdk.tf.json").read_text()))
    return profiles, stacks


@contextlib.contextmanager
def aws_at_moto(answers: dict[str, float], tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A moto server of this test (Batch, Step Functions), dummy credentials aimed at it, and the quota
    answers file: (environment, answers file)."""
    from moto.server import ThreadedMotoServer

    from local.emulator import free_port

    file = tmp_path / "answers.json"
    file.write_text(json.dumps(answers))
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield (
            {
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            },
            file,
        )
    finally:
        server.stop()


def run_quotas(stack: Path, answers: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.quotas", str(stack), "--answers", str(answers)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_aws_stops_at_a_too_small_quota_before_any_change(synth: SynthResult, tmp_path: Path) -> None:
    """The real chain `make deploy-aws ENV=dev` (review of issue 26, item 14: proven by running it, not
    by reading the Makefile): preflight passes, the credentials check passes, the quotas step reads a GPU
    Spot quota of 4 vCPUs and refuses in one line; the plan, image push and apply never start. AWS is a
    moto server (Batch and Step Functions counts); Service Quotas, which does not run here, answers from
    a file (tools.quotas --answers)."""
    from tests.test_one_line_errors import make

    profiles, stacks = real_dev(synth, tmp_path)
    with aws_at_moto({"ec2/L-3819A6DF": 4, "ec2/L-34B43A08": 1000}, tmp_path) as (env, answers):
        proc = make(
            "deploy-aws",
            "ENV=dev",
            "SYNTH=true",
            f"STACKS_OUT={stacks}",
            f"QUOTA_ARGS=--answers {answers}",
            env={"ODINS_PROFILE_DIR": str(profiles), **env},
            tmp=tmp_path,
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output, output
    assert "preflight pipeline-dev: 0 finding(s)" in output and "preflight state-bootstrap-210987654321: 0" in output
    (error,) = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert error.startswith(
        "error: quota 'All G and VT Spot Instance Requests' (ec2 L-3819A6DF) is 4 in eu-north-1; this stack needs 100"
    ), error
    assert "servicequotas/home/services/ec2/quotas/L-3819A6DF" in error
    assert "tools.plan" not in output and "pipeline_ops.images" not in output, output


def test_enough_quota_lets_the_quotas_step_pass(synth: SynthResult, tmp_path: Path) -> None:
    _, stacks = real_dev(synth, tmp_path)
    with aws_at_moto({"ec2/L-3819A6DF": 128, "ec2/L-34B43A08": 1000}, tmp_path) as (env, answers):
        proc = run_quotas(stacks / "pipeline-dev", answers, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "every quota holds what the stack needs in eu-north-1" in proc.stdout
        answers.write_text(json.dumps({"ec2/L-3819A6DF": 128}))
        missing = run_quotas(stacks / "pipeline-dev", answers, env)
    assert missing.returncode == 2 and missing.stderr.startswith("error:"), missing.stderr
    assert "no answer for ec2/L-34B43A08" in missing.stderr and "Traceback" not in missing.stderr


def test_a_distributed_map_beyond_the_map_run_limit_is_refused(synth: SynthResult) -> None:
    """A Map Run runs at most 10,000 child executions at once (not adjustable):
    https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html"""
    config = copy.deepcopy(synth.pipeline("dev"))
    assert quotas.needs(config)[1] == []
    machine = next(iter(config["resource"]["aws_sfn_state_machine"].values()))
    definition = json.loads(machine["definition"])
    (mapped,) = [s for s in definition["States"].values() if s["Type"] == "Map"]
    mapped["MaxConcurrency"] = 20_000
    machine["definition"] = json.dumps(definition)
    (problem,) = quotas.needs(config)[1]
    assert "asks for MaxConcurrency 20000; a Map Run runs at most 10000 child executions at once" in problem


@mock_aws
def test_state_machines_per_account(synth: SynthResult) -> None:
    """The account's state machines plus the stack's must fit the 10,000 per account and region (moto's
    Step Functions lists them); a limit of 1 stands in for creating 10,000."""
    sfn = client("stepfunctions")
    role = client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    sfn.create_state_machine(name="other", definition='{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}', roleArn=role)
    config = synth.pipeline("dev")
    assert list(quotas.state_machine_count(sfn, config)) == []
    (line,) = quotas.state_machine_count(sfn, config, limit=1)
    assert "the account has 1 and this stack adds 1 (2)" in line


@pytest.mark.parametrize("job", ["deploy-staging", "deploy-prod"])
def test_ci_deploys_check_quotas_before_the_apply(job: str) -> None:
    steps = yaml.safe_load((REPO / ".github" / "workflows" / "main.yml").read_text())["jobs"][job]["steps"]
    runs = [step.get("run", "") for step in steps]
    quota = next(i for i, run in enumerate(runs) if "make quotas" in run)
    assert quota < next(i for i, run in enumerate(runs) if "make apply-plan" in run)
    assert quota < next(i for i, run in enumerate(runs) if "make images" in run)
