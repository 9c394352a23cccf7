"""The pipeline spec (conf/pipeline.py) as the one home of the pipeline's shape, and the planner
(stage0) that sizes the fan-out and refuses what cannot finish in the 2 h window."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from conf import load_profile
from conf.pipeline import PIPELINE, Location, PipelineSpec, Resources, Step, fan_out_settings
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "images" / "runtime"))
sys.path.insert(0, str(REPO / "lambda_src" / "_shared"))


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stage0 = _load("stage0_under_test", REPO / "images" / "stage0" / "stage.py")
planner = _load("plan_fan_out_under_test", REPO / "lambda_src" / "plan_fan_out" / "handler.py")

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
    from cdktf import Testing  # the jsii kernel and provider assembly: not at collection, in every worker

    from stacks.pipeline_stack import PipelineStack

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
        ((*PIPELINE.steps, PIPELINE.steps[2]), "step 'stage0' appears twice"),
        (tuple(s for s in PIPELINE.steps if s.name != "stage0"), "comes before the step that writes the shards"),
        (
            (*PIPELINE.steps, Step(name="late", runs_on="lambda", reads=(Location("processed", "nowhere"),))),
            "'late' reads processed:nowhere, which no earlier step writes",
        ),
        ((*PIPELINE.steps, Step(name="gpu_less", runs_on="batch")), "batch step 'gpu_less' needs resources"),
        (
            (Step(name="early", runs_on="lambda", uses=("plan",)), *PIPELINE.steps),
            "'early' uses 'plan', which no earlier Lambda step answers",
        ),
    ],
)
def test_a_broken_spec_is_refused_with_the_reason(steps: tuple[Step, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PipelineSpec(steps=steps)


def test_the_spec_derives_what_used_to_be_written_in_many_places() -> None:
    assert [s.state for s in PIPELINE.steps] == [
        "PlanFanOut",  # first: GuardBudget adds its cost estimate to the month's spend
        "GuardBudget",
        "Stage0",
        "Stage1",
        "Stage2",
        "WeatherEnrichment",
        "WriteParquet",
    ]
    assert [s.name for s in PIPELINE.batch_steps] == ["stage0", "stage1", "stage2"]
    assert (PIPELINE.planner.name, PIPELINE.sharder.name) == ("plan_fan_out", "stage0")
    assert [s.name for s in PIPELINE.shard_steps] == ["stage1", "stage2"]
    for step in PIPELINE.steps:
        folder = REPO / ("images" if step.runs_on == "batch" else "lambda_src") / step.name
        assert folder.is_dir(), f"{step.name}: its code folder {folder} is missing"


# --- the planner (lambda_src/plan_fan_out) and the shards (stage0) ------------------------------

DEV = load_profile("dev")
FAN_OUT = fan_out_settings(
    PIPELINE,
    DEV.batch.resources(),
    images_per_shard=1000,
    concurrency=25,
    job_overhead_seconds=90,
    fleet_start_seconds=420,
    retry_interval_seconds=30,
    function_timeouts={"weather_enrichment": 300, "write_parquet": 600},
    costs=DEV.batch.job_hour_costs(DEV.prices),
    price_date="eu-north-1 price table of 2026-11-26",
)
SPOT_G4DN, SPOT_C6I = round(0.558 * 0.35, 4), round(0.0924 * 0.35, 4)  # g4dn.xlarge, c6i.large, spot


def test_fan_out_settings_come_from_the_spec_and_profile() -> None:
    steps = json.loads(json.dumps(FAN_OUT["steps"]))
    sources = {s["name"]: s.pop("throughput_source") for s in steps}
    assert "MegaDetector" in sources["stage1"] and "4.2 images/s" in sources["stage1"]
    assert {**FAN_OUT, "steps": steps} == {
        "images_per_shard": 1000,
        "concurrency": 25,
        "steps": [  # stage0 sees every image once, then each shard goes through stage1 and stage2
            {
                "name": "stage0",
                "per_shard": False,
                "images_per_second": 500.0,
                "usd_per_hour": SPOT_C6I,
                "on_demand_usd_per_hour": 0.0924,
            },
            {
                "name": "stage1",
                "per_shard": True,
                "images_per_second": 4.2,
                "usd_per_hour": SPOT_G4DN,
                "on_demand_usd_per_hour": 0.558,
            },
            {
                "name": "stage2",
                "per_shard": True,
                "images_per_second": 20.0,
                "usd_per_hour": SPOT_G4DN,
                "on_demand_usd_per_hour": 0.558,
            },
        ],
        "job_overhead_seconds": 90,
        "fleet_start_seconds": 420,
        "retry_interval_seconds": 30,
        "margin_seconds": 720,
        "execution_timeout_seconds": 7200,
        "reserve_seconds": 960,  # WeatherEnrichment 300 + 30, WriteParquet 600 + 30
        "price_date": "eu-north-1 price table of 2026-11-26",
    }


PER_SHARD = 2 * 90 + 1000 / 4.2 + 1000 / 20  # seconds of one shard through stage1 and stage2
RETRY = 30 + 90 + 1000 / 4.2  # the last wave's longest job (stage1) failing at its end, run once more


def test_a_season_is_refused_with_the_largest_manifest_that_fits() -> None:
    """500,000 images: stage0 ~18 min, then 500 shards, 25 at a time, ~7.8 min each, in ~2.6 h."""
    verdict = planner.plan(500_000, FAN_OUT, 1000, elapsed=120)
    assert verdict["allowed"] is False and verdict["shards"] == 500
    assert verdict["estimated_seconds"] == round(90 + 500_000 / 500 + 420 + 20 * PER_SHARD + RETRY)
    assert verdict["remaining_seconds"] == 7200 - 120 - 960 - 720 and verdict["margin_seconds"] == 720
    # Nine waves of 25,000 would need 5,531 s of the 5,400 left; eight (200,000 images) need 5,013.
    assert verdict["largest_manifest"] == 8 * 25 * 1000
    assert verdict["reason"] == (
        "500000 images make 500 shards of up to 1000, 25 at a time: about 3.1 h of work with one job retry, but "
        "90 min of the 2 h execution are left for it after a margin of 12 min; split it into manifests of at most "
        "200000 images (or raise batch.max_vcpus and workflow.max_concurrency)"
    )


@pytest.mark.parametrize("elapsed", [0, 120, 600])
def test_the_largest_accepted_manifest_fits_with_a_retry_and_the_margin(elapsed: int) -> None:
    """At the largest manifest PlanFanOut accepts, its work, one retry of the last wave's longest
    job, the steps after the fan-out and the stated margin fit in the 2 h; one shard more does not."""
    largest = planner.plan(500_000, FAN_OUT, 1000, elapsed=elapsed)["largest_manifest"]
    verdict = planner.plan(largest, FAN_OUT, 1000, elapsed=elapsed)
    waves = -(-largest // 1000 // 25)
    work = 90 + largest / 500 + 420 + waves * PER_SHARD
    assert verdict["allowed"] and verdict["estimated_seconds"] == round(work + RETRY)
    assert elapsed + work + RETRY + 960 + 720 <= 7200
    assert not planner.plan(largest + 25 * 1000, FAN_OUT, 1000, elapsed=elapsed)["allowed"]


def test_a_run_is_priced_from_the_job_hours_it_bills() -> None:
    """100,000 images: stage0's one job, 100 shards of stage1 and stage2 (each job its overhead and
    its images at the step's rate) and 25 GPU instances booting, at the profile's job-hour prices."""
    verdict = planner.plan(100_000, FAN_OUT, 1000, elapsed=0)
    seconds = {"stage0": 90 + 100_000 / 500, "stage1": 100 * 90 + 100_000 / 4.2, "stage2": 100 * 90 + 100_000 / 20}
    boots = 25 * 420
    expected = (seconds["stage0"] * SPOT_C6I + (seconds["stage1"] + seconds["stage2"] + boots) * SPOT_G4DN) / 3600
    on_demand = (seconds["stage0"] * 0.0924 + (seconds["stage1"] + seconds["stage2"] + boots) * 0.558) / 3600
    assert verdict["estimated_usd"] == round(expected, 2) == 3.11
    assert verdict["estimated_usd_on_demand"] == round(on_demand, 2)
    assert verdict["prices"] == "eu-north-1 price table of 2026-11-26"
    per_1000 = ((1000 / 500) * SPOT_C6I + (2 * 90 + 1000 / 4.2 + 1000 / 20) * SPOT_G4DN) / 3600
    assert planner.per_thousand(FAN_OUT) == pytest.approx(per_1000)
    assert planner.plan(0, FAN_OUT, 1000, elapsed=0)["estimated_usd"] == 0


@pytest.mark.parametrize(("images", "shards"), [(0, 0), (1, 1), (1000, 1), (1001, 2), (200_000, 200)])
def test_what_fits_is_accepted(images: int, shards: int) -> None:
    verdict = planner.plan(images, FAN_OUT, 1000, elapsed=60)
    assert verdict["allowed"] is True and verdict["shards"] == shards and verdict["reason"] == ""


def test_time_already_spent_counts() -> None:
    assert planner.plan(200_000, FAN_OUT, 1000, elapsed=60)["allowed"] is True
    assert planner.plan(200_000, FAN_OUT, 1000, elapsed=600)["allowed"] is False


def test_one_shard_that_cannot_fit_says_to_make_shards_smaller() -> None:
    verdict = planner.plan(30_000, FAN_OUT, 30_000, elapsed=0)
    assert (
        not verdict["allowed"] and "lower workflow.images_per_shard (one shard alone does not fit)" in verdict["reason"]
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
    assert planner.shard_size(json.loads(execution_input) if execution_input else None, 1000) == expected


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (b'{"images": []}', 0),
        (b'{"images": [{"key": "a"}, {"key": "b, [x]"}, {"key": "c\\\\"}]}', 3),
        (b'{"note": {"images": [1, 2]}, "images": [{"k": [1, {"images": []}]}, "odd"]}', 2),
        (b'  {\n "images" : [ {"key": "q\\"uote"} ,\n {} ] }', 2),
        (b'{"other": []}', None),
        (b"[]", None),
    ],
)
def test_the_planner_counts_records_without_parsing_the_manifest(body: bytes, count: int | None) -> None:
    assert planner.count_images(body) == count
    if count is not None:
        assert count == len(json.loads(body)["images"])


@mock_aws
def test_the_planner_refuses_before_any_batch_job(synth, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler end to end on moto's S3: the count, the verdict, and one line for bad input. Its
    events are what PlanFanOut sends (tests/events.py: the synthesized Payload and the documented
    context object, https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html)."""
    from tests.events import event_for

    s3 = boto3.client("s3", region_name="eu-north-1")
    s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    records = ",".join('{"key": "k"}' for _ in range(300_000))
    s3.put_object(Bucket="raw", Key="m/big.json", Body=f'{{"images": [{records}]}}'.encode())
    s3.put_object(Bucket="raw", Key="m/bad.json", Body=b'{"photos": []}')
    monkeypatch.setenv("FAN_OUT", json.dumps(FAN_OUT))

    def event(manifest: str, **options) -> dict:
        return event_for(synth, "PlanFanOut", {"manifest": manifest}, {"manifest": manifest, **options})

    verdict = planner.handler(event("s3://raw/m/big.json"), None, s3=s3)
    assert (verdict["allowed"], verdict["images"], verdict["shards"]) == (False, 300_000, 300)
    bad = planner.handler(event("s3://raw/m/bad.json"), None, s3=s3)
    assert (bad["allowed"], bad["reason"]) == (
        False,
        "manifest s3://raw/m/bad.json is not a JSON object with an 'images' list",
    )
    assert planner.handler(event("s3://raw/m/gone.json"), None, s3=s3)["reason"] == (
        "manifest s3://raw/m/gone.json does not exist"
    )
    assert planner.handler(event("s3://raw/m/big.json", images_per_shard=-1), None, s3=s3)["reason"] == (
        "images_per_shard must be a whole number from 1 to 1000, got -1"
    )


