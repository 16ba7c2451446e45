"""Parity of the pack's PCDMs pipelines with the ORIGINAL code (tencent-ailab/PCDMs), tiny random models, fp32 CPU.

    git --git-dir=<PCDMs mirror> archive HEAD src stage2_batchtest_inpaint_model.py | tar -x -C /tmp/pcdms_orig
    python bench/pcdm_parity.py --original /tmp/pcdms_orig [--steps 5] [--paths simplified full refine prior]

The original checkout stays outside the repository; it is put on sys.path at run time and run with the installed
diffusers/transformers (two moved import paths aliased). One file per path is written in the original DeepSpeed
layout and loaded through the pack's loaders exactly as a user would; the original modules get the SAME state
dict. Both sides use the VAE posterior mode (the original's `latent_dist.sample` is patched) and the same initial
noise (`latents=`). The original forces fp16 in places: its pipeline modules see a `torch` whose float16 is
float32, so everything runs fp32 (PCDMS.md §13). DINOv2 runs with the installed transformers' pos-emb
interpolation on both sides; one extra row checks the pack's transformers-4.32.1 interpolation against that
formula (PCDMS.md §5) patched into the stock model. Stage 1 gets fixed per-step noise. "control" rows compare
ours with a deliberately altered original and must be clearly non-zero (else the comparison is blind to that
difference). Prints a table of max |difference|; asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", _ROOT / "__main__.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.load_pack()
from posetransfer.models import vae as pack_vae  # noqa: E402
from posetransfer.models.checkpoints import read_checkpoint, split_prefixes  # noqa: E402
from posetransfer.models.encoders import encode_dino, encode_zero_image, load_dinov2  # noqa: E402
from posetransfer.models.images import pil_resize  # noqa: E402
from posetransfer.models.noise import seeded_noise  # noqa: E402
from posetransfer.models.pcdm import inpaint as pack_inpaint  # noqa: E402
from posetransfer.models.pcdm import prior as pack_prior  # noqa: E402
from posetransfer.models.pcdm import refine as pack_refine  # noqa: E402
from posetransfer.models.pcdm.stages import load_pcdm_checkpoint, load_prior, load_refiner  # noqa: E402

# The tiny builders of the test suite (tests/models/pcdm/conftest.py), loaded by path: tests/ is no package.
_fixtures_spec = importlib.util.spec_from_file_location("pcdm_fixtures", _ROOT / "tests/models/pcdm/conftest.py")
fx = importlib.util.module_from_spec(_fixtures_spec)
_fixtures_spec.loader.exec_module(fx)

SIZE = fx.TINY_SIZE
SEED = 11
SD21_BASE_SCHEDULER_CONFIG = {  # SD 2.1-base scheduler_config.json (PNDM; sd2-community mirror)
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}
ROWS: list[tuple[str, str, tuple, float, bool]] = []


def row(path: str, quantity: str, ours: torch.Tensor, original: torch.Tensor, control: bool = False) -> None:
    """One table line: max |ours - original| (a control: vs an original altered on purpose, expected > 0)."""
    if ours.shape != original.shape:
        raise SystemExit(f"{path} / {quantity}: ours {tuple(ours.shape)} but original {tuple(original.shape)}")
    ROWS.append((path, quantity, tuple(ours.shape), (ours.float() - original.float()).abs().max().item(), control))


# ------------------------------------------------------------------------------------------ the original code
class _Fp32Torch(types.ModuleType):
    """`torch` as the original pipelines see it: its hard-coded float16 casts become float32 (fp32 parity)."""

    def __getattr__(self, name: str):
        return torch.float32 if name in ("float16", "half") else getattr(torch, name)


def import_original(root: Path) -> types.SimpleNamespace:
    from diffusers.models.controlnets import controlnet
    from diffusers.models.unets import unet_2d_blocks

    # the two modules that moved since diffusers 0.24 (PCDMS.md §13); nothing else breaks on 0.42 / transformers 5
    sys.modules.setdefault("diffusers.models.unet_2d_blocks", unet_2d_blocks)
    sys.modules.setdefault("diffusers.models.controlnet", controlnet)
    sys.path.insert(0, str(root))
    names = {"unet": "src.models.stage2_inpaint_unet_2d_condition", "pcdms": "src.pipelines.PCDMs_pipeline",
             "stage2": "src.pipelines.stage2_inpaint_pipeline", "stage3": "src.pipelines.stage3_refined_pipeline",
             "prior_model": "src.models.stage1_prior_transformer", "prior_pipe": "src.pipelines.stage1_prior_pipeline"}
    modules = {key: importlib.import_module(name) for key, name in names.items()}
    for key in ("pcdms", "stage2", "stage3"):
        modules[key].torch = _Fp32Torch("torch")
    return types.SimpleNamespace(**modules, image_proj=_original_image_proj(root))


def _original_image_proj(root: Path) -> type:
    """`ImageProjModel_p` as defined in the original batch-test script, executed from its source text."""
    import ast

    source = (root / "stage2_batchtest_inpaint_model.py").read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "ImageProjModel_p")
    scope = {"torch": torch, "nn": torch.nn}
    exec(compile(ast.Module([node], []), "stage2_batchtest_inpaint_model.py", "exec"), scope)  # noqa: S102
    return scope["ImageProjModel_p"]


@contextlib.contextmanager
def patched(owner: object, name: str, value: object):
    """Set `owner.name = value` for the duration of the block (run-time patches of the original's environment)."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def posterior_mode():
    """The original samples the VAE posterior; both sides use its mode (PCDMS.md §13 step 2)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    return patched(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())


def legacy_dino_interpolation():
    """transformers 4.32.1's DINOv2 pos-emb interpolation (PCDMS.md §5): scale (n + 0.1) / sqrt(N), model dtype."""
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    def interpolate(self, embeddings, height, width):
        table = self.position_embeddings
        side = (table.shape[1] - 1) ** 0.5
        grid = table[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
        patch = self.patch_embeddings.patch_size[0]
        factor = ((height // patch + 0.1) / side, (width // patch + 0.1) / side)
        grid = torch.nn.functional.interpolate(grid, scale_factor=factor, mode="bicubic", align_corners=False)
        return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])], dim=1)

    return patched(Dinov2Embeddings, "interpolate_pos_encoding", interpolate)


