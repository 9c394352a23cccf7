"""Real plans of the stack applied to this module's emulator: the re-plan after apply, and the
`make plan` / `make drift` machinery.

The review tests edit the applied config in place (restored afterwards), plan it through
tools.plan exactly as `make plan ENV=local` does, and read the review it wrote. Last, once every
plan is done, the fan-out run: here, not in test_emulator.py, so that the two stack modules take
about as long (each is one worker's serial path: deploy, then its tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.runs import alert_queue, messages, run_pipeline, weather_statuses
from tools import plan as plan_tool
from tools import plan_review, security_scan

pytestmark = pytest.mark.emulator


@contextmanager
def edited(stack: Path, edit: Callable[[dict], None]) -> Iterator[None]:
    path = stack / "cdk.tf.json"
    original = path.read_text()
    config = json.loads(original)
    edit(config)
    path.write_text(json.dumps(config))
    try:
        yield
    finally:
        path.write_text(original)


def planned(stack: Path, out: Path, *flags: str) -> tuple[int, dict]:
    code = plan_tool.main(["plan", str(stack), "--emulator", "--no-lock", "--out", str(out), *flags])
    return code, json.loads((out / "review.json").read_text())


def reviewed_edit(stack: Path, out: Path) -> tuple[int, dict]:
    """A config edit reviewed as ``make plan ENV=local REFRESH=false`` does: against the state the
    apply just recorded, reading nothing back (the re-plan test refreshes all of it)."""
    code, summary = planned(stack, out, "--no-refresh")
    assert "Refreshing state..." not in (out / "plan.txt").read_text()
    return code, summary


def named(config: dict, type_: str, fragment: str) -> tuple[str, dict]:
    return next((k, v) for k, v in config["resource"][type_].items() if fragment in k)


def test_replan_has_no_changes_reviews_clean_and_passes_checkov(deployed: Path, tmp_path: Path, capsys) -> None:
    """``make plan ENV=local`` right after the apply: Terraform's own plan (tflocal's override, the
    emulator, a full refresh) has no changes, and its review, cost and checkov pass. (``make
    plan-local`` runs the same plan without the review; ``make soak-local`` checks its exit code.
    One plan instead of two saves ~18 CPU seconds.)"""
    code, summary = planned(deployed, tmp_path)
    text = (tmp_path / "plan.txt").read_text()
    assert "No changes. Your infrastructure matches the configuration." in text and "Refreshing state..." in text
    assert code == 0 and summary["verdict"] == "OK"
    assert set(summary["counts"].values()) == {0}
    stages = {r["job_definition"].rsplit("-", 1)[-1]: r for r in summary["cost"]["per_job_hour"]}
    assert stages["stage0"]["instance_type"] == "c6i.large" and stages["stage1"]["instance_type"] == "g4dn.xlarge"
    for name in ("plan.tfplan", "plan.json", "plan.txt", "review.md"):
        assert (tmp_path / name).stat().st_size > 0
    # `make plan` appends the pipeline's cost per 1,000 images, read from the real plan's PlanFanOut.
    from pipeline_ops import cost

    assert cost.main([str(tmp_path / "plan.json"), "--append", str(tmp_path / "review.md")]) == 0
    assert "| USD per 1,000 images |" in (tmp_path / "review.md").read_text()
    capsys.readouterr()
    assert security_scan.main(["--stacks", str(tmp_path / "none"), "--plan", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    assert "plan.json: " in out and " 0 failed" in out
    assert int(out.split("checkov total: ")[1].split(" passed")[0]) > 100


def test_replacing_the_raw_bucket_is_blocking(deployed: Path, tmp_path: Path) -> None:
    def rename(config: dict) -> None:
        _, bucket = named(config, "aws_s3_bucket", "raw_bucket")
        bucket["bucket"] = bucket["bucket"].replace("-raw-", "-raw2-")

    with edited(deployed, rename):
        code, summary = reviewed_edit(deployed, tmp_path)
        assert code == 2 and summary["verdict"] == "BLOCKING"
        [finding] = [b for b in summary["blocking"] if "raw_bucket" in b["address"]]
        assert finding["action"] == "replace" and finding["forced_by"] == ["bucket"]
        assert summary["counts"]["replace"] >= 1
    # Approving the blocked changes (address and digest) in plan-approvals.yaml clears the review of this
    # same plan (planning again would only repeat the plan).
    approvals = tmp_path / "plan-approvals.yaml"
    approvals.write_text(json.dumps({"t": summary["approvals_needed"]}))  # JSON is YAML
    allowed = tmp_path / "allowed"
    code = plan_review.main(
        [str(tmp_path / "plan.json"), "--title", "t", "--approvals", str(approvals), "--json", str(allowed)]
    )
    summary = json.loads(allowed.read_text())
    assert code == 0 and summary["blocking"] == [] and summary["approved_destroys"]


def test_iam_widening_is_flagged(deployed: Path, tmp_path: Path) -> None:
    def widen(config: dict) -> None:
        _, grants = named(config, "aws_iam_role_policy", "fn-guard-budget")
        document = json.loads(grants["policy"])
        document["Statement"].append({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]})
        grants["policy"] = json.dumps(document)

    with edited(deployed, widen):
        code, summary = reviewed_edit(deployed, tmp_path)
    assert code == 0 and summary["verdict"] == "REVIEW"
    assert {k: v for k, v in summary["counts"].items() if v} == {"change": 1}
    [row] = summary["policies"]
    assert "fn-guard-budget" in row["address"] and row["removed"] == []
    assert row["added"] == [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]
    assert any("wildcard action s3:*" in reason for reason in row["widening"])
    assert "**widening:" in (tmp_path / "review.md").read_text()


def test_drift_reports_an_out_of_band_change(deployed: Path, aws, tmp_path: Path) -> None:
    """One refresh-only plan after one change made outside Terraform: exactly that attribute of that
    resource drifted, so nothing else of the freshly applied stack reads as drift (the clean exit is
    tests/test_plan_review.py's; a second real plan only to see it would cost ~20 CPU seconds)."""
    group = "/aws/batch/odins-ravne-local"
    recorded = aws["logs"].describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"]
    aws["logs"].put_retention_policy(logGroupName=group, retentionInDays=1)
    try:
        code = plan_tool.main(["drift", str(deployed), "--emulator", "--no-lock", "--out", str(tmp_path)])
    finally:
        aws["logs"].put_retention_policy(logGroupName=group, retentionInDays=recorded)
    assert code == 2
    [item] = json.loads((tmp_path / "drift-summary.json").read_text())["drifted"]
    assert item["address"].startswith("aws_cloudwatch_log_group.batch_logs")
    assert item["attributes"] == [{"path": "retention_in_days", "recorded": recorded, "actual": 1}]
    assert plan_review.esc("retention_in_days") in (tmp_path / "drift.md").read_text()  # escaped Markdown


def test_fan_out_runs_shards_at_once_and_tolerates_a_failed_shard(aws, emulator) -> None:
    """60 images in shards of 10 (the run's own size): six shards, side by side, all on high. Shard
    3's stage2 fails (twice: the retry too): one of six is within the local tolerance (20 %), so
    the run succeeds with the other five written, and its notice names shard 3 and the re-run."""
    from pipeline_ops import rerun_shards
    from pipeline_ops.run import curated_objects, most_at_once, shard_jobs, trigger_paused

    url = alert_queue(aws)
    failures = Path(emulator["state"]) / "batch-failures.json"
    failures.write_text(json.dumps(["odins-ravne-local-stage2:shard=3"]))
    # Thirteen Batch jobs and three Lambda steps, each a local process: under `make test`, beside two
    # busy workers on two cores, this run has taken over 240 s (it asserts concurrency, not speed).
    try:
        execution_arn, described = run_pipeline(
            timeout=480, images=60, options={"priority": "high", "images_per_shard": 10}
        )
    finally:
        failures.unlink()
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert (output["route"]["priority"], output["shards"]["summary"]["count"]) == ("high", 6)
    assert output["weather"] == {"enriched": 50, "failed": 0, "shards": 5, "missing": "3"}, weather_statuses(
        aws, execution_arn
    )
    assert output["parquet"]["rows"] >= 50 and curated_objects(aws["s3"], output)
    execution_id = execution_arn.rsplit(":", 1)[-1]
    for stage, tries in (("stage1", list(range(6))), ("stage2", [0, 1, 2, 3, 3, 4, 5])):
        jobs = shard_jobs(aws["batch"], execution_id, stage)
        assert sorted(int(j["parameters"]["shard"]) for j in jobs) == tries
        assert {j["jobQueue"].rsplit("/", 1)[-1] for j in jobs} == {"odins-ravne-local-high"}
    assert most_at_once(shard_jobs(aws["batch"], execution_id, "stage1")) >= 3, "shards run side by side"
    told = [m for m in messages(aws, url) if "shards failed" in m or "failed shards" in m]
    assert told and f"Execution {execution_id} succeeded with 5 of 6 shards; failed shards: 3." in told[0], told
    assert f"make rerun-shards ENV=<env> EXECUTION={execution_id}" in told[0]
    buckets = [b["Name"] for b in aws["s3"].list_buckets()["Buckets"]]
    processed, raw = (next(b for b in buckets if f"-{n}-" in b) for n in ("processed", "raw"))
    with trigger_paused(aws["events"]):  # the manifest is checked here, not run: the module's stack is torn down next
        manifest, shards = rerun_shards.rerun_manifest(aws["s3"], processed, raw, execution_id)
    assert shards == [3] and f"manifests/rerun-{execution_id}-" in manifest and manifest.endswith("Z.json")
    body = json.loads(aws["s3"].get_object(Bucket=raw, Key=manifest.split("/", 3)[3])["Body"].read())
    assert len(body["images"]) == 10
