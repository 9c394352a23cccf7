"""stage1 - animal detection on the GPU: boxes with a score for every image of the shard.

The detector is an ONNX export of a MegaDetector-style model (input Nx3x640x640, letterboxed;
output rows of ``x1, y1, x2, y2, score, class`` in input pixels), baked into the image at
/opt/model/detector.onnx. Images are read and decoded on a thread pool ahead of the model
(``stage_runtime.prefetch``) and detected ``INFERENCE_BATCH_SIZE`` at a time, so the accelerator
does not wait for S3 or the JPEG decoder.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import numpy as np
from onnx_model import Letterboxed, infer, letterbox, letterbox_scale, model, open_image
from stage_runtime import Feed, StageContext, prefetch, read_image, read_shard, run, write_json

CLASSES = {0: "animal", 1: "person", 2: "vehicle"}
MIN_SCORE = float(os.environ.get("DETECTION_MIN_SCORE", "0.2"))


def detections(rows: np.ndarray, boxed: Letterboxed) -> list[dict]:
    """Model rows -> boxes in [0, 1] of the original image, best first (ties in row order)."""
    rows = rows.reshape(-1, 6)
    kept = rows[rows[:, 4] >= MIN_SCORE]
    found = [
        {
            "bbox": [round(v, 4) for v in boxed.to_original(*map(float, row[:4]))],
            "score": round(float(row[4]), 4),
            "category": CLASSES.get(int(row[5]), "unknown"),
            "image_size": [boxed.width, boxed.height],
        }
        for row in kept
    ]
    return sorted(found, key=lambda d: -d["score"])


def detect(records: list[dict], load: Any, feed: Feed) -> int:
    """Add ``detections`` to every record; ``load(record)`` returns the image's bytes."""
    detector = model("detector.onnx")
    size, scale = detector.size, letterbox_scale(detector.size)

    def prepare(record: dict) -> Letterboxed:
        pixels, original = open_image(load(record), scale)
        return letterbox(pixels, size, original)

    boxes = 0
    loaded = prefetch(records, prepare, workers=feed.workers, depth=feed.depth)
    for record, boxed, rows in infer(loaded, detector, feed.batch_size):
        record["detections"] = detections(rows, boxed)
        boxes += len(record["detections"])
    return boxes


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    records = read_shard(s3, ctx, "stage0")
    size = model("detector.onnx").size
    feed = Feed.from_env(dict(os.environ), item_bytes=3 * size * size)
    log.info("feeding the detector", extra={"fields": {"images": len(records), **feed.__dict__}})
    boxes = detect(records, lambda record: read_image(s3, ctx.raw_bucket, record["key"]), feed)
    write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{ctx.shard}.json"), {"records": records})
    return {"images": len(records), "detections": boxes}


if __name__ == "__main__":
    sys.exit(run(process))