def recording_decoder(module: types.ModuleType, seen: list):
    """Record the latents the pack's pipeline in `module` hands to the VAE decoder (its final latents)."""
    decode = module.decode_latents
    return patched(module, "decode_latents",
                   lambda vae, latents, *a, **k: (seen.append(latents.clone()), decode(vae, latents, *a, **k))[1])


# ------------------------------------------------------------------------------------------ models and files
def write_files(folder: Path) -> dict[str, Path]:
    """Tiny random checkpoints in the original containers, each with its `<stem>.json` side config."""
    from safetensors.torch import save_file

    paths = {"simplified": folder / "PCDMs_ckpt.pt", "full": folder / "s2_512.pt", "refine": folder / "s3_512.pt",
             "prior": folder / "s1_512.pt", "vae": folder / "vae.safetensors", "dino": folder / "dinov2.safetensors"}
    torch.save({"module": fx.stage2_state_dict(full=False), "global_steps": 1}, paths["simplified"])
    torch.save({"module": fx.stage2_state_dict(full=True)}, paths["full"])
    stage3 = {"unet.": fx.tiny_unet(in_channels=8, seed=5), "image_proj_model_p.": fx.tiny_image_proj(seed=6)}
    stage3 = {p + k: v.half() for p, m in stage3.items() for k, v in m.state_dict().items()}
    torch.save({"module": stage3}, paths["refine"])
    for key in ("simplified", "full", "refine"):
        fx.write_with_config(paths[key], fx.UNET_SIDE_CONFIG)
    save_file({k: v.contiguous() for k, v in fx.tiny_vae().state_dict().items()}, str(paths["vae"]))
    fx.write_with_config(paths["vae"], {"norm_num_groups": 4})
    dino = fx.old_dinov2_keys(fx.tiny_dinov2().state_dict())  # the hub files' transformers-4 names
    save_file({k: v.contiguous() for k, v in dino.items()}, str(paths["dino"]))
    fx.write_with_config(paths["dino"], {"num_attention_heads": 2})
    return paths


