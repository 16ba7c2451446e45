"""One PCDMs training step like the ORIGINAL scripts (tencent-ailab/PCDMs stage{1,2,3}_train_*.py), tiny, fp32 CPU.

    git --git-dir=<PCDMs mirror> archive HEAD src stage2_batchtest_inpaint_model.py stage2_train_inpaint_model.py \\
        stage3_train_refined_model.py | tar -x -C /tmp/pcdms_orig
    python bench/pcdm_train_parity.py --original /tmp/pcdms_orig [--stages full simplified refine prior]

Same weights (one file per stage in the original container, read by the pack's loaders and strictly into the
original classes), same batch, same random draws. The original side runs the scripts' own `SDModel.forward`
(stage 2, 3; executed from the scripts' source text), `Stage2_InapintUNet2DConditionModel` /
`Stage1_PriorTransformer`, the stock `DDPMScheduler.add_noise`, `CLIPImageProcessor` and `Dinov2Model`; the few
lines of each script's loop body (encode, noise, loss) are restated here literally, with its random calls
replaced by the draws our step made (our order: dropout, VAE posterior samples, noise, offset, timesteps).
The scripts' `main()` itself needs the hub models, DeepSpeed and GPUs. Prints max |difference| of the loss and
of the gradients of a few named parameters; a "control" row (another batch) must be clearly non-zero.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

_ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("pcdm_parity", _ROOT / "pcdm_parity.py")
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)  # bootstraps the pack and the tiny builders (parity.fx)
fx = parity.fx

from posetransfer.models.checkpoints import read_checkpoint  # noqa: E402
from posetransfer.models.encoders import load_clip_vision, load_dinov2  # noqa: E402
from posetransfer.models.pcdm import train as ours  # noqa: E402
from posetransfer.models.pcdm.stages import load_pcdm_checkpoint, load_prior, load_refiner  # noqa: E402
from posetransfer.models.vae import load_vae  # noqa: E402

SIZE, BATCH, SEED = fx.TINY_SIZE, 2, 5
ROWS: list[tuple[str, str, float, float]] = []


def row(stage: str, quantity: str, mine: torch.Tensor, theirs: torch.Tensor) -> None:
    diff = (mine.double() - theirs.double()).abs().max().item()
    ROWS.append((stage, quantity, diff, theirs.double().abs().max().item()))


def script_class(root: Path, script: str, name: str, scope: dict) -> type:
    """A class of an original training script, executed from its source text (the script imports the hub)."""
    source = (root / script).read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name)
    exec(compile(ast.Module([node], []), script, "exec"), scope)  # noqa: S102
    return scope[name]


def bare(cls: type, **parts: torch.nn.Module) -> torch.nn.Module:
    """An instance of an original class with its sub-modules given (its __init__ hard-codes full-size widths)."""
    module = cls.__new__(cls)
    torch.nn.Module.__init__(module)
    for key, value in parts.items():
        setattr(module, key, value)
    return module


def items(seed: int) -> list[ours.PairItem]:
    return [ours.PairItem(*(parity.random_images(seed * 10 + k, 1, SIZE)[0] for k in range(4)), index=i)
            for i, seed in enumerate((seed, seed + 1))]


class Draws:
    """Replays the draws of our step, in our order, from a generator with the same seed."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def keep(self) -> torch.Tensor:
        return (torch.rand(BATCH, generator=self.generator) >= ours.CONDITION_DROPOUT).float().view(-1, 1, 1, 1)

    def posterior(self, vae: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        dist = vae.encode(images).latent_dist
        draw = torch.randn(dist.mean.shape, generator=self.generator)
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        replay = lambda self, generator=None: self.mean + self.std * draw  # noqa: E731
        with parity.patched(DiagonalGaussianDistribution, "sample", replay):
            return dist.sample() * vae.config.scaling_factor  # the script's line

    def noise(self, like: torch.Tensor, offset_shape: tuple[int, ...]) -> torch.Tensor:
        noise = torch.randn(like.shape, generator=self.generator)  # torch.randn_like(latents)
        return noise + ours.NOISE_OFFSET * torch.randn(offset_shape, generator=self.generator)

    def timesteps(self) -> torch.Tensor:
        return torch.randint(0, 1000, (BATCH,), generator=self.generator).long()


def clip_pixels(images: torch.Tensor) -> torch.Tensor:
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor()
    return torch.cat([processor(images=parity.pil(i), return_tensors="pt").pixel_values for i in images])


def compare_grads(stage: str, net: torch.nn.Module, named: dict[str, torch.nn.Module], names: dict[str, str]) -> None:
    mine = dict(net.named_parameters())
    for ours_name, theirs_name in names.items():
        owner, _, param = theirs_name.partition(":")
        theirs = dict(named[owner].named_parameters())[param]
        row(stage, f"grad {ours_name}", mine[ours_name].grad, theirs.grad)


def run_stage2(orig, root: Path, paths: dict[str, Path], full: bool) -> None:
    from diffusers import DDPMScheduler

    stage = "stage2 full" if full else "stage2 simplified"
    kind = "full" if full else "simplified"
    clip = load_clip_vision(str(paths["clip"])) if full else None
    objective = ours.Stage2Objective(load_pcdm_checkpoint(str(paths[kind])), load_vae(str(paths["vae"])),
                                     load_dinov2(str(paths["dino"])), clip, legacy_dino_interpolation=False)
    net = objective.trainable()
    batch = items(1)
    loss = objective.loss(net, batch, torch.Generator().manual_seed(SEED))["loss"]
    loss.backward()

    o = parity.original_modules(orig, paths[kind], kind)
    o_vae, o_dino = parity.original_frozen(paths)
    o_clip = load_clip_vision(str(paths["clip"])) if full else None  # stock transformers class, same file
    sd_cls = script_class(root, "stage2_train_inpaint_model.py", "SDModel", {"torch": torch, "nn": torch.nn})
    sd_model = bare(sd_cls, image_proj_model_p=o["image_proj"], unet=o["unet"], pose_proj=o["pose_proj"]).train()
    if not full:  # the simplified release (no training script): the same step without the CLIP token and class label
        def forward(noisy_latents, timesteps, simg_f_p, timg_f_g, pose_f):
            tokens = sd_model.image_proj_model_p(simg_f_p)
            return sd_model.unet(noisy_latents, timesteps, encoder_hidden_states=tokens,
                                 my_pose_cond=sd_model.pose_proj(pose_f)).sample
        sd_model.forward = forward
    d = Draws(SEED)
    source = torch.stack([i.source for i in batch])
    target = torch.stack([i.target for i in batch])
    keep_p, keep_g = d.keep(), d.keep()
    st_img = parity.img_transform  # ToTensor + Normalize per PIL canvas
    canvas = torch.cat([st_img(parity.pil(torch.cat([s, t], -1))) for s, t in zip(source, target)])
    masked = torch.cat([st_img(parity.pil(torch.cat([s, torch.zeros_like(s)], -1))) for s in source])
    poses = torch.cat([st_img(parity.pil(torch.cat([i.source_pose, i.target_pose], -1))) for i in batch])
    with torch.no_grad():
        latents = d.posterior(o_vae, canvas)
        masked_latents = d.posterior(o_vae, masked)
        side = SIZE // 8
        mask = torch.cat([torch.ones(BATCH, 1, side, side), torch.zeros(BATCH, 1, side, side)], dim=3)
        cond_p = o_dino(clip_pixels(source) * keep_p).last_hidden_state
        cond_g = o_clip(clip_pixels(target) * keep_g).image_embeds.unsqueeze(1) if full else None
    noise = d.noise(latents, (latents.shape[0], latents.shape[1], 1, 1))
    timesteps = d.timesteps()
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    noisy = torch.cat([scheduler.add_noise(latents, noise, timesteps), mask, masked_latents], dim=1)
    pred = sd_model(noisy, timesteps, cond_p, cond_g, poses)
    theirs = F.mse_loss(pred.float(), noise.float(), reduction="mean")
    theirs.backward()
    row(stage, "loss", loss, theirs)
    names = {"model.unet.unet.conv_in.weight": "unet:conv_in.weight",
             "model.unet.unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight":
                 "unet:down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
             "model.unet.unet.conv_out.weight": "unet:conv_out.weight",
             "model.pose_proj.conv_in.weight": "pose_proj:conv_in.weight",
             "model.image_proj.net.0.weight": "image_proj:net.0.weight"}
    if full:
        names["model.unet.unet.class_embedding.linear_1.weight"] = "unet:class_embedding.linear_1.weight"
    compare_grads(stage, net, o, names)
    control = objective.loss(net, items(7), torch.Generator().manual_seed(SEED))["loss"]
    row(stage, "control: loss of another batch (should be > 0)", control, theirs)


def run_refine(orig, root: Path, paths: dict[str, Path]) -> None:
    from diffusers import DDPMScheduler

    stage = "stage3"
    objective = ours.Stage3Objective(load_refiner(str(paths["refine"])), load_vae(str(paths["vae"])),
                                     load_dinov2(str(paths["dino"])), legacy_dino_interpolation=False)
    net = objective.trainable()
    batch = items(2)
    for item in batch:
        item.coarse = parity.random_images(99 + item.index, 1, SIZE)[0]
    loss = objective.loss(net, batch, torch.Generator().manual_seed(SEED))["loss"]
    loss.backward()

    o = parity.original_modules(orig, paths["refine"], "refine")
    o_vae, o_dino = parity.original_frozen(paths)
    sd_cls = script_class(root, "stage3_train_refined_model.py", "SDModel", {"torch": torch, "nn": torch.nn})
    sd_model = bare(sd_cls, image_proj_model_p=o["image_proj"], unet=o["unet"]).train()
    d = Draws(SEED)
    keep = d.keep()
    target = torch.cat([parity.img_transform(parity.pil(i.target)) for i in batch])
    coarse = torch.cat([parity.img_transform(parity.pil(i.coarse)) for i in batch]) * keep  # dataset's zeroing
    with torch.no_grad():
        latents = d.posterior(o_vae, target)
        gen_latents = d.posterior(o_vae, coarse)
        cond_p = o_dino(clip_pixels(torch.stack([i.source for i in batch]))).last_hidden_state
    noise = d.noise(latents, (latents.shape[0], latents.shape[1], 1, 1))
    timesteps = d.timesteps()
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    noisy = torch.cat([scheduler.add_noise(latents, noise, timesteps), gen_latents], dim=1)
    theirs = F.mse_loss(sd_model(noisy, timesteps, cond_p).float(), noise.float(), reduction="mean")
    theirs.backward()
    row(stage, "loss", loss, theirs)
    compare_grads(stage, net, o, {"model.unet.unet.conv_in.weight": "unet:conv_in.weight",
                                  "model.unet.unet.conv_out.weight": "unet:conv_out.weight",
                                  "model.image_proj.net.4.weight": "image_proj:net.4.weight"})


def run_prior(orig, root: Path, paths: dict[str, Path]) -> None:
    from diffusers import DDPMScheduler

    stage = "stage1"
    heads, layers, head_dim = parity.PRIOR_HEADS, parity.PRIOR_LAYERS, parity.PRIOR_HEAD_DIM
    o_prior = orig.prior_model.Stage1_PriorTransformer(num_attention_heads=heads, num_layers=layers,
                                                       attention_head_dim=head_dim, embedding_dim=1024,
                                                       num_embeddings=2)
    state = {k: v.half() for k, v in fx.randomise(o_prior, 8).state_dict().items()}
    torch.save({"module": state}, paths["prior"])
    fx.write_with_config(paths["prior"], {"num_attention_heads": heads, "attention_head_dim": head_dim})
    o_prior.load_state_dict({k: v.float() for k, v in read_checkpoint(str(paths["prior"])).state_dict.items()})
    o_prior.train()
    clip = load_clip_vision(str(paths["clip1024"]))
    objective = ours.Stage1Objective(load_prior(str(paths["prior"])), clip)
    net = objective.trainable()
    batch = items(3)
    keypoints = torch.rand(BATCH, 2, 36, generator=torch.Generator().manual_seed(4))
    for item, (s, t) in zip(batch, keypoints):
        item.source_keypoints, item.target_keypoints = s, t
    loss = objective.loss(net, batch, torch.Generator().manual_seed(SEED))["loss"]
    loss.backward()

    d = Draws(SEED)
    keep_s, keep_sp, keep_tp = d.keep(), d.keep().view(-1, 1, 1), d.keep().view(-1, 1, 1)
    s_pose, t_pose = keypoints[:, 0:1] * keep_sp, keypoints[:, 1:2] * keep_tp  # (B,1,36), the txt reader's shape
    with torch.no_grad():
        source_pixels = clip_pixels(torch.stack([i.source for i in batch])) * keep_s
        img_encoder_output = clip(source_pixels).image_embeds.unsqueeze(1)
        image_embeds = clip(clip_pixels(torch.stack([i.target for i in batch]))).image_embeds.unsqueeze(1)
        noise = torch.randn(image_embeds.shape, generator=d.generator)
        offset_shape = (image_embeds.shape[0], image_embeds.shape[1], 1)
        noise += ours.NOISE_OFFSET * torch.randn(offset_shape, generator=d.generator)
        timesteps = d.timesteps()
        image_embeds = (image_embeds - torch.tensor(-0.016)) / torch.tensor(0.415)
        scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample")
        noisy_x = scheduler.add_noise(image_embeds, noise, timesteps)
        target = image_embeds.squeeze(1)
    pred = o_prior(noisy_x, timestep=timesteps, proj_embedding=img_encoder_output, encoder_hidden_states=s_pose,
                   encoder_hidden_states1=t_pose, attention_mask=None).predicted_image_embedding
    theirs = F.mse_loss(pred.float(), target.float(), reduction="mean")
    theirs.backward()
    row(stage, "loss", loss, theirs)
    compare_grads(stage, net, {"prior": o_prior}, {
        "prior.proj_in.weight": "prior:proj_in.weight",
        "prior.pose_encoder.net.0.weight": "prior:pose_encoder.net.0.weight",
        "prior.transformer_blocks.0.attn1.to_q.weight": "prior:transformer_blocks.0.attn1.to_q.weight",
        "prior.proj_to_clip_embeddings.weight": "prior:proj_to_clip_embeddings.weight"})


def clip_file(path: Path, projection: int) -> Path:
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              patch_size=14, image_size=224, projection_dim=projection, hidden_act="gelu")
    model = fx.randomise(CLIPVisionModelWithProjection(config), 8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fx.write_with_config(path, {"num_attention_heads": 2})
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of tencent-ailab/PCDMs")
    parser.add_argument("--stages", nargs="+", choices=("full", "simplified", "refine", "prior"),
                        default=["full", "simplified", "refine", "prior"])
    args = parser.parse_args()
    for needed in ("src/models/stage2_inpaint_unet_2d_condition.py", "stage2_train_inpaint_model.py",
                   "stage3_train_refined_model.py", "stage2_batchtest_inpaint_model.py"):
        if not (args.original / needed).is_file():
            parser.error(f"{args.original} is not a tencent-ailab/PCDMs checkout: {needed} is missing")
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=FutureWarning)
    start = time.perf_counter()
    root = args.original.resolve()
    orig = parity.import_original(root)
    with tempfile.TemporaryDirectory() as folder:
        paths = parity.write_files(Path(folder))
        paths["clip"] = clip_file(Path(folder) / "clip.safetensors", 32)
        paths["clip1024"] = clip_file(Path(folder) / "clip1024.safetensors", 1024)
        for stage in args.stages:
            if stage in ("full", "simplified"):
                run_stage2(orig, root, paths, stage == "full")
            elif stage == "refine":
                run_refine(orig, root, paths)
            else:
                run_prior(orig, root, paths)
    print(f"{'stage':<18} {'quantity':<72} {'max |diff|':>11} {'max |value|':>11}")
    for stage, quantity, diff, scale in ROWS:
        print(f"{stage:<18} {quantity:<72} {diff:11.3e} {scale:11.3e}")
    print(f"fp32 CPU, batch {BATCH}, {SIZE} px squares, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
