"""Small ONNX models for running the GPU stages on the emulator (no real model ships in git).

They have the real models' interfaces (images/README.md) and compute from the pixels:
  detector.onnx   1x3x640x640 -> 1x1x6: one box over the centre, score = mean brightness, class 0 (animal)
  classifier.onnx 1x3x224x224 -> 1x3:   logits = channel means x a fixed 3x3 matrix (species.txt)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SPECIES = ("red_fox", "roe_deer", "eurasian_lynx")
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="odins-ravne-local")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def detector() -> onnx.GraphProto:
    box = numpy_helper.from_array(np.array([[[64.0, 64.0, 576.0, 576.0]]], dtype=np.float32), "box")
    cls = numpy_helper.from_array(np.zeros((1, 1, 1), dtype=np.float32), "cls")
    shape = numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Reshape", ["mean", "shape"], ["score"]),
        helper.make_node("Concat", ["box", "score", "cls"], ["detections"], axis=2),
    ]
    return helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, 1, 6])],
        [box, cls, shape],
    )


def classifier() -> onnx.GraphProto:
    weights = numpy_helper.from_array(
        np.array([[4.0, -1.0, 0.5], [-1.0, 4.0, 0.5], [0.5, 0.5, 3.0]], dtype=np.float32), "weights"
    )
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["channels"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["channels", "weights"], ["logits"]),
    ]
    return helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        [weights],
    )


def ensure(models_dir: Path) -> None:
    """Write the models (and labels) unless they are there already."""
    if not (models_dir / "stage1" / "detector.onnx").exists():
        _save(detector(), models_dir / "stage1" / "detector.onnx")
    if not (models_dir / "stage2" / "classifier.onnx").exists():
        _save(classifier(), models_dir / "stage2" / "classifier.onnx")
        (models_dir / "stage2" / "species.txt").write_text("\n".join(SPECIES) + "\n")
