"""The GPU stages' runtime (images/runtime): letterbox geometry, the bounded prefetch queue,
batched inference equal to one image at a time, and the stages' container contract on S3.

The stage code runs here as Batch runs it (its own modules on the path, models from MODEL_DIR);
S3 is moto in process. The bench models (pipeline_ops.models) are real convolutional networks, so
"batched == one at a time" is tested where batching could change the numbers.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image, ImageDraw

from pipeline_ops import models

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "images" / "runtime"))
import onnx_model  # noqa: E402
import stage_runtime  # noqa: E402
from stage_runtime import Feed, StageInputError, prefetch  # noqa: E402


def stage_module(stage: str) -> ModuleType:
    """images/<stage>/stage.py under a name of its own (every stage's file is stage.py)."""
    spec = importlib.util.spec_from_file_location(f"{stage}_code", REPO / "images" / stage / "stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg(width: int, height: int, box: tuple[int, int, int, int], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(40, 90, (height, width, 3), dtype=np.uint8))
    ImageDraw.Draw(image).rectangle(box, fill=(250, 250, 250))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


@pytest.fixture(scope="module")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-models")
    models.ensure_bench(folder)
    return folder


@pytest.fixture(scope="module")
def emulator_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("emulator-models")
    models.ensure(folder)
    return folder


# --- letterbox -------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", [(2048, 1536), (1536, 2048), (640, 640), (333, 101)])
def test_letterbox_keeps_the_aspect_ratio_and_maps_boxes_back(width: int, height: int) -> None:
    """A bright rectangle found in the letterboxed tensor maps back to where it is in the original."""
    box = (width // 4, height // 3, width // 2, height * 2 // 3)
    pixels, original = onnx_model.open_image(jpeg(width, height, box), onnx_model.letterbox_scale(640))
    boxed = onnx_model.letterbox(pixels, 640, original)
    assert boxed.tensor.shape == (3, 640, 640) and boxed.tensor.dtype == np.uint8
    assert onnx_model.batch_of([boxed, boxed]).dtype == np.float32 and onnx_model.batch_of([boxed]).max() <= 1.0
    assert original == (width, height)
    bright = np.argwhere(boxed.tensor.mean(axis=0) > 230)
    (y1, x1), (y2, x2) = bright.min(axis=0), bright.max(axis=0) + 1
    mapped = boxed.to_original(x1, y1, x2, y2)
    expected = [box[0] / width, box[1] / height, (box[2] + 1) / width, (box[3] + 1) / height]
    assert np.allclose(mapped, expected, atol=4 / min(640, max(width, height)))
    # The padding is the detector's grey, on the short side only.
    assert abs(boxed.scale - 640 / max(width, height)) < 1e-9
    if width > height:
        assert boxed.pad_x == 0 and boxed.pad_y > 0 and (boxed.tensor[:, 0, :] == 114).all()


def test_a_jpeg_is_decoded_at_the_smallest_scale_that_covers_the_model() -> None:
    pixels, original = onnx_model.open_image(jpeg(2048, 1536, (0, 0, 9, 9)), onnx_model.letterbox_scale(640))
    assert original == (2048, 1536) and pixels.shape == (768, 1024, 3)  # 1/2: 1/4 would be 512 < 640
    pixels, _ = onnx_model.open_image(jpeg(2048, 1536, (0, 0, 9, 9)))
    assert pixels.shape == (1536, 2048, 3)


def test_an_unreadable_image_is_bad_input() -> None:
    with pytest.raises(StageInputError, match="unreadable image"):
        onnx_model.open_image(b"not a jpeg")


# --- the prefetch queue ----------------------------------------------------------------------


def test_prefetch_keeps_order_and_never_runs_more_than_depth_ahead() -> None:
    started, consumed, lock, most = [], [], threading.Lock(), [0]

    def load(item: int) -> int:
        with lock:
            started.append(item)
            most[0] = max(most[0], len(started) - len(consumed))
        time.sleep(0.002 * (item % 3))  # out-of-order completion
        return item * item

    for item, result in prefetch(range(60), load, workers=4, depth=5):
        assert result == item * item
        with lock:
            consumed.append(item)
        time.sleep(0.001)
    assert consumed == list(range(60)) and most[0] <= 5


def test_prefetch_raises_a_load_error_in_order_and_stops_loading() -> None:
    loaded = []

    def load(item: int) -> int:
        loaded.append(item)
        if item == 3:
            raise StageInputError("image 3 vanished")
        return item

    got = []
    with pytest.raises(StageInputError, match="image 3"):
        for item, _ in prefetch(range(1000), load, workers=2, depth=4):
            got.append(item)
    assert got == [0, 1, 2] and len(loaded) <= 3 + 1 + 4


def test_the_feed_is_sized_by_the_jobs_vcpus_and_memory() -> None:
    env = {"STAGE_VCPUS": "4", "STAGE_MEMORY_MIB": "15360", "INFERENCE_BATCH_SIZE": "8"}
    feed = Feed.from_env(env, item_bytes=3 * 640 * 640 * 4)
    assert (feed.workers, feed.batch_size, feed.depth) == (8, 8, 40)  # 4 batches + workers, memory allows more
    small = Feed.from_env({**env, "STAGE_MEMORY_MIB": "512"}, item_bytes=3 * 640 * 640 * 4)
    assert small.depth == 27  # a quarter of 512 MiB holds 27 items of 4.9 MB
    with pytest.raises(StageInputError, match=r"INFERENCE_BATCH_SIZE='0' must be a positive whole number"):
        Feed.from_env({**env, "INFERENCE_BATCH_SIZE": "0"}, item_bytes=1)


# --- batched inference ------------------------------------------------------------------------


def test_batched_detection_equals_one_image_at_a_time(bench_models: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_model, "MODEL_DIR", str(bench_models / "stage1"))
    stage1 = stage_module("stage1")
    monkeypatch.setattr(stage1, "MIN_SCORE", 0.0045)  # the bench detector's scores sit near sigmoid(-5)
    images = {f"k{i}": jpeg(1024 + 64 * i, 768, (100 + 20 * i, 100, 400, 500), seed=i) for i in range(11)}

    def detect(batch_size: int) -> list[dict]:
        records = [{"key": key} for key in images]
        stage1.detect(records, lambda r: images[r["key"]], Feed(workers=3, depth=6, batch_size=batch_size))
        return records

    one, batched = detect(1), detect(8)
    assert sum(len(r["detections"]) for r in one) > 20
    for a, b in zip(one, batched, strict=True):
        assert len(a["detections"]) == len(b["detections"])
        for x, y in zip(a["detections"], b["detections"], strict=True):
            assert x["category"] == y["category"] and x["image_size"] == y["image_size"]
            assert np.allclose(x["bbox"], y["bbox"], atol=2e-4) and abs(x["score"] - y["score"]) <= 2e-4


def test_batched_classification_equals_one_crop_at_a_time(bench_models: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_model, "MODEL_DIR", str(bench_models / "stage2"))
    stage2 = stage_module("stage2")
    images = {f"k{i}": jpeg(2048, 1536, (300, 300, 900, 800), seed=i) for i in range(7)}

    def classify(batch_size: int) -> list[dict]:
        records = [
            {
                "key": key,
                "detections": [
                    {"bbox": [0.1, 0.2, 0.5, 0.6], "category": "animal"},
                    {"bbox": [0.6, 0.1, 0.7, 0.3], "category": "animal"},
                    {"bbox": [0.0, 0.0, 0.2, 0.2], "category": "person"},
                ],
            }
            for key in images
        ]
        assert stage2.classify(records, lambda r: images[r["key"]], Feed(2, 4, batch_size)) == 14
        return records

    one, batched = classify(1), classify(5)
    for a, b in zip(one, batched, strict=True):
        for x, y in zip(a["detections"], b["detections"], strict=True):
            assert (
                x.get("species") == y.get("species")
                and abs(x.get("species_score", 0) - y.get("species_score", 0)) <= 2e-4
            )
        assert "species" not in a["detections"][2]  # people are not classified


# --- the container contract on S3 -------------------------------------------------------------


@mock_aws
def test_stages_read_their_shard_and_write_deterministic_outputs(emulator_models: Path, monkeypatch) -> None:
    s3 = boto3.client("s3", region_name="eu-north-1")
    for bucket in ("raw", "processed", "curated"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    keys = [f"images/site-a/{i}.jpg" for i in range(5)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket="raw", Key=key, Body=jpeg(800 + 100 * i, 600, (50, 50, 300, 300), seed=i))
    s3.put_object(
        Bucket="processed", Key="stage0/ex1/shard-2.json", Body=json.dumps({"records": [{"key": k} for k in keys]})
    )
    env = {
        "RAW_BUCKET": "raw",
        "PROCESSED_BUCKET": "processed",
        "CURATED_BUCKET": "curated",
        "INFERENCE_BATCH_SIZE": "2",
    }
    argv = ["s3://raw/manifests/m.json", "ex1", "2"]
    monkeypatch.setenv("INFERENCE_BATCH_SIZE", "2")
    outputs = {}
    for stage in ("stage1", "stage2"):
        monkeypatch.setattr(onnx_model, "MODEL_DIR", str(emulator_models / stage))
        code = stage_module(stage)
        for attempt in (1, 2):  # a retried job rewrites identical objects
            assert stage_runtime.run(code.process, argv=argv, env={**env, "STAGE": stage}, s3=s3) == 0
            body = s3.get_object(Bucket="processed", Key=f"{stage}/ex1/shard-2.json")["Body"].read()
            assert outputs.setdefault(stage, body) == body, f"{stage} attempt {attempt} wrote other bytes"
        marker = json.loads(s3.get_object(Bucket="processed", Key=f"{stage}/ex1/_SUCCESS.2.json")["Body"].read())
        assert marker["images"] == 5
    records = json.loads(outputs["stage2"])["records"]
    assert [r["key"] for r in records] == keys
    for i, record in enumerate(records):
        [box] = record["detections"]
        width = 800 + 100 * i
        # The emulator detector's centre box (64..576 of the 640 input) mapped back through the letterbox.
        pad_y = (640 - round(600 * 640 / width)) // 2
        assert box["image_size"] == [width, 600] and box["species"] in models.SPECIES
        assert box["bbox"][0] == pytest.approx(0.1, abs=1e-4) and box["bbox"][2] == pytest.approx(0.9, abs=1e-4)
        assert box["bbox"][1] == pytest.approx(max(0.0, (64 - pad_y) * width / 640 / 600), abs=2e-3)


@mock_aws
def test_an_image_that_vanished_gives_up_without_a_marker(emulator_models: Path, monkeypatch) -> None:
    s3 = boto3.client("s3", region_name="eu-north-1")
    for bucket in ("raw", "processed", "curated"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_object(
        Bucket="processed", Key="stage0/ex1/shard-0.json", Body=json.dumps({"records": [{"key": "images/gone.jpg"}]})
    )
    monkeypatch.setattr(onnx_model, "MODEL_DIR", str(emulator_models / "stage1"))
    env = {"RAW_BUCKET": "raw", "PROCESSED_BUCKET": "processed", "CURATED_BUCKET": "curated", "STAGE": "stage1"}
    code = stage_runtime.run(stage_module("stage1").process, argv=["s3://raw/m.json", "ex1", "0"], env=env, s3=s3)
    assert code == stage_runtime.EXIT_GIVE_UP
    assert "Contents" not in s3.list_objects_v2(Bucket="processed", Prefix="stage1/")
