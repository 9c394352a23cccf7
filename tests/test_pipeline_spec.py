"""The pipeline spec (conf/pipeline.py) as the one home of the pipeline's shape, and the planner
(stage0) that sizes the fan-out and refuses what cannot finish in the 2 h window."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cdktf import Testing

from conf import load_profile
from conf.pipeline import PIPELINE, Location, PipelineSpec, Resources, Step, fan_out_settings
from stacks.pipeline_stack import PipelineStack
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "images" / "runtime"))
_spec = importlib.util.spec_from_file_location("stage0_under_test", REPO / "images" / "stage0" / "stage.py")
stage0 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage0)

DUMMY = Step(
    name="stage9",
    runs_on="batch",
    reads=(Location("processed", "stage2"), Location("raw", "images")),
    writes=Location("processed", "stage9"),
    fan_out="per_shard",
    resources=Resources(compute="gpu", vcpus=4, memory_mib=8192, gpus=1, timeout_seconds=900, images_per_second=10),
    description="A step added by a test",
)


def _policy(stack: dict, role_fragment: str) -> list[dict]:
    for body in stack["resource"]["aws_iam_role_policy"].values():
        if role_fragment in body["role"]:
            return json.loads(body["policy"])["Statement"]
    raise AssertionError(f"no policy for {role_fragment}")


def test_a_new_stage_is_one_spec_entry(tmp_path: Path) -> None:
    """A copy of the spec with one more Batch step gives its job definition, job role, image
    repository, a place in the fan-out and the grants to run it, with no other file touched."""
    spec = PIPELINE.with_step(DUMMY, after="stage2")
    stack = PipelineStack(Testing.app(), load_profile("dev"), spec)
    config = json.loads(Testing.synth(stack))
    definitions = {d["name"]: d for d in config["resource"]["aws_batch_job_definition"].values()}
    container = json.loads(definitions["odins-ravne-dev-stage9"]["container_properties"])
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {
        "VCPU": "4",
        "MEMORY": "8192",
        "GPU": "1",
    }
    assert "stage9" in container["image"] and container["image"].endswith(":0.1.0"), container["image"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["INPUT_PREFIXES"] == "processed:stage2,raw:images" and env["OUTPUT_PREFIX"] == "processed:stage9"
    repositories = {r["name"] for r in config["resource"]["aws_ecr_repository"].values()}
    assert "odins-ravne-dev/stage9" in repositories
    job_role = _policy(config, "job-role-stage9")
    written = [r for s in job_role if "s3:PutObject" in s["Action"] for r in s["Resource"]]
    assert written == ["${aws_s3_bucket.data-lake_processed_bucket_FF4A5E15.arn}/stage9/*"]

    machine = next(iter(config["resource"]["aws_sfn_state_machine"].values()))
    document = json.loads(machine["definition"])
    fan_out = document["States"]["Stage1ToStage9"]["ItemProcessor"]
    assert [fan_out["StartAt"], fan_out["States"]["Stage1"]["Next"], fan_out["States"]["Stage2"]["Next"]] == [
        "Stage1",
        "Stage2",
        "Stage9",
    ]
    asl_file = tmp_path / "with-stage9.asl.json"
    asl_file.write_text(json.dumps(document))
    validator = subprocess.run(
        [str(REPO / "node_modules" / ".bin" / "asl-validator"), "--json-path", str(asl_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validator.returncode == 0, validator.stdout + validator.stderr
    submit = [s for s in _policy(config, "workflow_role") if s["Action"] == ["batch:SubmitJob"]]
    stage9 = [s for s in submit if any("jobdef-stage9" in r for r in s["Resource"])]
    assert len(stage9) == 1 and sum("aws_batch_job_queue" in r for r in stage9[0]["Resource"]) == 3


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ((*PIPELINE.steps, PIPELINE.steps[1]), "step 'stage0' appears twice"),
        (tuple(s for s in PIPELINE.steps if s.name != "stage0"), "comes before the step that plans shards"),
        (
            (*PIPELINE.steps, Step(name="late", runs_on="lambda", reads=(Location("processed", "nowhere"),))),
            "'late' reads processed:nowhere, which no earlier step writes",
        ),
        ((*PIPELINE.steps, Step(name="gpu_less", runs_on="batch")), "batch step 'gpu_less' needs resources"),
    ],
)
def test_a_broken_spec_is_refused_with_the_reason(steps: tuple[Step, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PipelineSpec(steps=steps)


def test_the_spec_derives_what_used_to_be_written_in_many_places() -> None:
    assert [s.state for s in PIPELINE.steps] == [
        "GuardBudget",
        "Stage0",
        "Stage1",
        "Stage2",
        "WeatherEnrichment",
        "WriteParquet",
    ]
    assert [s.name for s in PIPELINE.batch_steps] == ["stage0", "stage1", "stage2"]
    assert PIPELINE.planner.name == "stage0" and [s.name for s in PIPELINE.shard_steps] == ["stage1", "stage2"]
    for step in PIPELINE.steps:
        folder = REPO / ("images" if step.runs_on == "batch" else "lambda_src") / step.name
        assert folder.is_dir(), f"{step.name}: its code folder {folder} is missing"


# --- the planner (stage0) ----------------------------------------------------------------------

FAN_OUT = fan_out_settings(
    PIPELINE,
    load_profile("dev").batch.resources(),
    images_per_shard=1000,
    concurrency=25,
    job_overhead_seconds=90,
    fleet_start_seconds=420,
    function_timeouts={"weather_enrichment": 300, "write_parquet": 600},
)


def test_fan_out_settings_come_from_the_spec_and_profile() -> None:
    assert FAN_OUT == {
        "images_per_shard": 1000,
        "concurrency": 25,
        "images_per_second": [3.0, 20.0],
        "job_overhead_seconds": 90,
        "fleet_start_seconds": 420,
        "execution_timeout_seconds": 7200,
        "reserve_seconds": 960,  # WeatherEnrichment 300 + 30, WriteParquet 600 + 30
    }


def test_a_season_is_refused_with_the_largest_manifest_that_fits() -> None:
    """500,000 images: 500 shards, 25 at a time, ~9.4 min each: ~3.3 h of waves in ~1.6 h left."""
    verdict = stage0.plan(500_000, FAN_OUT, 1000, elapsed=120)
    assert verdict["accepted"] is False and verdict["shards"] == 500
    per_shard = 2 * 90 + 1000 / 3 + 1000 / 20
    assert verdict["estimated_seconds"] == round(420 + 20 * per_shard)
    assert verdict["largest_manifest"] == 10 * 25 * 1000  # ten waves fit in 7200 - 120 - 960 - 420 s
    assert verdict["reason"] == (
        "500000 images make 500 shards of up to 1000, 25 at a time: about 3.2 h of GPU work, but 102 min of "
        "the 2 h execution are left for it; split it into manifests of at most 250000 images "
        "(or raise batch.max_vcpus and workflow.max_concurrency)"
    )


@pytest.mark.parametrize(("images", "shards"), [(0, 0), (1, 1), (1000, 1), (1001, 2), (250_000, 250)])
def test_what_fits_is_accepted(images: int, shards: int) -> None:
    verdict = stage0.plan(images, FAN_OUT, 1000, elapsed=60)
    assert verdict["accepted"] is True and verdict["shards"] == shards and verdict["reason"] == ""


def test_time_already_spent_counts() -> None:
    assert stage0.plan(250_000, FAN_OUT, 1000, elapsed=60)["accepted"] is True
    assert stage0.plan(250_000, FAN_OUT, 1000, elapsed=900)["accepted"] is False


def test_one_shard_that_cannot_fit_says_to_make_shards_smaller() -> None:
    verdict = stage0.plan(30_000, FAN_OUT, 30_000, elapsed=0)
    assert (
        not verdict["accepted"]
        and "lower workflow.images_per_shard (one shard alone does not fit)" in verdict["reason"]
    )


def test_shards_are_as_few_as_the_size_allows_and_balanced() -> None:
    records = [{"key": f"images/s/{i:05d}.jpg"} for i in range(2501)]
    parts = stage0.shards(records, 1000)
    assert [len(p) for p in parts] == [834, 834, 833]
    assert sorted(r["key"] for p in parts for r in p) == sorted(r["key"] for r in records)
    assert stage0.shards([], 1000) == []


@pytest.mark.parametrize(
    ("execution_input", "expected"),
    [
        (None, (1000, None)),
        ('{"manifest": "s3://b/m.json"}', (1000, None)),
        ('{"images_per_shard": 50}', (50, None)),
        ('{"images_per_shard": 0}', (1000, "images_per_shard must be a whole number from 1 to 1000, got 0")),
        ('{"images_per_shard": 5000}', (1000, "images_per_shard must be a whole number from 1 to 1000, got 5000")),
        ('{"images_per_shard": "10"}', (1000, "images_per_shard must be a whole number from 1 to 1000, got '10'")),
    ],
)
def test_a_run_may_ask_for_smaller_shards(execution_input: str | None, expected: tuple) -> None:
    assert stage0.shard_size(execution_input, 1000) == expected
