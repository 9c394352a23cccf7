"""The checkov gate: every synthesized stack scanned for real, failures not on the skip list fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SynthResult
from tools import security_scan

pytestmark = pytest.mark.terraform

# The tests that read the scan of every stack share one worker, so the scan runs once.
EVERY_STACK = pytest.mark.xdist_group("checkov-every-stack")


STALE = security_scan.Skip(check="CKV_AWS_20", resources=("aws_s3_bucket.none",), why="A skip that covers nothing.")


@pytest.fixture(scope="module")
def every_stack_scan(synth: SynthResult) -> tuple[list, list, set]:
    """One real checkov run over every stack (as ``make security``: all in one process), with the
    committed skips plus one that covers nothing; the tests judge it with and without that one."""
    stacks = sorted(p for p in (synth.outdir / "stacks").iterdir() if (p / "cdk.tf.json").exists())
    skips, used = [*security_scan.load_skips(), STALE], set()
    return security_scan.scan_stacks(security_scan.CHECKOV, stacks, skips, used), skips, used


@pytest.fixture(scope="module")
def scan_output(every_stack_scan) -> tuple[int, str]:
    import contextlib
    import io

    results, skips, used = every_stack_scan
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        committed = [skip for skip in skips if skip is not STALE]
        code = security_scan.verdict(results, committed, used, strict_skips=True, skips_file=security_scan.SKIPS)
    return code, buffer.getvalue()


@EVERY_STACK
def test_every_stack_passes_the_gate(scan_output, synth: SynthResult) -> None:
    code, out = scan_output
    assert code == 0, out
    for name in synth.stacks:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"checkov {name}: "))
        passed = int(line.split(": ")[1].split(" passed")[0])
        assert passed >= 30 and " 0 failed" in line, line
    total = out.splitlines()[-1]
    assert total.startswith("checkov total: ") and " 0 failed" in total and " skipped " in total


def test_required_version_is_the_only_key_removed_for_checkov(synth: SynthResult) -> None:
    config = synth.pipeline("prod")
    assert "required_version" in config["terraform"]
    copy = security_scan.scannable_copy(config)
    assert "required_version" not in copy["terraform"] and "required_version" in config["terraform"]
    copy["terraform"]["required_version"] = config["terraform"]["required_version"]
    assert copy == config


@EVERY_STACK
def test_every_skip_has_a_one_line_justification_and_is_used(scan_output) -> None:
    skips = security_scan.load_skips()
    assert skips and all(len(s.why) >= 20 and "\n" not in s.why for s in skips)
    assert "STALE" not in scan_output[1]


def stack_with(tmp_path: Path, synth: SynthResult, edit) -> Path:
    stacks = tmp_path / "stacks"
    (stacks / "pipeline-local").mkdir(parents=True)
    config = json.loads(json.dumps(synth.pipeline("local")))
    edit(config)
    (stacks / "pipeline-local" / "cdk.tf.json").write_text(json.dumps(config))
    return stacks


def test_a_new_finding_fails_the_gate(tmp_path: Path, synth: SynthResult, capsys) -> None:
    def open_group(config: dict) -> None:
        config["resource"]["aws_security_group"]["open"] = {
            "name": "open",
            "vpc_id": "vpc-1",
            "ingress": [
                {"description": "ssh", "from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"]}
            ],
        }

    assert security_scan.main(["--stacks", str(stack_with(tmp_path, synth, open_group))]) == 1
    captured = capsys.readouterr()
    assert "FAILED CKV_AWS_24 aws_security_group.open:" in captured.out
    assert "STALE" not in captured.err, "stale skips are only judged on a --strict-skips run of every stack"
    assert "add an entry with a one-line `why`" in captured.err


def test_a_stack_checkov_cannot_read_fails_the_gate(tmp_path: Path, synth: SynthResult, capsys) -> None:
    """Stacks share one checkov run: one whose resources gave no result at all is an error, not a pass."""
    stacks = stack_with(tmp_path, synth, lambda config: None)
    (stacks / "unread").mkdir()
    (stacks / "unread" / "cdk.tf.json").write_text(json.dumps({"resource": {"null_resource": {"x": {}}}}))
    assert security_scan.main(["--stacks", str(stacks)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: checkov parsed no resource of stack unread (0 checks ran): the scan would prove nothing"


@EVERY_STACK
def test_a_stale_skip_fails_the_gate(every_stack_scan, capsys) -> None:
    """A skip that covers no finding is judged as `make plan` does (one plan: most skips unused,
    no error) and as the gate does (every stack, --strict-skips: STALE, exit 1)."""
    results, skips, used = every_stack_scan
    assert STALE not in used
    assert security_scan.verdict(results, skips, used, strict_skips=False, skips_file=security_scan.SKIPS) == 0
    assert "STALE" not in capsys.readouterr().err
    assert security_scan.verdict(results, skips, used, strict_skips=True, skips_file=security_scan.SKIPS) == 1
    assert "STALE skip CKV_AWS_20" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('- check: CKV_AWS_18\n  resources: ["*"]\n', "`why` must be a one-line justification"),
        ('- check: CKV_AWS_18\n  resources: ["*"]\n  why: too short\n', "one-line justification"),
        ('- check: AWS_18\n  resources: ["*"]\n  why: a long enough justification here\n', "is not a checkov id"),
        ("- check: CKV_AWS_18\n  why: a long enough justification here\n", "`resources` must list address globs"),
        ("- check: CKV_AWS_18\n  resources: ['*']\n  why: fine justification text\n  extra: 1\n", "expected keys"),
    ],
)
def test_bad_skip_entries_are_one_line_errors(tmp_path: Path, entry: str, message: str) -> None:
    skips = tmp_path / "skips.yaml"
    skips.write_text(entry)
    with pytest.raises(security_scan.ScanError, match=r"skips\.yaml entry 1") as error:
        security_scan.load_skips(skips)
    assert message in str(error.value) and "\n" not in str(error.value)
