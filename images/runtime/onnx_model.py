"""Batched ONNX inference shared by the GPU stages: CUDA when present, CPU otherwise.

Images reach the model letterboxed (aspect ratio kept, padded to a square, as MegaDetector-style
detectors are trained), so a box the model finds maps back to the original image exactly.
Decoding and resizing use OpenCV (libjpeg-turbo, SIMD resize; both release the GIL, so the
prefetch threads decode in parallel): a JPEG is decoded with the decoder's DCT scaling to the
smallest size that still covers what the model needs (a 2048x1536 photo for a 640 input decodes
at 1024x768, ~40 % of the work) and resized bilinearly as YOLO-family detectors are trained.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image
from stage_runtime import StageInputError, batched

T = TypeVar("T")
MODEL_DIR = os.environ.get("MODEL_DIR", "/opt/model")
PAD = 114  # the grey YOLO-family detectors pad with
PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
# DCT scale reductions libjpeg offers; any other format decodes at 1 and is resized.
REDUCED = {
    8: cv2.IMREAD_REDUCED_COLOR_8,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    1: cv2.IMREAD_COLOR,
}
cv2.setNumThreads(1)  # the stages parallelise across images (stage_runtime.prefetch), not inside one


@dataclass(frozen=True)
class Letterboxed:
    """A letterboxed image as CHW uint8 RGB (a quarter of its float32 tensor's memory while it
    waits in the prefetch queue; ``batch_of`` scales a batch to [0, 1] floats) and how it was
    placed in the square input."""

    tensor: np.ndarray
    scale: float  # input pixels per original pixel
    pad_x: int
    pad_y: int
    width: int  # the original image's size
    height: int

    def to_original(self, x1: float, y1: float, x2: float, y2: float) -> list[float]:
        """A box in model-input pixels -> the same box in [0, 1] of the original image."""

        def back(value: float, pad: int, extent: int) -> float:
            return min(1.0, max(0.0, (value - pad) / self.scale / extent))

        return [
            back(x1, self.pad_x, self.width),
            back(y1, self.pad_y, self.height),
            back(x2, self.pad_x, self.width),
            back(y2, self.pad_y, self.height),
        ]


def letterbox(pixels: np.ndarray, size: int, original: tuple[int, int] | None = None) -> Letterboxed:
    """``pixels`` (HxWx3 BGR, as decoded) scaled to fit ``size`` x ``size`` with its aspect ratio,
    centred on grey padding. ``original`` is the size boxes refer to when it was decoded smaller."""
    width, height = original or (pixels.shape[1], pixels.shape[0])
    scale = min(size / width, size / height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrink = pixels.shape[1] / new[0]
    if (pixels.shape[1], pixels.shape[0]) != new:
        pixels = cv2.resize(pixels, new, interpolation=cv2.INTER_AREA if shrink > 2 else cv2.INTER_LINEAR)
    pad_x, pad_y = (size - new[0]) // 2, (size - new[1]) // 2
    tensor = np.full((3, size, size), PAD, dtype=np.uint8)
    inside = tensor[:, pad_y : pad_y + new[1], pad_x : pad_x + new[0]]
    # BGR HWC -> RGB CHW plane by plane: contiguous copies, ~8x faster than a strided transpose.
    for channel, plane in enumerate(reversed(cv2.split(pixels))):
        inside[channel] = plane
    return Letterboxed(tensor, scale, pad_x, pad_y, width, height)


def batch_of(boxes: Iterable[Letterboxed]) -> np.ndarray:
    """The model input for ``boxes``: N x 3 x S x S float32 in [0, 1]."""
    batch = np.stack([boxed.tensor for boxed in boxes]).astype(np.float32)
    batch *= 1 / 255
    return batch


def open_image(data: bytes, scale: Callable[[int, int], float] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``data`` to HxWx3 BGR; with ``scale`` (width, height -> the fraction of the original
    the caller needs), at the largest DCT reduction that keeps that fraction. Returns the pixels and
    the original size (from the header; EXIF orientation is ignored, as boxes refer to the raster)."""
    try:
        original = Image.open(io.BytesIO(data)).size
    except Exception as exc:
        raise StageInputError(f"unreadable image: {exc}") from exc
    fraction = min(1.0, scale(*original)) if scale else 1.0
    factor = next(f for f in REDUCED if f == 1 or 1 / f >= fraction)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None:
        raise StageInputError(f"unreadable image: OpenCV cannot decode these {len(data)} bytes")
    return pixels, original


def letterbox_scale(size: int) -> Callable[[int, int], float]:
    """The fraction of an image a ``size`` letterbox needs (for ``open_image``)."""
    return lambda width, height: size / max(width, height)


class Model:
    """One ONNX session; ``run`` takes a batch (N, C, H, W) and returns the first output."""

    def __init__(self, path: str) -> None:
        if not os.path.exists(path):
            raise StageInputError(f"model {path} is missing from the image; rebuild it with `make images`")
        available = ort.get_available_providers()
        self.providers = [p for p in PROVIDERS if p in available]
        options = ort.SessionOptions()
        # Spinning intra-op threads would take the CPU from the threads decoding the next batch.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU arena keeps every buffer it ever grew to and fragments; memory must stay bounded
        # by the prefetch queue, not by the longest shard (the CUDA provider has its own arena).
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(path, options, providers=self.providers)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.size = int(model_input.shape[-1])
        batch = model_input.shape[0]
        self.max_batch = batch if isinstance(batch, int) else None  # None: any batch size

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.max_batch is None or len(batch) <= self.max_batch:
            return self.session.run(None, {self.input_name: batch})[0]
        step = self.max_batch  # a model exported with a fixed batch: run it in pieces
        return np.concatenate([self.run(batch[i : i + step]) for i in range(0, len(batch), step)])


def model(name: str) -> Model:
    """The model ``name`` of ``MODEL_DIR``, loaded once per process."""
    return _loaded(os.path.join(MODEL_DIR, name))


@cache
def _loaded(path: str) -> Model:
    return Model(path)


def infer(
    items: Iterable[tuple[T, Letterboxed]], net: Model, batch_size: int
) -> Iterator[tuple[T, Letterboxed, np.ndarray]]:
    """Run ``net`` on the letterboxed tensors ``batch_size`` at a time; each item with its output.

    The model runs on a thread of its own (ONNX Runtime releases the GIL), so the next batch is
    gathered, stacked and scaled while the current one is inferred: the model never waits for numpy."""

    def done(chunk: list[tuple[T, Letterboxed]], outputs: Future) -> Iterator[tuple[T, Letterboxed, np.ndarray]]:
        yield from ((item, boxed, output) for (item, boxed), output in zip(chunk, outputs.result(), strict=True))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference") as runner:
        running = None
        for chunk in batched(items, batch_size):
            submitted = (chunk, runner.submit(net.run, batch_of(boxed for _, boxed in chunk)))
            if running:
                yield from done(*running)
            running = submitted
        if running:
            yield from done(*running)
