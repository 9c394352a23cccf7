"""ONNX inference shared by the GPU stages: one session per process, CUDA first, CPU fallback."""

from __future__ import annotations

import io
import os
from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image
from stage_runtime import StageInputError

MODEL_DIR = os.environ.get("MODEL_DIR", "/opt/model")


@cache
def session(name: str) -> ort.InferenceSession:
    path = os.path.join(MODEL_DIR, name)
    if not os.path.exists(path):
        raise StageInputError(f"model {path} is missing from the image; rebuild it with `make images`")
    return ort.InferenceSession(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def to_tensor(image: Image.Image, size: int) -> np.ndarray:
    """RGB, resized to size x size, NCHW float32 in [0, 1]."""
    pixels = np.asarray(image.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
    return pixels.transpose(2, 0, 1)[np.newaxis, ...]


def open_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:
        raise StageInputError(f"unreadable image: {exc}") from exc
    return image


def run_model(name: str, tensor: np.ndarray) -> list[Any]:
    model = session(name)
    return model.run(None, {model.get_inputs()[0].name: tensor})
