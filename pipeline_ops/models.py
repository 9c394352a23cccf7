"""ONNX models with the real models' interfaces (images/README.md); no real model ships in git.

Emulator models (``ensure``), cheap, computing from the pixels so a run's output means something:
  detector.onnx   Nx3x640x640 -> Nx1x6: one box over the centre, score = mean brightness, class 0
  classifier.onnx Nx3x224x224 -> Nx3:   logits = channel means x a fixed 3x3 matrix (species.txt)
Bench models (``ensure_bench``, for ``make bench-stage``), of a real detector's input size and a
few GFLOPs an image (see BENCH_DETECTOR): strided 3x3 convolutions with ReLU and random (seeded) weights. Their outputs
are meaningless; their cost is what a small production network costs on the same hardware.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SPECIES = ("red_fox", "roe_deer", "eurasian_lynx")
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> None:
    """Write the model unless the file already holds exactly it (a changed model is rewritten)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="odins-ravne-local")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _const(name: str, values: list | np.ndarray, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def detector() -> onnx.GraphProto:
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "shape"], ["score"]),
        helper.make_node("Mul", ["score", "zeros4"], ["zero_box"]),
        helper.make_node("Add", ["zero_box", "box"], ["boxes"]),
        helper.make_node("Mul", ["score", "zeros1"], ["cls"]),
        helper.make_node("Concat", ["boxes", "score", "cls"], ["detections"], axis=2),
    ]
    return helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 640, 640])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N", 1, 6])],
        [
            _const("box", [[[64.0, 64.0, 576.0, 576.0]]]),
            _const("zeros4", np.zeros((1, 1, 4))),
            _const("zeros1", np.zeros((1, 1, 1))),
            _const("shape", [-1, 1, 1], np.int64),
        ],
    )


def classifier() -> onnx.GraphProto:
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["channels"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["channels", "weights"], ["logits"]),
    ]
    return helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [_const("weights", [[4.0, -1.0, 0.5], [-1.0, 4.0, 0.5], [0.5, 0.5, 3.0]])],
    )


# (out channels, stride) of each 3x3 convolution of the bench networks: ~7.3 GFLOPs an image for
# the detector (between YOLOv5n, 4.5, and YOLOv5s, 16.5, at 640; MegaDetector v5 itself, YOLOv5x6
# at 1280, is ~30x more) and ~4.5 a crop for the classifier (ResNet-50 at 224 is 4.1).
BENCH_DETECTOR = ((32, 2), (64, 2), (128, 2), (128, 1), (192, 2), (192, 1), (384, 2), (384, 1))
BENCH_CLASSIFIER = ((48, 2), (96, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
ANCHORS = 3


def _backbone(
    layers: tuple[tuple[int, int], ...], size: int, rng: np.random.Generator
) -> tuple[list, list, int, int, float]:
    """Conv+ReLU layers on ``images``; returns nodes, weights, channels, side and GFLOPs per image."""
    nodes, weights, channels, side, flops, previous = [], [], 3, size, 0.0, "images"
    for index, (out, stride) in enumerate(layers):
        w = rng.normal(0, np.sqrt(2 / (channels * 9)), (out, channels, 3, 3))
        weights += [_const(f"w{index}", w), _const(f"b{index}", np.zeros(out))]
        nodes += [
            helper.make_node(
                "Conv", [previous, f"w{index}", f"b{index}"], [f"c{index}"], pads=[1, 1, 1, 1], strides=[stride, stride]
            ),
            helper.make_node("Relu", [f"c{index}"], [f"r{index}"]),
        ]
        side = (side + 1) // stride if stride > 1 else side
        flops += 2 * channels * out * 9 * side * side
        channels, previous = out, f"r{index}"
    return nodes, weights, channels, side, flops / 1e9


def bench_detector(size: int = 640) -> tuple[onnx.GraphProto, float]:
    """A detector-shaped network: Nx3xSxS -> N x (anchors*cells) x 6 rows in input pixels."""
    rng = np.random.default_rng(7)
    nodes, weights, channels, side, gflops = _backbone(BENCH_DETECTOR, size, rng)
    head = rng.normal(0, np.sqrt(1 / channels), (ANCHORS * 6, channels, 1, 1))
    # Score logits centred at -5: like a trained detector, few rows pass the stage's threshold.
    bias = np.tile([0.0, 0.0, 0.0, 0.0, -5.0, 0.0], ANCHORS)
    weights += [
        _const("head_w", head),
        _const("head_b", bias),
        _const("rows", [0, ANCHORS, 6, side * side], np.int64),
        _const("flat", [0, -1, 6], np.int64),
        _const("to_pixels", [size, size, size, size, 1.0, 0.0]),
    ]
    nodes += [
        helper.make_node("Conv", [f"r{len(BENCH_DETECTOR) - 1}", "head_w", "head_b"], ["head"]),
        helper.make_node("Reshape", ["head", "rows"], ["grid"]),
        helper.make_node("Transpose", ["grid"], ["cells"], perm=[0, 1, 3, 2]),
        helper.make_node("Reshape", ["cells", "flat"], ["raw"]),
        helper.make_node("Sigmoid", ["raw"], ["unit"]),
        helper.make_node("Mul", ["unit", "to_pixels"], ["detections"]),
    ]
    gflops += 2 * channels * ANCHORS * 6 * side * side / 1e9
    graph = helper.make_graph(
        nodes,
        "bench_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N", ANCHORS * side * side, 6])],
        weights,
    )
    return graph, gflops


def bench_classifier(size: int = 224, classes: int = len(SPECIES)) -> tuple[onnx.GraphProto, float]:
    """A classifier-shaped network: Nx3xSxS -> N x classes logits."""
    rng = np.random.default_rng(11)
    nodes, weights, channels, _, gflops = _backbone(BENCH_CLASSIFIER, size, rng)
    weights.append(_const("fc", rng.normal(0, np.sqrt(1 / channels), (channels, classes))))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"r{len(BENCH_CLASSIFIER) - 1}"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("MatMul", ["features", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        weights,
    )
    return graph, gflops


def _write(models_dir: Path, detector_graph: onnx.GraphProto, classifier_graph: onnx.GraphProto) -> None:
    _save(detector_graph, models_dir / "stage1" / "detector.onnx")
    _save(classifier_graph, models_dir / "stage2" / "classifier.onnx")
    (models_dir / "stage2" / "species.txt").write_text("\n".join(SPECIES) + "\n")


def ensure(models_dir: Path) -> None:
    """Write the emulator models (and labels)."""
    _write(models_dir, detector(), classifier())


def ensure_emulator() -> None:
    """The emulator's set-up (``python -m local.emulator start --setup pipeline_ops.models:ensure_emulator``):
    the models the Batch runner's stages load."""
    from local import runners

    ensure(runners.MODELS)


def ensure_bench(models_dir: Path) -> dict[str, float]:
    """Write the bench models (and labels); returns GFLOPs per image (per crop for stage2)."""
    (det, det_gflops), (cls, cls_gflops) = bench_detector(), bench_classifier()
    _write(models_dir, det, cls)
    return {"stage1": round(det_gflops, 2), "stage2": round(cls_gflops, 2)}
