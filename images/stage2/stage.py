"""stage2 - species classification on the GPU: each animal box is cropped and classified.

The classifier is an ONNX model (input Nx3x224x224, letterboxed crops; output logits) with its
labels in /opt/model/species.txt, one per line, baked into the image. Images are read, decoded (at
the smallest DCT scale that keeps the smallest box at the classifier's resolution) and cropped on a
thread pool ahead of the model; crops of all images are classified ``INFERENCE_BATCH_SIZE`` at a time.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import numpy as np
import onnx_model
from onnx_model import Letterboxed, infer, letterbox, model, open_image
from stage_runtime import Feed, StageContext, prefetch, read_image, read_shard, run, write_json


def labels() -> list[str]:
    with open(os.path.join(onnx_model.MODEL_DIR, "species.txt"), encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def animals(record: dict) -> list[dict]:
    return [d for d in record.get("detections", []) if d["category"] == "animal"]


def crops_of(record: dict, data: bytes, size: int) -> list[tuple[dict, Letterboxed]]:
    """Each animal box of ``record`` cut from the image ``data`` and letterboxed to ``size``."""
    boxes = animals(record)

    def scale(width: int, height: int) -> float:
        """Enough pixels that the smallest box still covers the classifier's input."""
        sides = [max((b["bbox"][2] - b["bbox"][0]) * width, (b["bbox"][3] - b["bbox"][1]) * height) for b in boxes]
        return size / max(min(sides), 1.0)

    pixels, _ = open_image(data, scale)
    height, width = pixels.shape[:2]  # the decoded size: a bbox is the same fraction of it
    out = []
    for box in boxes:
        x1, y1, x2, y2 = box["bbox"]
        left, top = int(x1 * width), int(y1 * height)
        crop = pixels[top : max(int(y2 * height), top + 1), left : max(int(x2 * width), left + 1)]
        out.append((box, letterbox(crop, size)))
    return out


def classify(records: list[dict], load: Any, feed: Feed) -> int:
    """Add ``species``/``species_score`` to every animal box; ``load(record)`` returns the image's bytes."""
    classifier, names = model("classifier.onnx"), labels()

    def crops(record: dict) -> list[tuple[dict, Letterboxed]]:
        return crops_of(record, load(record), classifier.size)

    def flat() -> Any:
        for _, pairs in prefetch((r for r in records if animals(r)), crops, workers=feed.workers, depth=feed.depth):
            yield from pairs

    classified = 0
    for box, _, logits in infer(flat(), classifier, feed.batch_size):
        probs = softmax(logits)
        best = int(probs.argmax())
        box["species"] = names[best] if best < len(names) else f"class-{best}"
        box["species_score"] = round(float(probs[best]), 4)
        classified += 1
    return classified


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    records = read_shard(s3, ctx, "stage1")
    size = model("classifier.onnx").size
    feed = Feed.from_env(dict(os.environ), item_bytes=4 * 3 * size * size)  # ~4 boxes an image
    log.info("feeding the classifier", extra={"fields": {"images": len(records), **feed.__dict__}})
    classified = classify(records, lambda record: read_image(s3, ctx.raw_bucket, record["key"]), feed)
    write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{ctx.shard}.json"), {"records": records})
    return {"images": len(records), "classified": classified}


if __name__ == "__main__":
    sys.exit(run(process))
