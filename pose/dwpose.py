"""DWPose whole-body estimation over onnxruntime: YOLOX-L person boxes + DWPose/RTMPose 133 keypoints.

Sessions are created by `load_dwpose` (the ComfyUI loader node keeps the returned object in its output
cache). Input names, sizes and batch support are read from the sessions, never from file names, and the
execution providers are reported from `session.get_providers()` because onnxruntime-gpu silently falls back
to CPU when CUDA libraries are missing.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import PoseTransferError
from . import native
from .detector import anchor_grid, decode_boxes, person_rows, select_person_boxes, within_margin
from .imageops import letterbox
from .keypoints import PoseFrame, people_from_wholebody
from .topdown import SIMCC_SPLIT_RATIO, Crop, crop_for_box, crop_input, decode_simcc, to_image_many

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "CPU", "CUDA", "DirectML", "ROCm", "OpenVINO", "CoreML", "TensorRT")
CHANNEL_ORDERS = ("BGR", "RGB")  # YOLOX was trained on OpenCV (BGR) images; comfyui_controlnet_aux feeds RGB
NO_PERSON_MODES = ("empty", "whole image", "error")
LETTERBOX_FILL = 114
MAX_PEOPLE = 64  # per frame: the best-scoring boxes are kept (junk detections can number thousands)
FRAMES_PER_CHUNK = 16  # frames detected together (dynamic-batch detectors) and cropped into one pose call
MAX_CROPS_PER_CALL = 64  # crops per pose-model call (each 384x288 crop is 1.3 MB of float32)
WHOLEBODY_POINTS = 133
COCO_CLASSES = 80


class NoPersonError(PoseTransferError):
    """No person was detected in a frame and the caller asked for an error."""


class ModelSlotError(PoseTransferError):
    """An ONNX file cannot serve in its slot (detector / pose model): onnxruntime cannot open it, or it is not the
    kind of model the slot needs, or its outputs at run time do not have the shapes it declares; the message names it."""


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # keep the pack importable; say exactly what to install
        raise ImportError("DWPose needs the 'onnxruntime' package (or 'onnxruntime-gpu' for CUDA; never both): "
                          "pip install onnxruntime") from err
    return onnxruntime


PROVIDER_NAMES = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "DirectML": "DmlExecutionProvider",
                  "ROCm": "ROCMExecutionProvider", "OpenVINO": "OpenVINOExecutionProvider",
                  "CoreML": "CoreMLExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _providers(choice: str, available: Sequence[str]) -> list[str]:
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {PROVIDER_CHOICES}, got {choice!r}")
    if choice == "auto":
        # Accelerated providers first; TensorRT is left out of "auto" because building engines takes minutes.
        order = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                 "CoreMLExecutionProvider", "OpenVINOExecutionProvider")
        return [p for p in order if p in available] + ["CPUExecutionProvider"]
    name = PROVIDER_NAMES[choice]
    if name not in available:
        reason = cuda_diagnosis(available) if name in GPU_PROVIDERS else ""
        raise RuntimeError(f"onnxruntime provider {name} is not available here (available: {', '.join(available)})."
                           f"{' ' + reason if reason else ''} Choose 'auto' or 'CPU', or install the onnxruntime "
                           "build for your GPU.")
    if name == "TensorrtExecutionProvider":  # TensorRT falls back to CUDA for nodes it cannot take
        return [name] + [p for p in ("CUDAExecutionProvider",) if p in available] + ["CPUExecutionProvider"]
    return [name, "CPUExecutionProvider"] if name != "CPUExecutionProvider" else [name]


# ---------------------------------------------------------------------------------- CUDA diagnosis
def _installed_distributions() -> set[str]:
    names = set()
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name.startswith("onnxruntime"):
            names.add(name)
    return names


def _cuda_libraries() -> tuple[str, ...]:
    """The shared libraries onnxruntime-gpu's CUDA provider loads first (CUDA 12 or 13, cuDNN 9)."""
    if sys.platform == "win32":
        return ("cudart64_12.dll|cudart64_13.dll", "cublasLt64_12.dll|cublasLt64_13.dll", "cudnn64_9.dll")
    return ("libcudart.so.12|libcudart.so.13", "libcublasLt.so.12|libcublasLt.so.13", "libcudnn.so.9")


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def cuda_diagnosis(available: Sequence[str], distributions: set[str] | None = None,
                   loadable: Callable[[str], bool] | None = None) -> str:
    """Why onnxruntime cannot run on CUDA here, in one sentence with the fix ('' when nothing is found).

    The three causes users meet: the CPU-only wheel, both wheels installed (the CPU one shadows the GPU
    build), and the GPU wheel without the CUDA/cuDNN libraries it loads (it then runs on the CPU silently)."""
    distributions = _installed_distributions() if distributions is None else distributions
    loadable = loadable or _loadable
    if "onnxruntime" in distributions and "onnxruntime-gpu" in distributions:
        return ("Both 'onnxruntime' (CPU) and 'onnxruntime-gpu' are installed and the CPU one shadows the GPU "
                "build: pip uninstall -y onnxruntime onnxruntime-gpu, then pip install onnxruntime-gpu.")
    if "CUDAExecutionProvider" not in available:
        return ("This onnxruntime is the CPU-only build: pip uninstall -y onnxruntime, then pip install "
                "onnxruntime-gpu.")
    missing = [alternatives.split("|")[0] for alternatives in _cuda_libraries()
               if not any(loadable(name) for name in alternatives.split("|"))]
    if missing:
        return (f"onnxruntime-gpu is installed but cannot load {', '.join(missing)}: install the CUDA and cuDNN "
                "versions your onnxruntime-gpu was built for (pip install 'onnxruntime-gpu[cuda,cudnn]' brings "
                "them), or put their folder on the library path.")
    return ("onnxruntime-gpu could not start CUDA although its libraries load: check that the GPU driver is newer "
            "than the CUDA version onnxruntime-gpu was built for (nvidia-smi).")