# --- cost per 1,000 images (pipeline_ops.cost: the plan review's section, make cost) ----------


def test_prod_is_priced_per_1000_images_from_its_synthesized_config(synth, tmp_path: Path, capsys) -> None:
    """The figures come from the FAN_OUT prod's PlanFanOut is given, through PlanFanOut's own estimator."""
    from pipeline_ops import cost

    config = synth.outdir / "stacks" / "pipeline-prod" / "cdk.tf.json"
    fan_out = cost.fan_out_of(json.loads(config.read_text()))
    assert [s["name"] for s in fan_out["steps"]] == ["stage0", "stage1", "stage2"]
    assert fan_out["price_date"] == "eu-north-1 price table of 2026-11-26"
    review = tmp_path / "review.md"
    review.write_text("## Plan review\n")
    assert (
        cost.main([str(config), "--images", "100000", "--append", str(review), "--json", str(tmp_path / "c.json")]) == 0
    )
    figures = json.loads((tmp_path / "c.json").read_text())
    assert figures["usd_per_1000_images"] == round(planner.per_thousand(fan_out), 4)
    assert figures["usd_per_1000_images_on_demand"] > figures["usd_per_1000_images"] > 0
    assert figures["estimated_usd"] == planner.plan(100_000, fan_out, fan_out["images_per_shard"], 0)["estimated_usd"]
    text = review.read_text()
    assert text.startswith("## Plan review\n") and "### Cost per 1,000 images (pipeline estimate)" in text
    assert f"| USD per 1,000 images | {figures['usd_per_1000_images']:.4f} |" in text
    assert "| stage1 | per shard | 4.2 (MegaDetector v5 performance table" in text
    assert (tmp_path / "review.part-1.md").read_text().endswith(text.split("\n", 1)[1]), "PR comment parts recut"
    assert "USD per 1,000 images on spot" in capsys.readouterr().err
    assert cost.main([str(tmp_path / "missing.json")]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'missing.json'} not found; run `make synth` (or `make plan`) first"
    )


