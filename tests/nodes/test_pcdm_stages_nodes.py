"""PCDMs prior / refine / three-stage nodes through the no-ComfyUI adapter, with tiny models in the original files."""
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.images import bchw_to_comfy, comfy_to_bchw
from posetransfer.models.pcdm.inpaint import InpaintSettings, inpaint
from posetransfer.models.pcdm.refine import RefineSettings, refine
from posetransfer.models.pcdm.config import PriorConfig
from posetransfer.models.pcdm.prior_transformer import PosePriorTransformer
from posetransfer.nodes import loaders, pcdm, pcdm_stages

from ..models.pcdm.conftest import TINY_SIZE, UNET_SIDE_CONFIG, randomise, tiny_image_proj, tiny_unet
from ..models.pcdm.conftest import dino_file, full_file, simplified_file, vae_file  # noqa: F401  (fixtures)

EMBED = 32  # the tiny stage-2 model's cross-attention / class-embedding width, so the prior's output fits it
H, W = 80, 60


def _prior_module(tmp_path):
    prior = randomise(PosePriorTransformer(PriorConfig(width=32, num_layers=1, num_heads=2, head_dim=16,
                                                       embedding_dim=EMBED, pose_hidden=16, ff_inner=64)), 7)
    # The released stage-1 file: DeepSpeed container, keys without prefix, fp16.
    torch.save({"module": {k: v.half() for k, v in prior.state_dict().items()}, "global_steps": 1}, tmp_path / "s1_512.pt")
    (tmp_path / "s1_512.json").write_text(json.dumps({"num_attention_heads": 2}))


def _stage3_file(tmp_path):
    parts = {"unet.": tiny_unet(in_channels=8), "image_proj_model_p.": tiny_image_proj()}
    state = {prefix + k: v.half() for prefix, module in parts.items() for k, v in module.state_dict().items()}
    torch.save({"module": state}, tmp_path / "s3_512.pt")
    (tmp_path / "s3_512.json").write_text(json.dumps(UNET_SIDE_CONFIG))


def _clip_file(folder):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              patch_size=14, image_size=224, projection_dim=EMBED, hidden_act="gelu")
    model = randomise(CLIPVisionModelWithProjection(config), 8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "CLIP-ViT-H-14.safetensors"))
    (folder / "CLIP-ViT-H-14.json").write_text(json.dumps({"num_attention_heads": 2}))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, full_file, vae_file, dino_file):  # noqa: F811
    root = tmp_path_factory.mktemp("models")
    for folder, path in (("pcdms", full_file), ("vae", vae_file), ("clip_vision", dino_file)):
        (root / folder).mkdir(exist_ok=True)
        for item in (path, path.with_suffix(".json")):
            shutil.copy(item, root / folder / item.name)
    _prior_module(root / "pcdms")
    _stage3_file(root / "pcdms")
    _clip_file(root / "clip_vision")
    return root


