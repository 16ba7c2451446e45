"""DWPose whole-body estimation over onnxruntime: YOLOX-L person boxes + DWPose/RTMPose 133 keypoints.

Sessions are created by `load_dwpose` (the ComfyUI loader node keeps the returned object in its output
cache). Input names, sizes and batch support are read from the sessions, never from file names, and the
execution providers are reported from `session.get_providers()` because onnxruntime-gpu silently falls back
to CPU when CUDA libraries are missing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .detector import decode_boxes, select_person_boxes
from .imageops import letterbox
from .keypoints import PoseFrame, people_from_wholebody
from .topdown import crop_for_box, crop_input, decode_simcc, to_image

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "CPU", "CUDA", "DirectML", "ROCm", "OpenVINO", "CoreML", "TensorRT")
CHANNEL_ORDERS = ("BGR", "RGB")  # YOLOX was trained on OpenCV (BGR) images; comfyui_controlnet_aux feeds RGB
NO_PERSON_MODES = ("empty", "whole image", "error")
LETTERBOX_FILL = 114


class NoPersonError(RuntimeError):
    """No person was detected in a frame and the caller asked for an error."""


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # keep the pack importable; say exactly what to install
        raise ImportError("DWPose needs the 'onnxruntime' package (or 'onnxruntime-gpu' for CUDA; never both): "
                          "pip install onnxruntime") from err
    return onnxruntime


def _providers(choice: str, available: Sequence[str]) -> list[str]:
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {PROVIDER_CHOICES}, got {choice!r}")
    if choice == "auto":
        # Accelerated providers first; TensorRT is left out of "auto" because building engines takes minutes.
        order = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                 "CoreMLExecutionProvider", "OpenVINOExecutionProvider")
        return [p for p in order if p in available] + ["CPUExecutionProvider"]
    name = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "DirectML": "DmlExecutionProvider",
            "ROCm": "ROCMExecutionProvider", "OpenVINO": "OpenVINOExecutionProvider",
            "CoreML": "CoreMLExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}[choice]
    if name not in available:
        raise RuntimeError(f"onnxruntime provider {name} is not available here (available: {', '.join(available)})."
                           " Choose 'auto' or 'CPU', or install the onnxruntime build for your GPU.")
    return [name, "CPUExecutionProvider"] if name != "CPUExecutionProvider" else [name]


@dataclass
class OnnxModel:
    """An onnxruntime session with its input name, (H, W) input size, static batch (None = dynamic) and
    the providers it really runs on."""

    session: Any
    path: str
    input_name: str
    input_hw: tuple[int, int]
    batch: int | None
    providers: list[str]

    @classmethod
    def open(cls, path: str, providers: Sequence[str], role: str) -> "OnnxModel":
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's CUDA fallback noise; we log our own summary below
        try:
            session = ort.InferenceSession(path, sess_options=options, providers=list(providers))
        except Exception as err:  # ORT raises its own exception types; name the file and the role
            raise RuntimeError(f"Could not open the DWPose {role} model '{path}': {err}") from err
        first = session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]):
            raise ValueError(f"'{path}' is not a DWPose {role} model: its input '{first.name}' has shape {shape}, "
                             "expected [batch, 3, height, width] with a fixed height and width")
        if first.type != "tensor(float)":
            raise ValueError(f"'{path}': input '{first.name}' is {first.type}; only float32 models are supported")
        batch = shape[0] if isinstance(shape[0], int) else None
        return cls(session, path, first.name, (shape[2], shape[3]), batch, list(session.get_providers()))

    def run(self, batch: np.ndarray, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Outputs by name when the model has them all (e.g. simcc_x, simcc_y), else in graph order."""
        names = {o.name for o in self.session.get_outputs()}
        wanted = list(outputs) if outputs and set(outputs) <= names else None
        return self.session.run(wanted, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})