def original_modules(orig: types.SimpleNamespace, path: Path, kind: str) -> dict[str, torch.nn.Module]:
    """The original classes, built with the tiny config and loaded strictly from the same file (fp16 -> fp32)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

    state = {k: v.float() for k, v in read_checkpoint(str(path)).state_dict.items()}
    if kind == "refine":
        parts = split_prefixes(state, ["unet.", "image_proj_model_p."])
        unet = UNet2DConditionModel(**{**fx.TINY_UNET, "in_channels": 8})
    else:
        image_prefix = "image_proj_model_p." if kind == "full" else "image_proj_model."
        parts = split_prefixes(state, ["unet.", "pose_proj.", image_prefix])
        parts["image_proj_model_p."] = parts.pop(image_prefix)
        extra = dict(class_embed_type="projection", projection_class_embeddings_input_dim=32) if kind == "full" else {}
        unet = orig.unet.Stage2_InapintUNet2DConditionModel(**fx.TINY_UNET, **extra)
    out = {"unet": unet, "image_proj": orig.image_proj(fx.DINO_HIDDEN, 16, 32)}
    if "pose_proj." in parts:
        out["pose_proj"] = ControlNetConditioningEmbedding(32, 3, (4, 8, 8, 16))
        out["pose_proj"].load_state_dict(parts["pose_proj."])
    out["unet"].load_state_dict(parts["unet."])
    out["image_proj"].load_state_dict(parts["image_proj_model_p."])
    return {k: m.eval() for k, m in out.items()}


def original_frozen(paths: dict[str, Path]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Stock diffusers AutoencoderKL (weights from the side file) and transformers Dinov2Model (the builder's weights,
    which the side file holds under the hub's transformers-4 key names that stock `load_state_dict` no longer takes)."""
    vae = fx.tiny_vae()
    vae.load_state_dict(read_checkpoint(str(paths["vae"])).state_dict)
    return vae.eval(), fx.tiny_dinov2().eval()


# ------------------------------------------------------------------------------------------ inputs
def random_images(seed: int, batch: int, size: int) -> torch.Tensor:
    """[B,3,size,size] 0..1 on the uint8 grid (what a PIL image holds)."""
    return torch.randint(0, 256, (batch, 3, size, size), generator=torch.Generator().manual_seed(seed)) / 255


def pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def img_transform(image: Image.Image) -> torch.Tensor:
    """The original's ToTensor + Normalize(0.5, 0.5) (torchvision is not installed here): (1,3,H,W) in [-1,1]."""
    return (torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)[None] - 0.5) / 0.5