# ---------------------------------------------------------------------------------- sessions
@dataclass
class OnnxModel:
    """An onnxruntime session with its input name, (H, W) input size, static batch (None = dynamic), output
    names and shapes, and the providers it really runs on."""

    session: Any
    path: str
    input_name: str
    input_hw: tuple[int, int]
    batch: int | None
    providers: list[str]
    output_names: list[str] = field(default_factory=list)
    output_shapes: list[list] = field(default_factory=list)
    io_binding: bool = False

    @classmethod
    def open(cls, path: str, providers: Sequence[str], role: str) -> "OnnxModel":
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ORT's CUDA fallback noise; we log our own summary below
        provider_list: list = list(providers)
        if "TensorrtExecutionProvider" in provider_list:  # cache engines: building one takes minutes
            cache = os.path.join(os.path.dirname(os.path.abspath(path)), ".trt_cache")
            provider_list[provider_list.index("TensorrtExecutionProvider")] = (
                "TensorrtExecutionProvider", {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache})
        if not os.path.isfile(path):
            raise ModelSlotError(f"DWPose {role} model not found: '{path}'. Choose a file from the model list.")
        try:
            session = ort.InferenceSession(path, sess_options=options, providers=provider_list)
        except Exception as err:  # ORT raises its own exception types; name the file and the role
            reason = (str(err).strip().splitlines() or ["no details"])[0][:300]
            raise ModelSlotError(f"Could not open the DWPose {role} model '{path}' ({type(err).__name__}: {reason}). "
                                 "It may be truncated or not an ONNX file: download it again (yolox_l.onnx and "
                                 "dw-ll_ucoco_384.onnx from Hugging Face yzd-v/DWPose).") from err
        first = session.get_inputs()[0]
        shape = list(first.shape)
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]) or shape[1] != 3:
            raise ModelSlotError(f"'{path}' is not a DWPose {role} model: its input '{first.name}' has shape {shape}, "
                                 "expected [batch, 3, height, width] with a fixed height and width")
        if first.type != "tensor(float)":
            raise ModelSlotError(f"'{path}': input '{first.name}' is {first.type}; only float32 models are supported")
        batch = shape[0] if isinstance(shape[0], int) else None
        used = list(session.get_providers())
        outputs = session.get_outputs()
        return cls(session, path, first.name, (shape[2], shape[3]), batch, used, [o.name for o in outputs],
                   [list(o.shape) for o in outputs], io_binding=used[0] in GPU_PROVIDERS)

    def run(self, batch: np.ndarray, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Outputs by name when the model has them all (e.g. simcc_x, simcc_y), else in graph order."""
        wanted = list(outputs) if outputs and set(outputs) <= set(self.output_names) else list(self.output_names)
        feed = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.io_binding:
            return self.session.run(wanted, {self.input_name: feed})
        # On CUDA/TensorRT, IO binding copies the input once and lets onnxruntime allocate the outputs on the
        # device side of the copy, instead of the extra staging copies of session.run.
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, feed)
        for name in wanted:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    # ------------------------------------------------------------------------- what the file is
    def kind(self) -> str:
        """'detector' (one [N, anchors, 5+classes] output), 'pose' (two [N, 133, bins] SimCC outputs) or
        'unknown', read from the graph's outputs."""
        shapes = self.output_shapes
        if len(shapes) >= 2 and all(len(s) == 3 and s[1] == WHOLEBODY_POINTS for s in shapes[:2]):
            return "pose"
        if len(shapes) == 1 and len(shapes[0]) == 3 and isinstance(shapes[0][2], int) and shapes[0][2] >= 5:
            return "detector"
        return "unknown"

    def describe_outputs(self) -> str:
        return ", ".join(f"{n} {s}" for n, s in zip(self.output_names, self.output_shapes)) or "none"


def _check_detector(model: OnnxModel) -> None:
    height, width = model.input_hw
    shape = model.output_shapes[0]
    if height % 32 or width % 32:
        raise ModelSlotError(f"detector '{model.path}': input {height}x{width} is not a multiple of 32, as YOLOX "
                             "inputs are (640x640 for yolox_l.onnx)")
    columns = shape[2]
    if columns != 5 + COCO_CLASSES:
        raise ModelSlotError(f"detector '{model.path}': its output has {columns} columns; a COCO YOLOX detector has "
                             f"{5 + COCO_CLASSES} (4 box + objectness + {COCO_CLASSES} class scores, person first). "
                             "Use yolox_l.onnx from Hugging Face yzd-v/DWPose.")
    if model.batch not in (None, 1):
        raise ModelSlotError(f"detector '{model.path}' takes a fixed batch of {model.batch} images; DWPose feeds a "
                             "detector one image at a time or a dynamic batch. Use yolox_l.onnx from Hugging Face "
                             "yzd-v/DWPose, or export with batch 1 or a dynamic batch.")
    anchors = len(anchor_grid(height, width)[0])
    if isinstance(shape[1], int) and shape[1] != anchors:
        raise ModelSlotError(f"detector '{model.path}': its output has {shape[1]} anchors; a {height}x{width} YOLOX "
                             f"input has {anchors} (strides 8/16/32). Use yolox_l.onnx from Hugging Face yzd-v/DWPose.")


def _check_pose(model: OnnxModel) -> None:
    height, width = model.input_hw
    named = dict(zip(model.output_names, model.output_shapes))
    simcc_x = named.get("simcc_x", model.output_shapes[0])
    simcc_y = named.get("simcc_y", model.output_shapes[1])
    expected = (round(width * SIMCC_SPLIT_RATIO), round(height * SIMCC_SPLIT_RATIO))
    if all(isinstance(v, int) for v in (simcc_x[2], simcc_y[2])) and (simcc_x[2], simcc_y[2]) != expected:
        raise ModelSlotError(f"pose model '{model.path}': SimCC outputs have {simcc_x[2]} x-bins and {simcc_y[2]} "
                             f"y-bins, but a {height}x{width} input needs {expected[0]} and {expected[1]} "
                             f"({SIMCC_SPLIT_RATIO:g} per pixel): the file's outputs do not match its input. "
                             "Use dw-ll_ucoco_384.onnx from Hugging Face yzd-v/DWPose.")


def check_output(model: OnnxModel, role: str, output: np.ndarray, expected: tuple[int, ...]) -> None:
    """Graphs may leave sizes unnamed, or declare shapes their run does not give: check what a run returned."""
    if output.shape != expected:
        raise ModelSlotError(f"{role} '{model.path}' returned an output of shape {list(output.shape)}, but its "
                             f"{model.input_hw[0]}x{model.input_hw[1]} input needs {list(expected)}: the file's "
                             "outputs do not match its input. Use the files from Hugging Face yzd-v/DWPose.")


def check_slots(pose: OnnxModel, detector: OnnxModel | None) -> None:
    """Refuse files in the wrong slot at load time, naming the file(s) and what they look like."""
    pose_kind = pose.kind()
    det_kind = detector.kind() if detector is not None else None
    if pose_kind == "detector" and det_kind == "pose":
        raise ModelSlotError(f"The DWPose files are swapped: '{pose.path}' is a person detector (output "
                             f"{pose.describe_outputs()}) and '{detector.path}' is a pose model (outputs "
                             f"{detector.describe_outputs()}). Put '{detector.path}' in pose_model and "
                             f"'{pose.path}' in detector.")
    if pose_kind != "pose":
        looks = "a person detector" if pose_kind == "detector" else "neither a DWPose pose model nor a detector"
        raise ModelSlotError(f"pose model '{pose.path}' is {looks} (outputs {pose.describe_outputs()}); the pose "
                             f"model has two SimCC outputs [batch, {WHOLEBODY_POINTS}, bins] (simcc_x, simcc_y). "
                             "Choose dw-ll_ucoco_384.onnx as pose_model.")
    _check_pose(pose)
    if detector is None:
        return
    if det_kind != "detector":
        looks = "a DWPose pose model" if det_kind == "pose" else "not a YOLOX detector"
        raise ModelSlotError(f"detector '{detector.path}' is {looks} (outputs {detector.describe_outputs()}); the "
                             "detector has one output [batch, anchors, 85]. Choose yolox_l.onnx as detector.")
    _check_detector(detector)


# ---------------------------------------------------------------------------------- the pipeline
@dataclass
class DWPose:
    """A detector + pose model pair. `detector` may be None: then every frame is one whole-image box."""

    pose: OnnxModel
    detector: OnnxModel | None = None
    detector_channels: str = "BGR"
    log_lines: list[str] = field(default_factory=list)
    max_people: int = MAX_PEOPLE
    _buffers: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _buffers_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape` for model inputs, the memory of the last one of that name when it is large
        enough (callers hold `_buffers_lock`). A 16-frame detector batch is 80 MB: allocated afresh for every
        chunk, it comes from the system as new pages, whose faults cost ~10 % of a frame's pre/post-processing."""
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size, np.float32)
        return buffer[:size].reshape(shape)

    # ---------------------------------------------------------------------------------- detection
    def _detector_input(self, image_rgb: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """The letterboxed frame as float32 (3,H,W) in the detector's channel order (into `out`, a slot of the
        batch, when given) and the letterbox ratio."""
        height, width = self.detector.input_hw
        # The resize treats channels alike and the fill is grey, so BGR is flipped after it, within the float
        # conversion (flipping the input first would make the resize copy a reversed view: ~10 ms at 1024 px).
        canvas, ratio = letterbox(image_rgb, height, width, LETTERBOX_FILL)
        planes = canvas.transpose(2, 0, 1)
        if self.detector_channels == "BGR":
            planes = planes[::-1]
        out = np.empty((3, height, width), np.float32) if out is None else out
        np.copyto(out, planes)  # one pass
        return out, ratio

    def _boxes_from_output(self, raw: np.ndarray, ratio: float, image_hw: tuple[int, int]) -> np.ndarray:
        boxes, scores = decode_boxes(raw, self.detector.input_hw, ratio, person_rows(raw))
        boxes, _ = select_person_boxes(boxes, scores, image_hw, limit=self.max_people + 1)  # one more: over the cap?
        if len(boxes) > self.max_people:
            log.warning("DWPose: more than %d people detected in one frame; keeping the %d best (limit max_people "
                        "= %d)", self.max_people, self.max_people, self.max_people)
            boxes = boxes[:self.max_people]
        return boxes

    def detect_boxes_many(self, images_rgb: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 RGB frames -> per frame (N,4) float32 person boxes x1y1x2y2 in image pixels, best first.
        A dynamic-batch detector gets all frames in one call; the published batch-1 file gets them one by one, each
        prepared just before its call (on an H200, preparing all 16 of a chunk first measured slower a frame)."""
        if self.detector is None:
            return [np.zeros((0, 4), dtype=np.float32) for _ in images_rgb]
        height, width = self.detector.input_hw
        step = len(images_rgb) if self.detector.batch is None else 1  # a fixed batch over 1 is refused at load
        ratios, raws = [], []
        with self._buffers_lock:
            for start in range(0, len(images_rgb), step):
                part = images_rgb[start:start + step]
                batch = self._buffer("detector", (len(part), 3, height, width))
                ratios += [self._detector_input(image, out=batch[i])[1] for i, image in enumerate(part)]
                raws.append(self.detector.run(batch)[0])
        raws = raws[0] if len(raws) == 1 else np.concatenate(raws)  # one call's output needs no copy (45 MB for 16)
        check_output(self.detector, "detector", raws, (len(images_rgb), len(anchor_grid(height, width)[0]),
                                                       5 + COCO_CLASSES))
        if not np.isfinite(raws[..., :6]).all():  # the box, objectness and person columns: all that is read
            _warn_not_finite(self.detector, "detector", "the detections holding them are ignored")
        return [self._boxes_from_output(raw, ratio, image.shape[:2])
                for raw, ratio, image in zip(raws, ratios, images_rgb)]

    def detect_boxes(self, image_rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) -> (N,4) float32 person boxes x1y1x2y2 in image pixels, best first."""
        return self.detect_boxes_many([image_rgb])[0]

    # ---------------------------------------------------------------------------------- keypoints
    def _simcc(self, images_rgb: Sequence[np.ndarray], crops: list[Crop], owners: list[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Crops of the frames (`owners[i]` = the frame of crop i) -> SimCC vectors, in calls the model accepts:
        as many crops as allowed per call for a dynamic batch, one by one for the published batch-1 file,
        zero-padded for a fixed batch > 1. Each call's inputs are prepared just before it, so memory holds
        one call's crops however many people a chunk of frames has."""
        input_h, input_w = self.pose.input_hw
        step = min(MAX_CROPS_PER_CALL, len(crops)) if self.pose.batch is None else self.pose.batch
        xs, ys = [], []
        for start in range(0, len(crops), step):
            count = min(step, len(crops) - start)
            with self._buffers_lock:
                chunk = self._buffer("crops", (step if self.pose.batch is not None else count, 3, input_h, input_w))
                chunk[count:] = 0  # a fixed batch > 1 is padded with zeros (dropped after)
                for slot, (frame, crop) in enumerate(zip(owners[start:start + count], crops[start:start + count])):
                    crop_input(images_rgb[frame], crop, input_w, input_h, out=chunk[slot])
                simcc_x, simcc_y = self.pose.run(chunk, ("simcc_x", "simcc_y"))[:2]
            for output, side in ((simcc_x, self.pose.input_hw[1]), (simcc_y, self.pose.input_hw[0])):
                check_output(self.pose, "pose model", output,
                             (len(chunk), WHOLEBODY_POINTS, round(side * SIMCC_SPLIT_RATIO)))
            xs.append(simcc_x[:count])
            ys.append(simcc_y[:count])
        return np.concatenate(xs), np.concatenate(ys)

    def keypoints_many(self, images_rgb: Sequence[np.ndarray], boxes: Sequence[np.ndarray]
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame, its boxes (N,4) -> COCO-WholeBody keypoints (N,133,2) in image pixels and scores (N,133);
        the crops of all frames go through the pose model together."""
        input_h, input_w = self.pose.input_hw
        crops, owners = [], []
        for frame, frame_boxes in enumerate(boxes):
            crops += [crop_for_box(box, input_w, input_h) for box in frame_boxes]
            owners += [frame] * len(frame_boxes)
        if not crops:
            return [(np.zeros((0, WHOLEBODY_POINTS, 2)), np.zeros((0, WHOLEBODY_POINTS), dtype=np.float32))
                    for _ in images_rgb]
        locs, scores = decode_simcc(*self._simcc(images_rgb, crops, owners))
        broken = ~np.isfinite(scores)
        if broken.any():
            _warn_not_finite(self.pose, "pose model", f"{int(broken.sum())} keypoints holding them count as not detected")
            scores[broken] = 0.0
        points = to_image_many(locs, crops, input_w, input_h)
        owners = np.asarray(owners)
        results = []
        for frame, image in enumerate(images_rgb):
            frame_points, frame_scores = points[owners == frame], scores[owners == frame]
            # A keypoint placed beyond the margin junk boxes are clipped to is no body part (and the pack's own
            # POSE_KEYPOINT reader would refuse it): not detected.
            frame_scores[~within_margin(frame_points, image.shape[:2])] = 0.0
            results.append((frame_points, frame_scores))
        return results

    def keypoints(self, image_rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N,4) -> COCO-WholeBody keypoints (N,133,2) in image pixels and scores (N,133)."""
        return self.keypoints_many([image_rgb], [boxes])[0]

    # ---------------------------------------------------------------------------------- frames
    @staticmethod
    def _check_image(image_rgb: np.ndarray, where: str) -> None:
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8 or 0 in image_rgb.shape:
            raise ValueError(f"DWPose expects a uint8 RGB image (H,W,3), got {image_rgb.dtype} {image_rgb.shape}"
                             f"{where}")

    def __call__(self, image_rgb: np.ndarray, no_person: str = "empty") -> PoseFrame:
        """One uint8 RGB (H,W,3) image -> `PoseFrame` (pixels of that image)."""
        try:
            return self.run_batch([image_rgb], no_person)[0]
        except NoPersonError as err:
            raise NoPersonError(str(err).removeprefix("frame 0: ")) from err

    def run_batch(self, images_rgb: Sequence[np.ndarray], no_person: str = "empty",
                  progress: Callable[[int, int], None] | None = None,
                  frames_per_chunk: int = FRAMES_PER_CHUNK) -> list[PoseFrame]:
        """Frames in chunks (detector batched where it allows, all crops of a chunk in one pose call); results
        are those of frame-by-frame runs. `progress(i, n)` for each frame once its chunk is done (it may raise
        to interrupt)."""
        if no_person not in NO_PERSON_MODES:
            raise ValueError(f"no_person must be one of {NO_PERSON_MODES}, got {no_person!r}")
        for i, image in enumerate(images_rgb):
            self._check_image(image, f" (frame {i})" if len(images_rgb) > 1 else "")
        frames: list[PoseFrame] = []
        total = len(images_rgb)
        for start in range(0, total, max(1, frames_per_chunk)):
            chunk = list(images_rgb[start:start + max(1, frames_per_chunk)])
            boxes = self.detect_boxes_many(chunk)
            empty = []
            for i, (image, frame_boxes) in enumerate(zip(chunk, boxes)):
                if len(frame_boxes):
                    continue
                if self.detector is not None and no_person == "error":
                    raise NoPersonError(f"frame {start + i}: No person was detected. Use a clearer photo, or set "
                                        "'no person' to 'empty' (empty pose) or 'whole image' (treat the whole "
                                        "image as one person).")
                if self.detector is not None and no_person == "empty":
                    empty.append(i)
                else:
                    height, width = image.shape[:2]
                    boxes[i] = np.array([[0, 0, width, height]], dtype=np.float32)
            results = self.keypoints_many(chunk, boxes)
            for i, (image, (points, scores)) in enumerate(zip(chunk, results)):
                height, width = image.shape[:2]
                people = [] if i in empty else people_from_wholebody(points, scores)
                frames.append(PoseFrame(width, height, people))
            if progress is not None:  # frame by frame, so the bar counts frames (Cancel acts between chunks)
                for done in range(len(frames) - len(chunk) + 1, len(frames) + 1):
                    progress(done, total)
        return frames


def _warn_not_finite(model: OnnxModel, role: str, consequence: str) -> None:
    log.warning("DWPose %s '%s' returned NaN or infinite values; %s (a damaged file, or float16 overflow on %s)",
                role, model.path, consequence, model.providers[0] if model.providers else "its provider")


def load_dwpose(pose_path: str, detector_path: str | None = None, provider: str = "auto",
                detector_channels: str = "BGR") -> DWPose:
    """Open the two ONNX files, refuse files in the wrong slot, and log (and keep in `log_lines`) which
    providers each session really uses and, when a GPU provider was asked for but not used, why."""
    if detector_channels not in CHANNEL_ORDERS:
        raise ValueError(f"detector_channels must be one of {CHANNEL_ORDERS}, got {detector_channels!r}")
    ort = _onnxruntime()
    available = list(ort.get_available_providers())
    wanted = _providers(provider, available)
    pose = OnnxModel.open(pose_path, wanted, "pose")
    detector = OnnxModel.open(detector_path, wanted, "detector") if detector_path else None
    check_slots(pose, detector)
    model = DWPose(pose, detector, detector_channels)
    for name, m in (("pose", pose), ("detector", detector)):
        if m is None:
            continue
        line = f"DWPose {name} model {m.path}: input {m.input_hw[0]}x{m.input_hw[1]}, " \
               f"batch {m.batch or 'dynamic'}, running on {', '.join(m.providers)}"
        if wanted[0] != "CPUExecutionProvider" and m.providers[0] == "CPUExecutionProvider":
            reason = cuda_diagnosis(available) if wanted[0] in GPU_PROVIDERS else "check its drivers and libraries."
            line += f" (asked for {wanted[0]}, which failed to start: {reason})"
        elif provider == "auto" and m.providers[0] == "CPUExecutionProvider" and _gpu_wheel_expected():
            line += f" (no GPU provider: {cuda_diagnosis(available)})"
        log.info(line)
        model.log_lines.append(line)
    line = f"DWPose resizing, crops and drawing: {native.kernels()}"
    log.info(line)
    model.log_lines.append(line)
    return model


def _gpu_wheel_expected() -> bool:
    """True when an onnxruntime-gpu distribution is installed (then running on the CPU needs explaining)."""
    return "onnxruntime-gpu" in _installed_distributions()