@mock_aws
def test_a_claim_keeps_one_run_per_manifest_content(synth, monkeypatch: pytest.MonkeyPatch) -> None:
    """A triggered run claims the SHA-256 of the manifest version its event names (ev-events.html:
    ``version-id`` when the bucket is versioned), not the ETag: the raw bucket is SSE-KMS, where an
    ETag is no digest of the content (https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html).
    A second delivery and the same bytes uploaded again are refused (Duplicate); other bytes under
    the same key are a new run; a run started by hand claims nothing (the deliberate re-run)."""
    from tests.events import event_for
    from tests.runs import s3_event

    s3 = boto3.client("s3", region_name="eu-north-1")
    for bucket in ("raw", "proc"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
    for key, value in {"FAN_OUT": json.dumps(FAN_OUT), "PROCESSED_BUCKET": "proc", "OUTPUT_PREFIX": "claims"}.items():
        monkeypatch.setenv(key, value)
    uri = "s3://raw/manifests/m.json"
    one, other = b'{"images": [{"key": "a.jpg"}]}', b'{"images": [{"key": "a.jpg"}, {"key": "b.jpg"}]}'

    def upload(body: bytes) -> dict:
        put = s3.put_object(Bucket="raw", Key="manifests/m.json", Body=body)
        return s3_event("raw", "manifests/m.json", put["ETag"].strip('"'), version_id=put["VersionId"])

    def run(execution: str, execution_input: dict) -> dict:
        return planner.handler(
            event_for(synth, "PlanFanOut", {"manifest": uri}, execution_input, execution=execution), None, s3=s3
        )

    first = upload(one)
    assert run("first", {"event": first})["allowed"] is True
    assert run("first", {"event": first})["allowed"] is True, "a retried invocation finds its own claim"
    duplicate = run("second-delivery", {"event": first})
    assert duplicate["duplicate"] is True and duplicate["allowed"] is False
    assert f"manifest {uri} with this content (sha256 " in duplicate["reason"]
    again = run("same-bytes-again", {"event": upload(one)})
    assert again["duplicate"] is True, "the same bytes uploaded again (a new version) are no new run"
    changed = upload(other)
    upload(one)  # an overwrite after the event: the run reads the version its event names
    assert run("other-bytes", {"event": changed})["images"] == 2
    assert run("by-hand", {"manifest": uri})["allowed"] is True, "a run started by hand claims nothing"
    gone = {**first, "detail": {**first["detail"], "object": {**first["detail"]["object"], "version-id": "x" * 32}}}
    assert run("gone", {"event": gone})["reason"] == f"manifest {uri} (version {'x' * 32}) does not exist"


def test_a_duplicate_delivery_ends_quietly(synth) -> None:
    """PlanFanOut's duplicate=true ends the run SUCCEEDED at Duplicate, not at the refusal notice:
    no ManifestRefused, no page (the EventBridge rule tells only FAILED, TIMED_OUT and ABORTED)."""
    (machine,) = synth.resources("dev", "aws_sfn_state_machine").values()
    states = json.loads(machine["definition"])["States"]
    assert states["PlanFanOutAllowed"]["Choices"][1:] == [
        {"Variable": "$.plan.duplicate", "BooleanEquals": True, "Next": "Duplicate"}
    ]
    assert states["Duplicate"] == {"Type": "Succeed"}
    assert states["PlanFanOut"]["ResultSelector"]["duplicate.$"] == "$.Payload.duplicate"
