"""Stage benchmark: do the GPU stages keep their model busy? (``make bench-stage``)

Runs stage1 and stage2's own ``process`` on N generated camera-trap JPEGs (2048x1536) with the CPU
provider and the bench models of ``pipeline_ops.models`` (a detector of the real 640 input and a
few GFLOPs an image, a 224 classifier), and compares end-to-end images/s (read, decode, letterbox,
batched inference, JSON out) with the model alone on the same pre-decoded tensors. The images are
served from a local folder through the S3 calls the stages make, each GET after ``--latency-ms``
(S3's first-byte latency, default 25 ms), so prefetching has real waits to hide. Each measurement
runs in a fresh process, so its peak RSS is its own; five paired rounds (model, end to end, the
order alternating) give five ratios and the median is reported, as a shared machine's speed
drifts by more than the effect measured; last, stage1 runs on 10x N to show the
prefetch queue keeps memory bounded. Target: end to end <= 1.25x model-only (the last line).

    python bench/stage.py [--images 64] [--latency-ms 25] [--no-memory-check]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "bench-stage"
RAW, PROCESSED = "bench-raw", "bench-processed"
WIDTH, HEIGHT = 2048, 1536
DISTINCT = 64  # generated images; larger runs reuse them in turn (each is still read and decoded)
PEAK_GROWTH = 1.20


def generate(count: int) -> list[Path]:
    """Camera-trap-like JPEGs: smooth scene, sensor noise, an animal-sized blob (cached)."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder = WORK / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"trap-{i:03d}.jpg" for i in range(min(count, DISTINCT))]
    rng = np.random.default_rng(2026)
    for i, path in enumerate(paths):
        if path.exists():
            continue
        coarse = Image.fromarray(rng.integers(30, 200, (12, 16, 3), dtype=np.uint8)).resize(
            (WIDTH, HEIGHT), Image.BICUBIC
        )
        pixels = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 6, (HEIGHT, WIDTH, 3)).astype(np.int16)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        x, y = 300 + 37 * i % 1200, 400 + 53 * i % 700
        ImageDraw.Draw(image).ellipse((x, y, x + 500, y + 300), fill=(120, 90, 60))
        image.save(path, quality=90)
    return paths


def records(count: int) -> list[dict]:
    """Shard records; stage2's carry one or two animal boxes (a third to a half of the frame)."""
    out = []
    for i in range(count):
        boxes = [{"bbox": [0.15, 0.25, 0.55, 0.7], "category": "animal", "score": 0.9}]
        if i % 2:
            boxes.append({"bbox": [0.5, 0.4, 0.85, 0.9], "category": "animal", "score": 0.7})
        out.append({"key": f"images/trap-{i % DISTINCT:03d}.jpg", "detections": boxes})
    return out


class FolderS3:
    """The S3 calls the stages make, over a local folder (reads wait ``latency`` seconds first)."""

    class exceptions:
        class NoSuchKey(Exception):
            pass

    def __init__(self, latency: float, shard: dict) -> None:
        self.latency, self.objects, self.lock = latency, {}, threading.Lock()
        self.objects[PROCESSED, "input/bench/shard-0.json"] = json.dumps(shard).encode()

    def get_object(self, Bucket: str, Key: str) -> dict:
        time.sleep(self.latency)
        with self.lock:
            stored = self.objects.get((Bucket, Key))
        if stored is None and Bucket == RAW:
            path = WORK / Key
            stored = path.read_bytes() if path.exists() else None
        if stored is None:
            raise self.exceptions.NoSuchKey(Key)
        return {"Body": io.BytesIO(stored)}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: object) -> dict:
        with self.lock:
            self.objects[Bucket, Key] = Body
        return {}


def feed_env(stage: str) -> dict[str, str]:
    """What the job definition gives the stage (conf/pipeline.py), with this machine's CPUs."""
    sys.path.insert(0, str(REPO))
    from conf.pipeline import PIPELINE

    resources = PIPELINE.step(stage).resources
    return {
        "STAGE_VCPUS": str(os.cpu_count() or 1),
        "STAGE_MEMORY_MIB": str(resources.memory_mib),
        "INFERENCE_BATCH_SIZE": str(resources.batch_size),
    }


