"""Speed of the DWPose path on CPU: pre/post-processing per frame and the two ONNX models, at 512 and 1024 px,
for 1 and 16 frames. Prints figures; asserts nothing.

No real weights exist here, so the models are stand-ins generated with onnx.helper into a temp folder, with the
real input/output names and shapes: conv stacks of a few GMAC (the real YOLOX-L is ~155 GFLOPs at 640, DWPose-l
~10 GFLOPs), so the model figures only show the plumbing cost and scale; pre/post-processing figures are real.

    python bench/pose.py [--threads N] [--numpy] [--provider CUDA] [--pose-model F --detector F]

With `--provider CUDA` (or TensorRT) on a GPU machine it gives frames per second for 1 and 16 frames; with the
real files (`--pose-model dw-ll_ucoco_384.onnx --detector yolox_l.onnx`) those are the real models' figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACK_ROOT = Path(__file__).resolve().parents[1]


def _pack():
    spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", PACK_ROOT / "__main__.py")
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    return bootstrap.load_pack()


def _conv(nodes, inits, name, x, cin, cout, kernel, stride, rng, relu=True):
    weight = numpy_helper.from_array((rng.standard_normal((cout, cin, kernel, kernel)) * 0.05).astype(np.float32), f"{name}_w")
    inits.append(weight)
    pad = (kernel - 1) // 2 if stride == 1 else 0
    nodes.append(helper.make_node("Conv", [x, weight.name], [name], kernel_shape=[kernel, kernel], strides=[stride, stride],
                                  pads=[pad] * 4))
    if relu:
        nodes.append(helper.make_node("Relu", [name], [name + "_r"]))
        return name + "_r"
    return name


def _save(nodes, inputs, outputs, inits, path):
    model = helper.make_model(helper.make_graph(nodes, "standin", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def detector_standin(path, rng):
    """[1,3,640,640] -> stride-8 trunk of 3x3 convs -> 85-channel heads at strides 8/16/32 -> [1,8400,85]."""
    nodes, inits = [], []
    x = _conv(nodes, inits, "stem", "images", 3, 96, 8, 8, rng)
    for i in range(3):
        x = _conv(nodes, inits, f"trunk{i}", x, 96, 96, 3, 1, rng)
    heads = []
    for level, stride in enumerate((1, 2, 4)):
        h = _conv(nodes, inits, f"head{level}", x, 96, 85, stride, stride, rng, relu=False)
        nodes.append(helper.make_node("Reshape", [h, "flat"], [f"flat{level}"]))
        heads.append(f"flat{level}")
    # Random weights would score thousands of anchors as people; keep the box columns computed, silence the
    # scores, and plant one confident person (anchor of stride 32 at cell (10, 8), 192x448 px) as a real frame has.
    mask = np.zeros((1, 8400, 85), np.float32)
    mask[..., :4] = 1.0
    planted = np.zeros((1, 8400, 85), np.float32)
    planted[0, 8000 + 8 * 20 + 10, 2:6] = [np.log(6.0), np.log(14.0), 1.0, 0.9]
    inits += [numpy_helper.from_array(np.array([1, 85, -1], np.int64), "flat"),
              numpy_helper.from_array(mask, "mask"), numpy_helper.from_array(planted, "planted")]
    nodes += [helper.make_node("Concat", heads, ["cat"], axis=2),
              helper.make_node("Transpose", ["cat"], ["rows"], perm=[0, 2, 1]),
              helper.make_node("Sigmoid", ["rows"], ["squashed"]),
              helper.make_node("Mul", ["squashed", "mask"], ["boxes_only"]),
              helper.make_node("Add", ["boxes_only", "planted"], ["output"])]
    return _save(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
                 [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8400, 85])], inits, path)


def pose_standin(path, rng, batch):
    """[B,3,384,288] -> stride-32 conv stack to 133 channels (12x9) -> two MatMuls to 576 / 768 SimCC bins."""
    nodes, inits = [], []
    x = _conv(nodes, inits, "stem", "input", 3, 64, 4, 4, rng)
    x = _conv(nodes, inits, "c1", x, 64, 64, 3, 1, rng)
    x = _conv(nodes, inits, "down", x, 64, 256, 8, 8, rng)
    x = _conv(nodes, inits, "c2", x, 256, 256, 3, 1, rng)
    x = _conv(nodes, inits, "kp", x, 256, 133, 1, 1, rng, relu=False)
    inits += [numpy_helper.from_array(np.array([0, 133, 108], np.int64), "shape"),
              numpy_helper.from_array((rng.standard_normal((108, 576)) * 0.1).astype(np.float32), "wx"),
              numpy_helper.from_array((rng.standard_normal((108, 768)) * 0.1).astype(np.float32), "wy")]
    nodes += [helper.make_node("Reshape", [x, "shape"], ["tokens"]),
              helper.make_node("MatMul", ["tokens", "wx"], ["simcc_x"]),
              helper.make_node("MatMul", ["tokens", "wy"], ["simcc_y"])]
    return _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 384, 288])],
                 [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, 133, 576]),
                  helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, 133, 768])], inits, path)


def _ms(fn, repeat):
    """Median of `repeat` timed calls in ms (the median resists other processes on a shared machine)."""
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime and OpenCV threads (0 = their defaults); 1 measures the one-core target")
    parser.add_argument("--numpy", action="store_true",
                        help="the numpy kernels even where cv2 is installed (as POSETRANSFER_OPENCV=0)")
    parser.add_argument("--provider", default="CPU", help="onnxruntime provider as the Loader node names it "
                                                         "(CPU, CUDA, TensorRT, auto, ...)")
    parser.add_argument("--pose-model", help="a real DWPose pose model (.onnx) instead of the stand-in")
    parser.add_argument("--detector", help="a real YOLOX detector (.onnx) instead of the stand-in")
    args = parser.parse_args()
    _pack()
    from posetransfer.pose import detector as det
    from posetransfer.pose import dwpose, imageops, keypoints, native, topdown

    if args.numpy:
        native.use_opencv(False)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = dwpose.load_dwpose(args.pose_model or pose_standin(Path(tmp) / "pose.onnx", rng, 1),
                                   args.detector or detector_standin(Path(tmp) / "det.onnx", rng), args.provider)
        if args.threads and args.provider == "CPU":
            import onnxruntime as ort

            if native.opencv() is not None:
                native.opencv().setNumThreads(args.threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            for m in (model.pose, model.detector):
                m.session = ort.InferenceSession(m.path, sess_options=options, providers=["CPUExecutionProvider"])
        print(f"providers: pose {model.pose.providers}, detector {model.detector.providers}")
        print(f"columns: pre/post steps (resize, crops: {native.kernels()}); total/frame = DWPose end to end")
        print(f"{'size':>6} {'frames':>6} | {'letterbox':>9} {'det post':>8} {'crop':>6} {'pose post':>9} "
              f"{'pre+post':>8} | {'detector':>8} {'pose net':>8} | {'total/frame':>11} {'frames/s':>8}  (ms)")
        raw = model.detector.run(np.zeros((1, 3, 640, 640), np.float32))[0][0]
        simcc = model.pose.run(np.zeros((1, 3, 384, 288), np.float32))
        try:  # the peer (comfyui_controlnet_aux) resizes and warps with OpenCV: time those steps when available
            import cv2
        except ImportError:
            cv2 = None
        for size in (512, 1024):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            box = np.array([size * 0.3, size * 0.1, size * 0.6, size * 0.9])
            crop = topdown.crop_for_box(box, 288, 384)
            canvas, ratio = imageops.letterbox(image, 640, 640)

            def post_detect():
                boxes, scores = det.decode_boxes(raw, (640, 640), ratio, det.person_rows(raw))  # as DWPose does
                det.select_person_boxes(boxes, scores, (size, size))

            def post_pose():
                locs, scores = topdown.decode_simcc(*simcc)
                keypoints.people_from_wholebody(topdown.to_image(locs[0], crop, 288, 384)[None], scores)

            for frames in (1, 16):
                repeat = 3 if frames == 16 else 10
                t_letter = _ms(lambda: imageops.letterbox(image, 640, 640), repeat)
                t_post_det = _ms(post_detect, repeat)
                t_crop = _ms(lambda: topdown.crop_input(image, crop, 288, 384), repeat)
                t_post_pose = _ms(post_pose, repeat)
                t_det = _ms(lambda: model.detector.run(canvas.transpose(2, 0, 1)[None].astype(np.float32)), repeat)
                t_pose = _ms(lambda: model.pose.run(np.zeros((1, 3, 384, 288), np.float32)), repeat)
                batch = [image] * frames
                t_total = _ms(lambda: model.run_batch(batch), 3) / frames
                print(f"{size:>6} {frames:>6} | {t_letter:9.2f} {t_post_det:8.2f} {t_crop:6.2f} {t_post_pose:9.2f} "
                      f"{t_letter + t_post_det + t_crop + t_post_pose:8.2f} | {t_det:8.1f} {t_pose:8.1f} | {t_total:11.1f} "
                      f"{1000 / t_total:8.1f}")
            if cv2 is not None:
                r = 640 / size
                matrix = topdown.crop_matrix(crop, 288, 384)
                t_cv_letter = _ms(lambda: cv2.resize(image, (int(size * r), int(size * r)), interpolation=cv2.INTER_LINEAR), 10)
                t_cv_crop = _ms(lambda: (cv2.warpAffine(image, matrix, (288, 384), flags=cv2.INTER_LINEAR)
                                         - topdown.MEAN) / topdown.STD, 10)
                print(f"{size:>6}   cv2  | {t_cv_letter:9.2f} {'':>8} {t_cv_crop:6.2f}   (OpenCV resize / warp+normalise, "
                      "as the peer does them)")


if __name__ == "__main__":
    main()
