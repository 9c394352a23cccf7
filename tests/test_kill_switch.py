"""The apply gate (pipeline_ops/kill_switch.py check): what `make apply-plan` and `make deploy-aws`
run first. The emulator test (tests/test_emulator.py) runs it on a shut-down stack."""

from __future__ import annotations

import boto3
from moto import mock_aws

from pipeline_ops import kill_switch
from tests.conftest import SynthResult


def test_the_gate_reads_the_switch_named_in_the_config(synth: SynthResult, capsys) -> None:
    dev = synth.outdir / "stacks" / "pipeline-dev"
    assert kill_switch.switch_name(dev) == "/odins-ravne/dev/kill-switch"
    with mock_aws():
        ssm = boto3.client("ssm", region_name="eu-north-1")
        assert kill_switch.check(dev, ssm) == 0, "first deploy: no switch yet, nothing to undo"
        ssm.put_parameter(Name="/odins-ravne/dev/kill-switch", Value="off", Type="String")
        assert kill_switch.check(dev, ssm) == 0
        ssm.put_parameter(Name="/odins-ravne/dev/kill-switch", Value="on", Type="String", Overwrite=True)
        assert kill_switch.check(dev, ssm) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: kill switch /odins-ravne/dev/kill-switch is 'on' (budget shutdown): an apply now would re-enable "
        "the job queues and compute environments; run `make budget-resume ENV=dev` first, then apply"
    )
