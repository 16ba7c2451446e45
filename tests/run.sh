#!/usr/bin/env bash
# The test command (README "Run the tests"): builds its own virtual environment (.venv-test, or
# $POSETRANSFER_TEST_VENV), installs the CPU torch 2.13.0 wheel first and holds it there with a constraint,
# then the pack's requirements, onnxruntime, the test tools and Accelerate (training only), and runs pytest.
# onnx builds the stand-in DWPose models; OpenCV is the reference the numpy kernels are compared with (and the optional
# native path, pose/native.py, is tested against them), never a dependency of the pack;
# scipy and scikit-image are the references of the metrics tests (SSIM, FID's matrix square root) likewise.
# It never installs into the Python that runs ComfyUI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN=${PYTHON:-python3.11}
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
VENV=${POSETRANSFER_TEST_VENV:-.venv-test}
[ -x "$VENV/bin/python" ] || "$PYTHON_BIN" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check torch==2.13.0 2> >(grep -v "is ignored" >&2)
echo "torch==2.13.0" > "$VENV/constraints.txt"
"$PY" -m pip install -q --disable-pip-version-check -c "$VENV/constraints.txt" \
    -r requirements.txt onnxruntime onnx pytest hypothesis opencv-python-headless scipy scikit-image "accelerate>=1.0" 2> >(grep -v "is ignored" >&2)
if "$PY" -c "import torchvision" 2>/dev/null; then
    echo "torchvision is installed in $VENV; the pack must not need it" >&2
fi
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