def original_stage2_inputs(source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor) -> dict:
    """The demo notebook's preprocessing of one item: PIL bicubic squares, [source | black], [pose | pose]."""
    from transformers import CLIPImageProcessor

    s_img = pil(source).resize((SIZE, SIZE), Image.BICUBIC)
    canvas, poses = Image.new("RGB", (2 * SIZE, SIZE)), Image.new("RGB", (2 * SIZE, SIZE))
    canvas.paste(s_img, (0, 0))
    poses.paste(pil(source_pose).resize((SIZE, SIZE), Image.BICUBIC), (0, 0))
    poses.paste(pil(target_pose).resize((SIZE, SIZE), Image.BICUBIC), (SIZE, 0))
    mask = torch.cat([torch.ones(1, 1, SIZE // 8, SIZE // 8), torch.zeros(1, 1, SIZE // 8, SIZE // 8)], dim=3)
    clip = CLIPImageProcessor()(images=s_img, return_tensors="pt").pixel_values
    return {"vae_image": img_transform(canvas), "poses": img_transform(poses), "mask": mask, "clip": clip}


def compare_dino(path: str, dino, o_dino, source: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """Rows for DINOv2 tokens (installed and 4.32.1 interpolation); returns the original's tokens."""
    tokens = o_dino(pixel_values=clip).last_hidden_state
    row(path, "DINOv2 tokens", encode_dino(dino, source, legacy_interpolation=False), tokens)
    with legacy_dino_interpolation():
        legacy = o_dino(pixel_values=clip).last_hidden_state
    row(path, "DINOv2 tokens, 4.32.1 interpolation", encode_dino(dino, source, legacy_interpolation=True), legacy)
    row(path, "DINOv2 4.32.1 vs installed interpolation", encode_dino(dino, source, True), tokens, control=True)
    return tokens


# ------------------------------------------------------------------------------------------ stage 2
@torch.no_grad()
def run_stage2(orig: types.SimpleNamespace, paths: dict[str, Path], full: bool, steps: int) -> None:
    """Simplified (PCDMsPipeline, DDIM, projected-zero uncond) or full stage 2 (UniPC, zeros uncond, class labels)."""
    name = "full/unipc" if full else "simplified/ddim"
    kind = "full" if full else "simplified"
    model = load_pcdm_checkpoint(str(paths[kind]), dtype=torch.float32)
    vae, dino = pack_vae.load_vae(str(paths["vae"])), load_dinov2(str(paths["dino"]))
    o = original_modules(orig, paths[kind], kind)
    o_vae, o_dino = original_frozen(paths)
    source, source_pose = random_images(0, 1, SIZE), random_images(1, 1, SIZE)
    target = random_images(2, 1, SIZE * 3 // 2)  # the demo's target renders are larger, PIL-resized to the square
    embed = torch.randn(1, 32, generator=torch.Generator().manual_seed(3)) if full else None
    inputs = original_stage2_inputs(source[0], source_pose[0], target[0])
    settings = pack_inpaint.InpaintSettings(steps=steps, guidance_scale=2.0, scheduler="unipc" if full else "ddim",
                                            seed=SEED, size=SIZE, fit="stretch", legacy_dino_interpolation=False)

    pose = pack_inpaint.pose_residual(model, source_pose, pil_resize(target, (SIZE, SIZE)))
    o_pose = o["pose_proj"](inputs["poses"])
    row(name, "pose_proj output", pose, o_pose)
    tokens = compare_dino(name, dino, o_dino, source, inputs["clip"])
    cond, uncond, masked = pack_inpaint.encode_source(model, vae, dino, source, settings)
    o_cond = o["image_proj"](tokens)
    o_uncond = torch.zeros_like(o_cond) if full else o["image_proj"](torch.zeros_like(tokens))
    row(name, "projected cond tokens", cond, o_cond)
    row(name, "uncond tokens", uncond, o_uncond)
    with posterior_mode():
        o_masked = o_vae.encode(inputs["vae_image"]).latent_dist.sample() * 0.18215
    row(name, "masked-canvas latents", masked, o_masked)

    x = torch.randn(1, 9, SIZE // 8, SIZE // 4, generator=torch.Generator().manual_seed(4))
    t = torch.tensor(981)
    labels = {"class_labels": embed} if full else {}
    context = torch.cat([o_cond, embed[:, None]], dim=1) if full else o_cond
    ours_eps = model.unet(x, t, encoder_hidden_states=context, pose_residual=o_pose, **labels)
    o_labels = {"class_labels": embed[:, None]} if full else {}
    o_eps = o["unet"](x, t, encoder_hidden_states=context, my_pose_cond=o_pose, **o_labels).sample
    row(name, "one UNet call (t=981)", ours_eps, o_eps)

    ours_scheduler = pack_inpaint.make_scheduler(settings.scheduler)
    ours_scheduler.set_timesteps(steps)
    seen: list[torch.Tensor] = []
    with recording_decoder(pack_inpaint, seen):
        result = pack_inpaint.inpaint(model, vae, dino, source, source_pose, target, settings, target_embeds=embed)
    feeds = dict(o=o, o_vae=o_vae, inputs=inputs, cond=o_cond, uncond=o_uncond, masked=o_masked, pose=o_pose,
                 embed=embed)
    images, latents, timesteps = original_stage2(orig, full, steps, feeds)
    row(name, "timesteps", ours_scheduler.timesteps.float(), timesteps)
    row(name, "final latents", seen[0], latents)
    row(name, "decoded canvas [0,1]", result.canvas, images)
    row(name, "decoded target half [0,1]", result.canvas[..., SIZE:], images[..., SIZE:])
    # controls: the comparison must see the deviations the pack avoids
    if full:
        _, latents, _ = original_stage2(orig, full, steps, feeds, final_sigmas_type="zero")
        row(name, "final latents, UniPC final sigma 'zero'", seen[0], latents, control=True)
    else:
        _, latents, _ = original_stage2(orig, full, steps, {**feeds, "uncond": torch.zeros_like(o_uncond)})
        row(name, "final latents, uncond = zeros", seen[0], latents, control=True)


def original_unipc(final_sigmas_type: str = "sigma_min"):
    """The batch-test scripts' UniPC; diffusers 0.24 (their pin) ended on sigma(t=0) (PCDMS.md §7)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler.from_config(SD21_BASE_SCHEDULER_CONFIG, final_sigmas_type=final_sigmas_type)


def original_stage2(orig: types.SimpleNamespace, full: bool, steps: int, feeds: dict,
                    final_sigmas_type: str = "sigma_min") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One original stage-2 run from the original's conditions: (images [0,1], final latents, timesteps)."""
    from diffusers import DDIMScheduler

    noise = seeded_noise((1, 4, SIZE // 8, SIZE // 4), SEED)
    last: list[torch.Tensor] = []
    o, inputs = feeds["o"], feeds["inputs"]
    with posterior_mode():
        if full:  # stage2_batchtest_inpaint_model.py
            scheduler = original_unipc(final_sigmas_type)
            pipe = orig.stage2.Stage2_InpaintDiffusionPipeline(vae=feeds["o_vae"], unet=o["unet"], scheduler=scheduler)
            pipe.set_progress_bar_config(disable=True)
            images = pipe(height=SIZE, width=2 * SIZE, num_inference_steps=steps, guidance_scale=2.0, latents=noise,
                          output_type="pt", vae_image=inputs["vae_image"], s_img_proj_f=feeds["cond"],
                          st_pose_f=feeds["pose"], pred_t_img_embed=feeds["embed"][:, None],
                          callback=lambda i, t, lat: last.append(lat.clone())).images
        else:  # the demo notebook
            scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                      beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                                      steps_offset=1)
            pipe = orig.pcdms.PCDMsPipeline(vae=feeds["o_vae"], text_encoder=None, tokenizer=None, unet=o["unet"],
                                            scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                            requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            images = pipe(simg_mask_latents=feeds["masked"], mask=inputs["mask"], cond_pose=feeds["pose"],
                          prompt_embeds=feeds["cond"], negative_prompt_embeds=feeds["uncond"], height=SIZE,
                          width=2 * SIZE, num_inference_steps=steps, guidance_scale=2.0, latents=noise,
                          output_type="pt",
                          callback_on_step_end=lambda p, i, t, kw: last.append(kw["latents"].clone()) or {}).images
    return images, last[-1], scheduler.timesteps.float()


# ------------------------------------------------------------------------------------------ stage 3
@torch.no_grad()
def run_refine(orig: types.SimpleNamespace, paths: dict[str, Path], steps: int) -> None:
    """Stage 3 (Stage3_RefinedPipeline, UniPC, zeros uncond for tokens AND coarse latents, guidance_rescale 2.0)."""
    from transformers import CLIPImageProcessor

    name = "refine/unipc"
    model = load_refiner(str(paths["refine"]), dtype=torch.float32)
    vae, dino = pack_vae.load_vae(str(paths["vae"])), load_dinov2(str(paths["dino"]))
    o = original_modules(orig, paths["refine"], "refine")
    o_vae, o_dino = original_frozen(paths)
    source, coarse = random_images(5, 1, SIZE), random_images(6, 1, SIZE)
    clip = CLIPImageProcessor()(images=pil(source[0]), return_tensors="pt").pixel_values
    tokens = compare_dino(name, dino, o_dino, source, clip)
    o_features = o["image_proj"](tokens)
    row(name, "projected cond tokens", model.image_proj(encode_dino(dino, source, False)), o_features)
    settings = pack_refine.RefineSettings(steps=steps, guidance_scale=2.0, seed=SEED, size=SIZE, fit="stretch",
                                          guidance_rescale=pack_refine.PAPER_GUIDANCE_RESCALE,
                                          legacy_dino_interpolation=False)
    x = torch.randn(1, 8, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(7))
    t = torch.tensor(999)
    o_eps = o["unet"](x, t, encoder_hidden_states=o_features).sample
    row(name, "one UNet call (t=999)", model.unet(x, t, o_features), o_eps)
    noise = seeded_noise((1, 4, SIZE // 8, SIZE // 8), SEED)
    seen: list[torch.Tensor] = []
    with recording_decoder(pack_refine, seen):
        ours = pack_refine.refine(model, vae, dino, coarse, source, settings)
    for rescale in (2.0, 0.0):  # the stage-3 batch test passes guidance_rescale=guidance_scale (PCDMS.md §11)
        pipe = orig.stage3.Stage3_RefinedPipeline(vae=o_vae, unet=o["unet"], scheduler=original_unipc())
        pipe.set_progress_bar_config(disable=True)
        last: list[torch.Tensor] = []
        with posterior_mode():
            images = pipe(height=SIZE, width=SIZE, vae_gen_t_image=img_transform(pil(coarse[0])),
                          s_img_proj_f=o_features, num_images_per_prompt=1, guidance_scale=2.0,
                          guidance_rescale=rescale, latents=noise.clone(), num_inference_steps=steps, output_type="pt",
                          callback=lambda i, t, lat: last.append(lat.clone())).images
        if rescale:
            row(name, "final latents", seen[0], last[-1])
            row(name, "decoded image [0,1]", ours, images)
        else:
            row(name, "final latents, guidance_rescale 0", seen[0], last[-1], control=True)


# ------------------------------------------------------------------------------------------ stage 1
PRIOR_HEADS, PRIOR_HEAD_DIM, PRIOR_LAYERS = 2, 8, 2  # tiny; embedding_dim 1024 and 2 + 4 tokens stay (PCDMS.md §13)


def fixed_variance_noise(seed: int, embed_dim: int):
    """The original draws UnCLIP's per-step noise from the GLOBAL RNG; give it the stream the pack uses instead:
    one CPU generator seeded `seed` whose first (embed_dim,) draw was the initial embedding (batch 1)."""
    from diffusers.schedulers import scheduling_unclip

    stream = torch.Generator("cpu").manual_seed(seed)
    torch.randn((embed_dim,), generator=stream)
    def draw(shape, generator=None, device=None, dtype=None):
        return torch.randn(shape, generator=stream, dtype=dtype or torch.float32).to(device or "cpu")

    return patched(scheduling_unclip, "randn_tensor", draw)


def tiny_clip_vision() -> torch.nn.Module:
    """A random tiny CLIPVisionModelWithProjection (224 px input, as CLIP ViT-H/14), for the zero-image embedding."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
    return fx.randomise(CLIPVisionModelWithProjection(config), 12).eval()


@torch.no_grad()
def run_prior(orig: types.SimpleNamespace, paths: dict[str, Path], steps: int) -> None:
    """Stage 1 (Stage1_PriorPipeline, UnCLIP, guidance 0 as in the batch test, fixed initial and per-step noise)."""
    from diffusers import UnCLIPScheduler

    name = "prior/unclip"
    o_prior = orig.prior_model.Stage1_PriorTransformer(num_attention_heads=PRIOR_HEADS, num_layers=PRIOR_LAYERS,
                                                       attention_head_dim=PRIOR_HEAD_DIM, embedding_dim=1024,
                                                       num_embeddings=2)
    state = {k: v.half() for k, v in fx.randomise(o_prior, 8).state_dict().items()}  # fp16, as released
    torch.save({"module": state, "global_steps": 1}, paths["prior"])
    fx.write_with_config(paths["prior"], {"num_attention_heads": PRIOR_HEADS, "attention_head_dim": PRIOR_HEAD_DIM})
    model = load_prior(str(paths["prior"]))
    o_prior.load_state_dict({k: v.float() for k, v in read_checkpoint(str(paths["prior"])).state_dict.items()})
    generator = torch.Generator().manual_seed(9)
    embed = torch.randn(1, 1024, generator=generator)
    s_pose, t_pose = torch.rand(1, 36, generator=generator), torch.rand(1, 36, generator=generator)
    x = torch.randn(1, 1024, generator=generator)
    ours = model(x, torch.tensor(526), embed, s_pose, t_pose)
    theirs = o_prior(x[:, None], timestep=torch.tensor(526), proj_embedding=embed[:, None],
                     encoder_hidden_states=s_pose[:, None], encoder_hidden_states1=t_pose[:, None])
    theirs = theirs.predicted_image_embedding
    row(name, "one prior call (t=526)", ours, theirs)

    # the scheduler kandinsky-2-2-prior ships, as documented in PCDMS.md §7 (its hub file was not verified)
    scheduler = UnCLIPScheduler(num_train_timesteps=1000, variance_type="fixed_small_log", clip_sample=True,
                                clip_sample_range=10.0, prediction_type="sample", beta_schedule="squaredcos_cap_v2")
    clip = tiny_clip_vision()
    pipe = orig.prior_pipe.Stage1_PriorPipeline(prior=o_prior, image_encoder=clip, scheduler=scheduler,
                                                image_processor=None)
    pipe.set_progress_bar_config(disable=True)
    # The pipeline's unconditional output: the CLIP embedding of a zero image (`negative_image_embeds`).
    row(name, "zero-image embedding (negative_image_embeds)", encode_zero_image(clip), pipe.get_zero_embed(1, "cpu"))

    def original() -> torch.Tensor:
        return pipe(s_embed=embed[:, None], s_pose=s_pose[:, None], t_pose=t_pose[:, None], num_images_per_prompt=1,
                    num_inference_steps=steps, latents=seeded_noise((1, 1024), SEED), guidance_scale=0.0).image_embeds

    ours = pack_prior.sample_prior(model, embed, s_pose, t_pose, steps=steps, guidance=0.0, seed=SEED)
    with fixed_variance_noise(SEED, 1024):
        theirs = original()
    ours_scheduler = pack_prior.make_prior_scheduler()
    ours_scheduler.set_timesteps(steps)
    row(name, "timesteps", ours_scheduler.timesteps.float(), pipe.scheduler.timesteps.float())
    row(name, "predicted target embedding", ours, theirs)
    torch.manual_seed(SEED + 100)  # the original's own behaviour: step noise from the global RNG
    row(name, "step noise from another stream", ours, original(), control=True)


# ------------------------------------------------------------------------------------------ main
RUNNERS = {
    "simplified": lambda orig, paths, steps: run_stage2(orig, paths, False, steps),
    "full": lambda orig, paths, steps: run_stage2(orig, paths, True, steps),
    "refine": run_refine,
    "prior": run_prior,
}
ORIGINAL_STEPS = {"simplified": 50, "full": 20, "refine": 20, "prior": 20}  # demo notebook; batch-test scripts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of tencent-ailab/PCDMs (holds src/)")
    parser.add_argument("--steps", type=int, help="sampling steps of every path (default: the original scripts' "
                        f"{ORIGINAL_STEPS})")
    parser.add_argument("--paths", nargs="+", choices=list(RUNNERS), default=list(RUNNERS))
    args = parser.parse_args()
    for needed in ("src/pipelines/PCDMs_pipeline.py", "stage2_batchtest_inpaint_model.py"):
        if not (args.original / needed).is_file():
            parser.error(f"{args.original} is not a tencent-ailab/PCDMs checkout: {needed} is missing")
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=FutureWarning)  # the original's deprecated diffusers mixins
    start = time.perf_counter()
    orig = import_original(args.original.resolve())
    with tempfile.TemporaryDirectory() as folder:
        paths = write_files(Path(folder))
        for path in args.paths:
            RUNNERS[path](orig, paths, args.steps or ORIGINAL_STEPS[path])
    print(f"{'path':<16} {'quantity':<50} {'shape':<18} max |diff|")
    for path, quantity, shape, diff, control in ROWS:
        label = f"control: {quantity}" if control else quantity
        print(f"{path:<16} {label:<50} {str(shape):<18} {diff:.3e}{'  (should be > 0)' if control else ''}")
    steps = args.steps or {p: ORIGINAL_STEPS[p] for p in args.paths}
    print(f"steps {steps}, fp32 CPU, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
