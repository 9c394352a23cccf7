"""stage2 - species classification on the GPU: each animal box is cropped and classified.

The classifier is an ONNX model (input 1x3x224x224, output logits) with its labels in
/opt/model/species.txt, one per line, baked into the image.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import numpy as np
from onnx_model import MODEL_DIR, open_image, run_model, to_tensor
from stage_runtime import StageContext, read_image, read_shard, run, write_json

SIZE = 224


def labels() -> list[str]:
    with open(os.path.join(MODEL_DIR, "species.txt"), encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def process(ctx: StageContext, s3: Any, log: logging.Logger) -> dict[str, Any]:
    records, names, classified = read_shard(s3, ctx, "stage1"), labels(), 0
    for record in records:
        animals = [d for d in record.get("detections", []) if d["category"] == "animal"]
        if not animals:
            continue
        image = open_image(read_image(s3, ctx.raw_bucket, record["key"]))
        width, height = image.size
        for box in animals:
            x1, y1, x2, y2 = box["bbox"]
            crop = image.crop((int(x1 * width), int(y1 * height), int(x2 * width), int(y2 * height)))
            probs = softmax(run_model("classifier.onnx", to_tensor(crop, SIZE))[0][0])
            best = int(probs.argmax())
            box["species"] = names[best] if best < len(names) else f"class-{best}"
            box["species_score"] = round(float(probs[best]), 4)
            classified += 1
    write_json(s3, ctx.processed_bucket, ctx.output_key(f"shard-{ctx.shard}.json"), {"records": records})
    return {"images": len(records), "classified": classified}


if __name__ == "__main__":
    sys.exit(run(process))
