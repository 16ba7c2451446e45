"""Our DWPose node path against comfyui_controlnet_aux's, side by side in one process on one thread.

Both sides get the same ONNX files and images: per frame, detect + keypoints + the controlnet_aux-style
drawing + POSE_KEYPOINT (the peer: `DwposeDetector.__call__(..., image_and_json=True)`, the work its DWPose
Estimator node does per frame; we: `DWPose.run_batch` + `render_controlnet_aux` + the POSE_KEYPOINT list and
its openpose_json string). Ours runs twice: with OpenCV's own kernels (`pose/native.py`; cv2 is installed
wherever the peer is) and with the numpy kernels alone (POSETRANSFER_OPENCV=0, as without cv2). Timings are
interleaved (ours, numpy, peer, ours, ...) and the medians printed, per frame at 512 and 1024 px and per frame
of a 16-frame batch, with ratios to the peer. It also checks that each gives the peer's POSE_KEYPOINT and
drawing.

No real weights exist here: the models are stand-ins with the real input/output names and shapes, built into
a temp folder. `--models planted` (default): outputs are planted constants (two people), so the figures are
the pre/post-processing and drawing cost of each side, which is what differs between the two (with the same
ONNX files both run the same onnxruntime graphs). `--models convs`: conv-stack stand-ins of a few GMAC
(bench/pose.py) for a model-dominated picture. The peer runs its onnxruntime path (on a CPU-only onnxruntime
it would switch to cv2.dnn; the bench hands it onnxruntime sessions, as on a GPU machine).

    python bench/pose_vs_controlnet_aux.py --peer PATH_TO_comfyui_controlnet_aux [--models planted|convs]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

PACK_ROOT = Path(__file__).resolve().parents[1]
FRAMES = 16


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pack():
    return _load(PACK_ROOT / "__main__.py", "posetransfer_bootstrap").load_pack()


def _stand_ins() -> None:
    """The peer's dwpose package imports matplotlib (hand colours via matplotlib.colors.hsv_to_rgb; pyplot in
    its unused OpenPose body code) and torchvision (unused by the DWPose path). When they are missing, provide
    hsv_to_rgb with matplotlib's float steps (so the peer's drawing is unchanged) and empty modules."""
    missing = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        def hsv_to_rgb(hsv):
            h, s, v = (float(c) for c in np.asarray(hsv, dtype=np.float64).ravel()[:3])
            i = int(h * 6.0)
            f = h * 6.0 - i
            p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
            return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6])

        package = types.ModuleType("matplotlib")
        package.__path__ = []
        package.colors = types.ModuleType("matplotlib.colors")
        package.colors.hsv_to_rgb = hsv_to_rgb
        package.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules.update({"matplotlib": package, "matplotlib.colors": package.colors,
                            "matplotlib.pyplot": package.pyplot})
        missing.append("matplotlib")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        package = types.ModuleType("torchvision")
        package.__path__ = []
        package.transforms = types.ModuleType("torchvision.transforms")
        package.transforms.ToTensor = package.transforms.ToPILImage = object
        sys.modules.update({"torchvision": package, "torchvision.transforms": package.transforms})
        missing.append("torchvision")
    if missing:
        print(f"note: {', '.join(missing)} not installed: stand-ins for the peer's imports (hsv_to_rgb with "
              "matplotlib's arithmetic; nothing else of them is used by its DWPose path)")


def _models(folder: Path, kind: str) -> tuple[str, str]:
    """(pose, detector) ONNX paths named as the peer expects (it reads input sizes from file names)."""
    if kind == "convs":
        standins = _load(PACK_ROOT / "bench" / "pose.py", "bench_pose")
        rng = np.random.default_rng(0)
        return (standins.pose_standin(folder / "dw-ll_ucoco_384.onnx", rng, "batch"),
                standins.detector_standin(folder / "yolox_l.onnx", rng))
    planted = _load(PACK_ROOT / "tests" / "pose" / "planted_models.py", "planted_models")
    rows = np.zeros((8400, 85), np.float32)
    planted.plant_box(rows, (250, 60, 400, 560), 0.9, level=2)  # letterboxed 640 px: two people
    planted.plant_box(rows, (40, 100, 200, 540), 0.7, level=1)
    _, _, simcc_x, simcc_y = planted.planted_keypoints()
    return (planted.pose_model(folder / "dw-ll_ucoco_384.onnx", simcc_x, simcc_y, batch="batch"),
            planted.detector_model(folder / "yolox_l.onnx", rows, batch="batch"))


def _peer(peer_root: Path, pose_path: str, detector_path: str, session):
    sys.path.insert(0, str(peer_root / "src"))
    _stand_ins()
    from custom_controlnet_aux.dwpose import DwposeDetector
    from custom_controlnet_aux.dwpose.wholebody import Wholebody

    body = Wholebody.__new__(Wholebody)  # its __init__ would pick cv2.dnn on a CPU-only onnxruntime
    body.det_filename, body.pose_filename = os.path.basename(detector_path), os.path.basename(pose_path)
    body.det, body.pose = session(detector_path), session(pose_path)
    body.det_model_type = body.pose_model_type = "ort"
    body.pose_input_size = (288, 384)
    return DwposeDetector(body)


def _median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, type=Path, help="a checkout of Fannovel16/comfyui_controlnet_aux")
    parser.add_argument("--models", choices=("planted", "convs"), default="planted")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per side and setting (median)")
    args = parser.parse_args()
    if not (args.peer / "src" / "custom_controlnet_aux" / "dwpose" / "__init__.py").is_file():
        parser.error(f"{args.peer} is not a comfyui_controlnet_aux checkout (no src/custom_controlnet_aux/dwpose)")

    import cv2
    import onnxruntime as ort
    import torch

    import warnings

    warnings.filterwarnings("ignore", module="custom_controlnet_aux")
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _pack()
    from posetransfer.pose import dwpose as ours_dwpose
    from posetransfer.pose import native
    from posetransfer.pose.formats import openpose_json, pose_keypoint_from_frames
    from posetransfer.pose.render import render_controlnet_aux

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    with tempfile.TemporaryDirectory() as tmp:
        pose_path, detector_path = _models(Path(tmp), args.models)
        ours = ours_dwpose.load_dwpose(pose_path, detector_path, "CPU", detector_channels="RGB")  # as the peer
        for model in (ours.pose, ours.detector):
            model.session = session(model.path)
        peer = _peer(args.peer, pose_path, detector_path, session)

        def run_ours(images, opencv=True):
            native.use_opencv(opencv)
            frames = ours.run_batch(images)
            for frame in frames:  # the Extract node drops feet in the controlnet_aux schema, as the peer
                for person in frame.people:
                    person.feet = None
            value = pose_keypoint_from_frames(frames)
            openpose_json(value)
            return value, [render_controlnet_aux(f, f.height, f.width) for f in frames]

        def run_numpy(images):
            return run_ours(images, opencv=False)

        def run_peer(images):
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its timings per frame
                results = [peer(image, detect_resolution=min(image.shape[:2]), include_hand=True, include_face=True,
                                include_body=True, image_and_json=True, output_type="np") for image in images]
            value = [r[1] for r in results]
            json.dumps(value, indent=4)
            return value, [r[0] for r in results]

        print(f"models: {args.models} stand-ins (no real weights); one thread each; medians of {args.repeat} "
              "interleaved runs; ms per frame. ours: with OpenCV's own kernels (cv2 installed, as here); numpy: "
              "ours with POSETRANSFER_OPENCV=0 (no cv2)")
        print(f"{'size':>5} {'frames':>6} | {'ours':>8} {'numpy':>8} {'peer':>8} | {'ours/peer':>9} {'numpy/peer':>10} | "
              "same POSE_KEYPOINT, same image (ours, numpy)")
        rng = np.random.default_rng(0)
        for size in (512, 1024):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            for count in (1, FRAMES):
                images = [image] * count
                sides = {"ours": run_ours, "numpy": run_numpy, "peer": run_peer}
                outputs = {name: fn(images) for name, fn in sides.items()}  # warm-up, and the outputs to compare
                peer_value, peer_images = outputs["peer"]
                same = []
                for name in ("ours", "numpy"):
                    value, rendered = outputs[name]
                    same.append("yes" if json.dumps(value) == json.dumps(peer_value) else "NO")
                    same.append("yes" if all(np.array_equal(a, b) for a, b in zip(rendered, peer_images)) else "NO")
                times = {name: [] for name in sides}
                for _ in range(args.repeat):
                    for name, fn in sides.items():
                        start = time.perf_counter()
                        fn(images)
                        times[name].append((time.perf_counter() - start) / count)
                t_ours, t_numpy, t_peer = (_median_ms(times[name]) for name in sides)
                print(f"{size:>5} {count:>6} | {t_ours:8.2f} {t_numpy:8.2f} {t_peer:8.2f} | {t_ours / t_peer:8.2f}x "
                      f"{t_numpy / t_peer:9.2f}x | {same[0]}, {same[1]} ({same[2]}, {same[3]})")


if __name__ == "__main__":
    main()
