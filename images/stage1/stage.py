"""stage1 - animal detection on the GPU: boxes with a score for every image of the shard.

The detector is an ONNX export of a MegaDetector-style model (input 1x3x640x640, output rows of
``x1, y1, x2, y2, score, class`` in input pixels), baked into the image at /opt/model/detector.onnx.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from onnx_model import open_image, run_model, to_tensor
from stage_runtime import StageContext, read_image, read_shard, run, write_json

SIZE = 640
CLASSES = {0: "animal", 1: "person", 2: "vehicle"}
MIN_SCORE = float(os.environ.get("DETECTION_MIN_SCORE", "0.2"))


def detections(rows: Any, width: int, height: int) -> list[dict]:
    """Model rows -> boxes normalised to [0, 1] of the original image, best first."""
    found = []
    for x1, y1, x2, y2, score, cls in rows:
        if score < MIN_SCORE:
            continue
        found.append(
            {
                "bbox": [
                    round(float(x1) / SIZE, 4),
                    round(float(y1) / SIZE, 4),
                    round(float(x2) / SIZE, 4),
                    round(float(y2) / SIZE, 4),
                ],
                "score": round(float(score), 4),
                "category": CLASSES.get(int(cls), "unknown"),
                "image_size": [width, height],
            }
        )
    return sorted(found, key=lambda d: -d["score"])


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    records, boxes = read_shard(s3, ctx, "stage0"), 0
    for record in records:
        image = open_image(read_image(s3, ctx.raw_bucket, record["key"]))
        (rows,) = run_model("detector.onnx", to_tensor(image, SIZE))[:1]
        record["detections"] = detections(rows.reshape(-1, 6), *image.size)
        boxes += len(record["detections"])
    write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{ctx.shard}.json"), {"records": records})
    return {"images": len(records), "detections": boxes}


if __name__ == "__main__":
    sys.exit(run(process))
