"""Tiny ONNX stand-ins for YOLOX and DWPose with the real input/output names and shapes (DWPOSE.md §12 B):
outputs are planted constants plus 0 x mean(input), so the input is consumed but cannot change them."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEVELS = ((8, 80, 0), (16, 40, 6400), (32, 20, 8000))  # stride, grid width, first row (640x640 input)


def _save(nodes, inputs, outputs, initializers, path):
    graph = helper.make_graph(nodes, "planted", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def plant_box(rows: np.ndarray, box_in_input, score: float, cls: int = 0, level: int = 2, objectness=1.0):
    """Write one anchor row decoding to x1y1x2y2 `box_in_input` (letterboxed input pixels)."""
    stride, grid_w, offset = LEVELS[level]
    x1, y1, x2, y2 = box_in_input
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    gx, gy = int(cx // stride), int(cy // stride)
    row = offset + gy * grid_w + gx
    rows[row, :4] = [cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride)]
    rows[row, 4] = objectness
    rows[row, 5 + cls] = score / objectness
    return row


def detector_model(path, rows: np.ndarray, batch=1, input_hw=(640, 640)) -> str:
    """`rows` (A, C) planted as the output for every image; `batch` an int (static) or a name (dynamic)."""
    const = numpy_helper.from_array(rows[None].astype(np.float32), "planted")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Unsqueeze", ["nothing", "axes"], ["nothing3"]),
             helper.make_node("Add", ["planted", "nothing3"], ["output"])]
    return _save(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *input_hw])],
                 [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, *rows.shape])],
                 [const, zero, axes], path)


def pose_model(path, simcc_x: np.ndarray, simcc_y: np.ndarray, batch=1, input_hw=(384, 288)) -> str:
    """simcc_x (133, 2*W), simcc_y (133, 2*H); `batch` an int (static) or a name (dynamic)."""
    inits = [numpy_helper.from_array(simcc_x[None].astype(np.float32), "px"),
             numpy_helper.from_array(simcc_y[None].astype(np.float32), "py"),
             numpy_helper.from_array(np.zeros((), np.float32), "zero"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "axes")]
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
             helper.make_node("Unsqueeze", ["zeros", "axes"], ["zeros3"]),
             helper.make_node("Add", ["px", "zeros3"], ["simcc_x"]),
             helper.make_node("Add", ["py", "zeros3"], ["simcc_y"])]
    h, w = input_hw
    return _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, h, w])],
                 [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, 133, simcc_x.shape[-1]]),
                  helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, 133, simcc_y.shape[-1]])],
                 inits, path)


def planted_keypoints(seed: int = 0, input_hw=(384, 288)):
    """Random crop-pixel keypoints on the 0.5 grid and their SimCC vectors; scores between 0.35 and 0.95
    except keypoint 20 (0.2, below the visibility threshold)."""
    rng = np.random.default_rng(seed)
    h, w = input_hw
    px = rng.integers(0, 2 * w, 133) / 2.0
    py = rng.integers(0, 2 * h, 133) / 2.0
    vx = rng.uniform(0.35, 0.95, 133)
    vy = rng.uniform(0.35, 0.95, 133)
    vx[20] = 0.2
    sx = np.zeros((133, 2 * w))
    sy = np.zeros((133, 2 * h))
    sx[np.arange(133), (px * 2).astype(int)] = vx
    sy[np.arange(133), (py * 2).astype(int)] = vy
    return np.stack([px, py], 1), np.minimum(vx, vy).astype(np.float32), sx, sy