@pytest.fixture(scope="module")
def handles(models_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
        return dict(
            prior=pcdm_stages.PCDMPriorLoader.execute(ckpt_name="s1_512.pt", precision="fp32").result[0],
            refiner=pcdm_stages.PCDMRefinerLoader.execute(ckpt_name="s3_512.pt", precision="fp32").result[0],
            pcdm_model=loaders.PCDMLoader.execute(ckpt_name="s2_512.pt", precision="fp32").result[0],
            clip_vision=loaders.CLIPVisionLoader.execute(clip_name="CLIP-ViT-H-14.safetensors",
                                                         precision="fp32").result[0],
            dinov2=loaders.DINOv2Loader.execute(clip_name="dinov2-giant.safetensors", precision="fp32").result[0],
            vae=loaders.VAELoader.execute(vae_name="sd21-base-vae.safetensors", precision="fp32").result[0],
        )


def _image(batch, seed=0):
    return torch.rand(batch, H, W, 3, generator=torch.Generator().manual_seed(seed))


def _pose(frames, seed=0, canvas=True):
    """POSE_KEYPOINT: one person per frame, 18 body points in pixels of a W x H canvas (two of them missing)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(frames):
        xy = torch.rand(18, 2, generator=gen) * torch.tensor([W - 1.0, H - 1.0]) + 0.5
        flat = []
        for i, (x, y) in enumerate(xy.tolist()):
            flat += [0.0, 0.0, 0.0] if i in (14, 16) else [x, y, 1.0]
        frame = {"people": [{"pose_keypoints_2d": flat}]}
        out.append({**frame, "canvas_width": W, "canvas_height": H} if canvas else frame)
    return out


PRIOR_ARGS = dict(steps=3, guidance=0.0, seed=4, pose_convention="fraction")
REFINE_ARGS = dict(steps=2, guidance=2.0, scheduler="unipc", seed=4, fit="pad", guidance_rescale=0.0, strength=1.0,
                   size=TINY_SIZE)


@pytest.mark.parametrize("node", pcdm_stages.NODES, ids=lambda n: n.__name__)
def test_schema_ids_tooltips_and_order(node):
    schema = node.define_schema()
    assert schema.node_id.startswith("PoseTransferPCDM") and schema.category == "PoseTransfer/PCDMs"
    for entry in (*schema.inputs, *schema.outputs):
        assert entry.tooltip, f"{schema.node_id}: {entry.id or entry.display_name} has no tooltip"
    optional = [i.optional for i in schema.inputs]
    assert optional == sorted(optional)


def test_widget_order_is_frozen():
    def widgets(node):
        return [i.id for i in node.define_schema().inputs if getattr(i, "is_widget", False)]
    assert widgets(pcdm_stages.PCDMPrior) == ["steps", "guidance", "seed", "pose_convention"]
    assert widgets(pcdm_stages.PCDMRefine) == ["steps", "guidance", "scheduler", "seed", "fit", "guidance_rescale",
                                               "strength", "size", "sequential_guidance"]
    assert widgets(pcdm_stages.PCDMThreeStage) == ["steps", "guidance", "scheduler", "seed", "fit", "prior_steps",
                                                   "prior_guidance", "pose_convention", "refine_strength",
                                                   "guidance_rescale", "resolution", "sequential_guidance"]
    assert pcdm_stages.PCDMPrior.define_schema().outputs[0].io_type == "PT_PCDM_EMBEDDING"
    assert pcdm_stages.PCDMPrior.define_schema().inputs[3].io_type == "POSE_KEYPOINT"


def test_loaders_refuse_files_of_another_stage(models_dir, monkeypatch):
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
    with pytest.raises(CheckpointError, match="stage-3 refinement model.*, but a PCDMs stage-1 prior"):
        pcdm_stages.PCDMPriorLoader.execute(ckpt_name="s3_512.pt", precision="fp32")
    with pytest.raises(CheckpointError, match="stage-1 prior.*PCDMs#24"):
        pcdm_stages.PCDMRefinerLoader.execute(ckpt_name="s1_512.pt", precision="fp32")
    with pytest.raises(CheckpointError, match="stage-2 inpainting model.*, but a PCDMs stage-3"):
        pcdm_stages.PCDMRefinerLoader.execute(ckpt_name="s2_512.pt", precision="fp32")
    with pytest.raises(FileNotFoundError, match="pcdms"):
        pcdm_stages.PCDMPriorLoader.execute(ckpt_name="s1_256.pt", precision="fp32")


def test_prior_node_batches_broadcast_and_is_seeded(handles):
    h = handles
    embeds = pcdm_stages.PCDMPrior.execute(h["prior"], h["clip_vision"], _image(1), _pose(1, canvas=False), _pose(2, 1),
                                          **PRIOR_ARGS).result[0]
    assert embeds.shape == (2, EMBED) and embeds.dtype == torch.float32 and embeds.device.type == "cpu"
    again = pcdm_stages.PCDMPrior.execute(h["prior"], h["clip_vision"], _image(1), _pose(1), _pose(2, 1),
                                         **PRIOR_ARGS).result[0]
    assert torch.equal(embeds, again)  # a pose without canvas size is read on the source image's frame
    guided = pcdm_stages.PCDMPrior.execute(h["prior"], h["clip_vision"], _image(1), _pose(1), _pose(2, 1),
                                          **{**PRIOR_ARGS, "guidance": 3.0}).result[0]
    assert guided.shape == (2, EMBED) and not torch.allclose(guided, embeds)
    with pytest.raises(ValueError, match="batch sizes"):
        pcdm_stages.PCDMPrior.execute(h["prior"], h["clip_vision"], _image(1), _pose(3), _pose(2, 1), **PRIOR_ARGS)
    with pytest.raises(ValueError, match="target_pose: frame 0 has no person"):
        pcdm_stages.PCDMPrior.execute(h["prior"], h["clip_vision"], _image(1), _pose(1),
                                     [{"people": [], "canvas_width": W, "canvas_height": H}], **PRIOR_ARGS)


def test_refine_node_batch_with_guidance_keeps_size(handles):
    h = handles
    out = pcdm_stages.PCDMRefine.execute(h["refiner"], h["dinov2"], h["vae"], _image(3, 2), _image(1), **REFINE_ARGS)
    image = out.result[0]
    assert image.shape == (3, H, W, 3) and 0 <= image.min() and image.max() <= 1
    sequential = pcdm_stages.PCDMRefine.execute(h["refiner"], h["dinov2"], h["vae"], _image(3, 2), _image(1),
                                               **REFINE_ARGS, sequential_guidance=True).result[0]
    torch.testing.assert_close(sequential, image, atol=1e-5, rtol=0)  # same numbers, half the activations
    with pytest.raises(ValueError, match="source has 2 images but the coarse batch has 3"):
        pcdm_stages.PCDMRefine.execute(h["refiner"], h["dinov2"], h["vae"], _image(3, 2), _image(2), **REFINE_ARGS)


def test_three_stages_equal_the_chained_nodes_and_load_in_turn(handles, monkeypatch):
    h = handles
    loaded = []

    def record(models, memory_required=0):
        loaded.append([next(name for name, v in h.items() if v is m) for m in models])
    monkeypatch.setattr(pcdm_stages, "load_models", record)
    monkeypatch.setattr(pcdm, "load_models", record)
    source, source_pose, target_pose = _image(1), _pose(1), _pose(2, 3)
    image, coarse, embeds = pcdm_stages.PCDMThreeStage.execute(
        h["prior"], h["clip_vision"], h["pcdm_model"], h["refiner"], h["dinov2"], h["vae"], source, source_pose,
        target_pose, seed=4, steps=2, guidance=2.0, scheduler="unipc", fit="pad", prior_steps=3, prior_guidance=0.0,
        pose_convention="fraction", refine_strength=1.0, guidance_rescale=0.0, resolution=TINY_SIZE).result
    assert loaded == [["prior", "clip_vision"], ["pcdm_model", "dinov2", "vae"], ["refiner", "dinov2", "vae"]]
    assert image.shape == coarse.shape == (2, H, W, 3) and embeds.shape == (2, EMBED)

    chained_embeds = pcdm_stages.PCDMPrior.execute(h["prior"], h["clip_vision"], source, source_pose, target_pose,
                                                  **PRIOR_ARGS).result[0]
    chained_coarse = pcdm.PCDMInpaint.execute(
        h["pcdm_model"], h["dinov2"], h["vae"], source, steps=2, guidance=2.0, scheduler="unipc", seed=4, fit="pad",
        source_pose_keypoint=source_pose, target_pose_keypoint=target_pose, target_embedding=chained_embeds,
        resolution=TINY_SIZE).result[0]
    chained = pcdm_stages.PCDMRefine.execute(h["refiner"], h["dinov2"], h["vae"], chained_coarse, source,
                                            **REFINE_ARGS).result[0]
    torch.testing.assert_close(embeds, chained_embeds, atol=0, rtol=0)
    torch.testing.assert_close(coarse, chained_coarse, atol=0, rtol=0)
    # Stage 3 gets stage 2's square and DINOv2 tokens directly: exactly the pipelines chained that way ...
    src = comfy_to_bchw(source, "source_image")
    stage2 = inpaint(h["pcdm_model"].model, h["vae"].model, h["dinov2"].model, src,
                     pcdm.pose_input(None, source_pose, "source_pose", (H, W)), pcdm.pose_input(None, target_pose,
                     "target_pose"), InpaintSettings(steps=2, scheduler="unipc", seed=4, size=TINY_SIZE),
                     target_embeds=chained_embeds)
    direct = refine(h["refiner"].model, h["vae"].model, h["dinov2"].model, stage2.square, src,
                    RefineSettings(steps=2, seed=4, size=TINY_SIZE), coarse_fit=stage2.fit,
                    source_tokens=stage2.source_tokens)
    torch.testing.assert_close(image, bchw_to_comfy(direct), atol=0, rtol=0)
    # ... and close to the chained nodes, whose coarse IMAGE went to the target size and back through 8 bits
    assert (image - chained).abs().max() < 0.05
    assert (image - coarse).abs().max() > 1e-3  # the refine stage did something


def test_three_stages_refuse_the_simplified_model(handles, simplified_file, monkeypatch):  # noqa: F811
    from posetransfer.models.pcdm.stages import load_pcdm_checkpoint
    from posetransfer.nodes.comfy_adapter import wrap_model

    h = handles
    simplified = wrap_model(load_pcdm_checkpoint(str(simplified_file)))
    with pytest.raises(ValueError, match="simplified PCDMs model"):
        pcdm_stages.PCDMThreeStage.execute(
            h["prior"], h["clip_vision"], simplified, h["refiner"], h["dinov2"], h["vae"], _image(1), _pose(1),
            _pose(1, 3), steps=1, prior_steps=2, resolution=TINY_SIZE)