@dataclass
class DWPose:
    """A detector + pose model pair. `detector` may be None: then every frame is one whole-image box."""

    pose: OnnxModel
    detector: OnnxModel | None = None
    detector_channels: str = "BGR"
    log_lines: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------------------------- detection
    def detect_boxes(self, image_rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) -> (N,4) float32 person boxes x1y1x2y2 in image pixels, best first."""
        if self.detector is None:
            return np.zeros((0, 4), dtype=np.float32)
        height, width = self.detector.input_hw
        image = image_rgb[..., ::-1] if self.detector_channels == "BGR" else image_rgb
        canvas, ratio = letterbox(image, height, width, LETTERBOX_FILL)
        output = self.detector.run(canvas.transpose(2, 0, 1)[None].astype(np.float32))[0]
        boxes, scores = decode_boxes(output[0], (height, width), ratio)
        return select_person_boxes(boxes, scores)[0]

    # ---------------------------------------------------------------------------------- keypoints
    def keypoints(self, image_rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N,4) -> COCO-WholeBody keypoints (N,133,2) in image pixels and scores (N,133)."""
        input_h, input_w = self.pose.input_hw
        if len(boxes) == 0:
            return np.zeros((0, 133, 2)), np.zeros((0, 133), dtype=np.float32)
        crops = [crop_for_box(box, input_w, input_h) for box in boxes]
        inputs = np.stack([crop_input(image_rgb, c, input_w, input_h) for c in crops])
        # A static batch-1 model (the published ONNX file) rejects stacked crops: loop one crop per call.
        step = len(inputs) if self.pose.batch is None else self.pose.batch
        xs, ys = [], []
        for start in range(0, len(inputs), step):
            chunk = inputs[start:start + step]
            count = len(chunk)
            if self.pose.batch is not None and count < step:  # fixed batch > 1: pad with zeros, drop after
                chunk = np.concatenate([chunk, np.zeros((step - count, *chunk.shape[1:]), np.float32)])
            simcc_x, simcc_y = self.pose.run(chunk, ("simcc_x", "simcc_y"))[:2]
            xs.append(simcc_x[:count])
            ys.append(simcc_y[:count])
        locs, scores = decode_simcc(np.concatenate(xs), np.concatenate(ys))
        points = np.stack([to_image(l, c, input_w, input_h) for l, c in zip(locs, crops)])
        return points, scores

    def __call__(self, image_rgb: np.ndarray, no_person: str = "empty") -> PoseFrame:
        """One uint8 RGB (H,W,3) image -> `PoseFrame` (pixels of that image)."""
        if no_person not in NO_PERSON_MODES:
            raise ValueError(f"no_person must be one of {NO_PERSON_MODES}, got {no_person!r}")
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8 or 0 in image_rgb.shape:
            raise ValueError(f"DWPose expects a uint8 RGB image (H,W,3), got {image_rgb.dtype} {image_rgb.shape}")
        height, width = image_rgb.shape[:2]
        boxes = self.detect_boxes(image_rgb)
        if len(boxes) == 0:
            if self.detector is not None and no_person == "error":
                raise NoPersonError("No person was detected. Use a clearer photo, or set 'no person' to "
                                    "'empty' (empty pose) or 'whole image' (treat the whole image as one person).")
            if self.detector is not None and no_person == "empty":
                return PoseFrame(width, height, [])
            boxes = np.array([[0, 0, width, height]], dtype=np.float32)
        points, scores = self.keypoints(image_rgb, boxes)
        return PoseFrame(width, height, people_from_wholebody(points, scores))

    def run_batch(self, images_rgb: Sequence[np.ndarray], no_person: str = "empty",
                  progress: Callable[[int, int], None] | None = None) -> list[PoseFrame]:
        """Frames one by one; `progress(i, n)` after each (it may raise to interrupt between frames)."""
        frames = []
        for i, image in enumerate(images_rgb):
            try:
                frames.append(self(image, no_person))
            except NoPersonError as err:
                raise NoPersonError(f"frame {i}: {err}") from err
            if progress is not None:
                progress(i + 1, len(images_rgb))
        return frames


def load_dwpose(pose_path: str, detector_path: str | None = None, provider: str = "auto",
                detector_channels: str = "BGR") -> DWPose:
    """Open the two ONNX files; log (and keep in `log_lines`) which providers each session really uses."""
    if detector_channels not in CHANNEL_ORDERS:
        raise ValueError(f"detector_channels must be one of {CHANNEL_ORDERS}, got {detector_channels!r}")
    ort = _onnxruntime()
    wanted = _providers(provider, ort.get_available_providers())
    pose = OnnxModel.open(pose_path, wanted, "pose")
    detector = OnnxModel.open(detector_path, wanted, "detector") if detector_path else None
    model = DWPose(pose, detector, detector_channels)
    for name, m in (("pose", pose), ("detector", detector)):
        if m is None:
            continue
        line = f"DWPose {name} model {m.path}: input {m.input_hw[0]}x{m.input_hw[1]}, " \
               f"batch {m.batch or 'dynamic'}, running on {', '.join(m.providers)}"
        if wanted[0] != "CPUExecutionProvider" and m.providers[0] == "CPUExecutionProvider":
            line += f" (asked for {wanted[0]}, which failed to start: check the CUDA/cuDNN libraries)"
        log.info(line)
        model.log_lines.append(line)
    return model