def worker(stage: str, mode: str, count: int, latency: float) -> dict:
    """One measurement in this process: ``e2e`` runs the stage's process(), ``model`` the model alone."""
    os.environ.update(feed_env(stage), MODEL_DIR=str(WORK / "models" / stage), STAGE=stage)
    sys.path[:0] = [str(REPO / "images" / "runtime"), str(REPO / "images" / stage)]
    import onnx_model
    import stage as code
    from stage_runtime import Feed, StageContext

    batch = int(os.environ["INFERENCE_BATCH_SIZE"])
    shard = records(count)
    if mode == "model":
        name = "detector.onnx" if stage == "stage1" else "classifier.onnx"
        net = onnx_model.model(name)
        store = FolderS3(0, {})
        boxes = []  # decoded and letterboxed as the stage does, before the clock starts
        for record in shard[: min(count, DISTINCT)]:
            data = store.get_object(RAW, record["key"])["Body"].read()
            if stage == "stage1":
                pixels, original = onnx_model.open_image(data, onnx_model.letterbox_scale(net.size))
                boxes.append(onnx_model.letterbox(pixels, net.size, original))
            else:
                boxes += [boxed for _, boxed in code.crops_of(record, data, net.size)]
        per_image = len(boxes) / min(count, DISTINCT)
        batches = [onnx_model.batch_of(boxes[i : i + batch]) for i in range(0, len(boxes), batch)]
        net.run(batches[0])  # warm-up, as the stage's first batch
        started = time.perf_counter()
        done = 0
        while done < count * per_image:  # the model alone: float batches ready, nothing else timed
            for ready in batches:
                net.run(ready)
            done += len(boxes)
        seconds = (time.perf_counter() - started) * (count * per_image / done)
    else:
        store = FolderS3(latency, {"records": shard})
        ctx = StageContext(
            stage, "bench", "s3://bench/manifest.json", "bench", 0, RAW, PROCESSED, "bench-curated", f"{stage}/bench/"
        )
        input_stage = "stage0" if stage == "stage1" else "stage1"
        store.objects[PROCESSED, f"{input_stage}/bench/shard-0.json"] = store.objects.pop(
            (PROCESSED, "input/bench/shard-0.json")
        )
        log = logging.getLogger("bench")
        warm = shard[:batch]
        if stage == "stage1":
            code.detect(
                [dict(r) for r in warm], lambda r: store.get_object(RAW, r["key"])["Body"].read(), Feed(1, 1, batch)
            )
        else:
            code.classify(
                json.loads(json.dumps(warm)),
                lambda r: store.get_object(RAW, r["key"])["Body"].read(),
                Feed(1, 1, batch),
            )
        started = time.perf_counter()
        code.process(ctx, store, log)
        seconds = time.perf_counter() - started
    feed = Feed.from_env(dict(os.environ), item_bytes=1)
    return {
        "stage": stage,
        "mode": mode,
        "images": count,
        "seconds": seconds,
        "images_per_second": count / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batch_size": batch,
        "workers": feed.workers,
    }


def measure(stage: str, mode: str, count: int, latency: float) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", stage, mode, str(count), str(latency)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"error: bench worker {stage} {mode} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/stage.py", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images per run (default 64)")
    parser.add_argument("--latency-ms", type=float, default=25.0, help="wait before each image GET (default 25)")
    parser.add_argument("--rounds", type=int, default=5, help="paired measurements, the median counts (default 5)")
    parser.add_argument("--no-memory-check", action="store_true", help="skip the 10x N run of stage1")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        stage, mode, count, latency = args.worker
        print(json.dumps(worker(stage, mode, int(count), float(latency))))
        return 0
    if args.images < 1 or args.rounds < 1:
        print(f"error: --images and --rounds must be at least 1, got {args.images} and {args.rounds}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from pipeline_ops import models

    generate(args.images)
    gflops = models.ensure_bench(WORK / "models")
    latency = args.latency_ms / 1000
    print(
        f"{args.images} images of {WIDTH}x{HEIGHT}, S3 latency {args.latency_ms:g} ms, "
        f"{os.cpu_count()} CPUs, CPU provider"
    )
    ratios = []
    for stage, unit in (("stage1", "image"), ("stage2", "crop")):
        # Paired rounds, the order alternating, the median of the per-round ratios: a shared VM's
        # speed drifts by more than the effect measured, and a pair shares its moment.
        rounds = []
        for index in range(args.rounds):
            order = ("model", "e2e") if index % 2 == 0 else ("e2e", "model")
            pair = {mode: measure(stage, mode, args.images, latency) for mode in order}
            rounds.append((pair["model"], pair["e2e"]))
        rounds.sort(key=lambda r: r[0]["images_per_second"] / r[1]["images_per_second"])
        model, e2e = rounds[len(rounds) // 2]
        ratio = model["images_per_second"] / e2e["images_per_second"]
        each = " ".join(f"{m['images_per_second'] / e['images_per_second']:.2f}" for m, e in rounds)
        ratios.append(ratio)
        print(
            f"{stage}: {gflops[stage]} GFLOPs/{unit}, batch {e2e['batch_size']}, {e2e['workers']} loader threads: "
            f"model only {model['images_per_second']:.1f} images/s, end to end {e2e['images_per_second']:.1f} images/s "
            f"(x{ratio:.2f}; rounds {each}), "
            f"peak RSS {e2e['peak_rss_mib']:.0f} MiB"
        )
    if not args.no_memory_check:
        small = measure("stage1", "e2e", args.images, latency)
        large = measure("stage1", "e2e", 10 * args.images, latency)
        growth = large["peak_rss_mib"] / small["peak_rss_mib"]
        verdict = "bounded" if growth <= PEAK_GROWTH else f"NOT bounded (target <= {PEAK_GROWTH:.2f})"
        print(
            f"memory: stage1 peak RSS {small['peak_rss_mib']:.0f} MiB at {args.images} images, "
            f"{large['peak_rss_mib']:.0f} MiB at {10 * args.images} (x{growth:.2f}, {verdict})"
        )
    print(f"ratio {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
