"""SCFM nodes through the no-ComfyUI adapter: loader, warp preview on a known translation, sampling."""
import numpy as np
import pytest
import torch

from posetransfer.models.scfm.checkpoint import original_state_dict
from posetransfer.models.scfm.config import SCFMConfig
from posetransfer.models.scfm.unet import SCFMUNet
from posetransfer.nodes import scfm as nodes
from posetransfer.nodes.comfy_adapter import model_file_list

TINY = SCFMConfig(image_size=64, level_channels=(8, 8, 8, 8, 16, 16), embed_channels=32,
                  flow_channels=(4, 8, 16, 32, 32), msff_patch=8, msff_heads=2, msff_layers=1, msff_mlp_ratio=2)
# A standing figure on a 64 x 64 canvas (OpenPose-18 order); the ears are missing.
BODY = np.array([[32, 10], [32, 18], [26, 18], [24, 28], [23, 36], [38, 18], [40, 28], [41, 36], [28, 38],
                 [28, 48], [28, 58], [36, 38], [36, 48], [36, 58], [30, 8], [34, 8], [-1, -1], [-1, -1]], float)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: threads only add OpenMP contention on a shared machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pose_keypoint(body, width=64, height=64):
    flat = []
    for x, y in body:
        flat += [0.0, 0.0, 0.0] if x < 0 else [float(x), float(y), 1.0]
    return [{"people": [{"pose_keypoints_2d": flat}], "canvas_width": width, "canvas_height": height}]


@pytest.fixture(scope="module")
def handle(tmp_path_factory):
    torch.manual_seed(0)
    model = SCFMUNet(TINY)
    folder = tmp_path_factory.mktemp("models")
    (folder / "scfm").mkdir()
    weights = original_state_dict(model.state_dict(), TINY)
    torch.save({"model": weights, "ema": weights, "scheduler": {}, "optimizer": {}}, folder / "scfm" / "scfm_last.pt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POSETRANSFER_MODELS_DIR", str(folder))
        assert "scfm_last.pt" in model_file_list("scfm")
        return nodes.SCFMLoader.execute(ckpt_name="scfm_last.pt", precision="fp32").result[0]


def _image(height, width, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, height, width, 3), generator=gen).float() / 255.0


def test_loader_names_the_folder_when_the_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="scfm"):
        nodes.SCFMLoader.execute(ckpt_name="nothing.pt", precision="auto")


def test_warp_preview_of_a_pure_translation(handle):
    # Plant the flow net's heads: a constant shift of 4 px to the right at every scale, mask ~1 (nothing occluded).
    shift = 4.0
    flow_net = handle.model.flow_net
    saved = {k: v.clone() for k, v in flow_net.state_dict().items()}
    with torch.no_grad():
        for head, side in ((flow_net.output_eight, 2), (flow_net.output0, 4), (flow_net.output1, 8)):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([shift * side / 64, 0.0]))
        for mask in (flow_net.mask_eight, flow_net.mask0, flow_net.mask1):
            mask[0].weight.zero_()
            mask[0].bias.fill_(30.0)
    try:
        source = _image(64, 64, 1)
        target = BODY - np.where(BODY >= 0, [shift, 0.0], 0.0)  # the person moved 4 px left
        warped, flow, occlusion = nodes.SCFMWarp.execute(handle, source, _pose_keypoint(BODY), _pose_keypoint(target),
                                                         "stretch").result
    finally:
        flow_net.load_state_dict(saved)
    # Backward warp: output(x) = source(x + 4), the right border repeated.
    cols = torch.clamp(torch.arange(64) + 4, max=63)
    assert warped.shape == (1, 64, 64, 3)
    assert torch.allclose(warped, source[:, :, cols], atol=1e-5)
    assert torch.allclose(flow, torch.tensor([1.0, 0.0, 0.0]).expand(1, 64, 64, 3), atol=1e-4)  # +x = red
    assert occlusion.shape == (1, 64, 64) and occlusion.max() < 1e-6


def test_sample_broadcasts_keeps_size_and_is_seeded(handle):
    sources = torch.cat([_image(48, 40, 2), _image(48, 40, 3)])
    pose, target = _pose_keypoint(BODY, 40, 48), _pose_keypoint(BODY[::-1].copy(), 40, 48)
    run = lambda seed, batch_size: nodes.SCFMSample.execute(  # noqa: E731
        handle, sources, pose, target, seed, 1, 2.0, "pad", batch_size, nodes.NOISE_MODES[0]).result[0]
    first = run(7, 2)
    assert first.shape == (2, 48, 40, 3) and 0.0 <= first.min() and first.max() <= 1.0
    assert torch.allclose(run(7, 1), first, atol=1e-4)  # chunking does not change results (up to conv round-off)
    assert not torch.equal(run(8, 2), first)
    assert not torch.equal(first[0], first[1])


def test_sample_rejects_mismatched_batches_and_empty_poses(handle):
    sources = torch.cat([_image(64, 64, 4)] * 2)
    three = _pose_keypoint(BODY) * 3
    with pytest.raises(ValueError, match="Batch sizes"):
        nodes.SCFMSample.execute(handle, sources, _pose_keypoint(BODY), three, 0, 1, 2.0, "stretch", 4,
                                 nodes.NOISE_MODES[0])
    empty = [{"people": [], "canvas_width": 64, "canvas_height": 64}]
    with pytest.raises(ValueError, match="no person"):
        nodes.SCFMSample.execute(handle, sources, empty, _pose_keypoint(BODY), 0, 1, 2.0, "stretch", 4,
                                 nodes.NOISE_MODES[0])


def test_schemas_have_tooltips_everywhere():
    for node in nodes.NODES:
        schema = node.define_schema()
        assert schema.node_id.startswith("PoseTransferSCFM") and schema.category == "PoseTransfer/SCFM"
        assert all(item.tooltip for item in (*schema.inputs, *schema.outputs))
