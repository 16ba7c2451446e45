"""PCDMs stage 1 (prior) and stage 3 (refine) nodes, their loaders, and one node running all three stages."""
from __future__ import annotations

import torch

from ..models.batching import chunk_count
from ..models.encoders import encode_clip_embeds
from ..models.images import bchw_to_comfy, comfy_to_bchw, pil_resize
from ..models.pcdm import prior as prior_pipeline
from ..models.pcdm import refine as refine_pipeline
from ..models.pcdm.inpaint import InpaintSettings
from ..models.pcdm.prior import sample_prior
from ..models.pcdm.refine import PAPER_GUIDANCE_RESCALE, RefineSettings, refine
from ..models.pcdm.stages import load_prior, load_refiner
from ..pose.conditions import POSE_CONVENTIONS, pose_coordinates
from ..pose.formats import frames_from_pose_keypoint
from .comfy_adapter import io, load_models, make_schema, progress_callback, to_output
from .inputs import (PCDMS_CATEGORY, ClipVisionModel, Dinov2Model, ModelFileInput, ModelLoader, ModelReader,
                     NodeText, PcdmEmbedding, PcdmModel, PoseKeypoint, PriorModel, RefinerModel, SdVae,
                     pcdm_sampling_inputs, seed_input, sequential_guidance_input, square_input)
from .pcdm import pose_input, run_inpaint

PRIOR_CANVAS = 512  # the stage-1 script resized the source to 512 x 512 before CLIP's own 224 preprocessing
POSE_CONVENTION_TIP = ("How the 18 body points become the prior's 36 numbers. The released prior's convention is "
                       "undocumented; 'fraction' (x/width, y/height of the pose canvas, missing points 0) is our "
                       "documented default. Others: centred -1..1, pixels of a 512/256 canvas, DeepFashion 176x256 pixels.")
GUIDANCE_RESCALE_TIP = ("diffusers' guidance rescale (0 = plain classifier-free guidance, recommended). The paper's "
                        f"stage-3 test script passed {PAPER_GUIDANCE_RESCALE} (its guidance scale), which extrapolates "
                        f"past the rescaled prediction; set {PAPER_GUIDANCE_RESCALE} only to reproduce the paper's numbers.")
STRENGTH_TIP = ("1.0 = the original: start from pure noise, the coarse image only conditions the model. Lower values "
                "start from the coarse image noised to that level and keep more of it.")
STAGE_FILES_HINT = ("Put the paper's stage files from the tencent-ailab/PCDMs README (Google Drive: stage1_checkpoints/512/"
                    "s1_512.pt, stage3_checkpoints/512/s3_512.pt) in models/pcdms.")


# ------------------------------------------------------------------------------------------- loaders
def _stage_file(what: str, read: ModelReader) -> ModelFileInput:
    """A paper stage file (`what`: which stage) from models/pcdms; read at the widget's dtype by its own reader,
    which keeps some heads in float32 (so no `cast_after`)."""
    return ModelFileInput("ckpt_name", "pcdms", f"{what} file in models/pcdms (DeepSpeed .pt as released, or "
                          ".safetensors).", read, hint=STAGE_FILES_HINT)


class PCDMPriorLoader(ModelLoader):
    TEXT = NodeText("PoseTransferPCDMPriorLoader", "PoseTransfer PCDM Prior Loader", PCDMS_CATEGORY,
                    "Loads the PCDMs stage-1 prior (s1_512.pt / s1_256.pt, and the mislabeled s2_256.pt) from "
                    "models/pcdms. The kind is read from the weights, never from the file name.",
                    ("pcdms stage 1", "pose prior"))
    FILE = _stage_file("Stage-1 prior", load_prior)
    OUTPUT = PriorModel.Output(display_name="prior", tooltip="The stage-1 prior transformer.")
    ORIGINAL_PRECISION = "fp32"
    IS_EXPERIMENTAL = True


class PCDMRefinerLoader(ModelLoader):
    TEXT = NodeText("PoseTransferPCDMRefinerLoader", "PoseTransfer PCDM Refiner Loader", PCDMS_CATEGORY,
                    "Loads a PCDMs stage-3 refinement model (s3_512.pt / s3_256.pt) from models/pcdms.",
                    ("pcdms stage 3", "refine model"))
    FILE = _stage_file("Stage-3", load_refiner)
    OUTPUT = RefinerModel.Output(display_name="refiner", tooltip="The stage-3 UNet with its appearance projection.")


# ------------------------------------------------------------------------------------------- glue
def run_prior(prior, clip_vision, source_image: torch.Tensor, source_pose: list, target_pose: list, steps: int,
              guidance: float, seed: int, pose_convention: str) -> torch.Tensor:
    """Stage 1 on ComfyUI values: IMAGE [B,H,W,C] + POSE_KEYPOINT lists -> (B, 1024) target CLIP-H embeddings."""
    source = comfy_to_bchw(source_image, "source_image")
    # A source pose without a canvas size was drawn on the source image.
    source_frames = frames_from_pose_keypoint(source_pose, (source.shape[-1], source.shape[-2]))
    source_xy = pose_coordinates(source_frames, pose_convention, "source_pose")
    target_xy = pose_coordinates(frames_from_pose_keypoint(target_pose), pose_convention, "target_pose")
    dtype = prior.model.proj_in.weight.dtype
    load_models([prior, clip_vision], prior_pipeline.memory_estimate(len(target_xy), dtype))
    embeds = encode_clip_embeds(clip_vision.model, pil_resize(source, (PRIOR_CANVAS, PRIOR_CANVAS)))
    return sample_prior(prior.model, embeds, source_xy, target_xy, steps=steps, guidance=guidance, seed=seed,
                        progress=progress_callback(steps))


def run_refine(refiner, dinov2, vae, coarse: torch.Tensor, source: torch.Tensor, settings: RefineSettings,
               **stage2) -> torch.Tensor:
    """Stage 3 with ComfyUI's memory management and progress bar: [B,3,H,W] in and out; `stage2` passes a stage-2
    result's square, fit and tokens on (see `refine`)."""
    batch = coarse.shape[0]
    load_models([refiner, dinov2, vae], refine_pipeline.memory_estimate(settings, batch, refiner.model.dtype))
    total = settings.steps * chunk_count(batch, settings.chunk_size)
    return refine(refiner.model, vae.model, dinov2.model, coarse, source, settings, progress_callback(total), **stage2)


# ------------------------------------------------------------------------------------------- stage nodes
def _pose_convention_input() -> io.Combo.Input:
    return io.Combo.Input("pose_convention", options=list(POSE_CONVENTIONS), default="fraction", tooltip=POSE_CONVENTION_TIP)


def _rescale_input() -> io.Float.Input:
    return io.Float.Input("guidance_rescale", default=0.0, min=0.0, max=2.0, step=0.05, tooltip=GUIDANCE_RESCALE_TIP)


def _strength_input(name: str) -> io.Float.Input:
    return io.Float.Input(name, default=1.0, min=0.05, max=1.0, step=0.05, tooltip=STRENGTH_TIP)


def _prior_sampling_inputs(steps_id: str, steps_tip: str, guidance_id: str, guidance_tip: str) -> list:
    """The prior's steps and guidance: the paper's 20 UnCLIP steps, and no guidance as the original."""
    return [io.Int.Input(steps_id, default=20, min=2, max=200, tooltip=steps_tip),
            io.Float.Input(guidance_id, default=0.0, min=0.0, max=20.0, step=0.1, tooltip=guidance_tip)]


def _source_inputs() -> list:
    """The source person and its pose, as the prior reads them."""
    return [io.Image.Input("source_image", tooltip="The person to re-pose (one image, or one per target pose)."),
            PoseKeypoint.Input("source_pose", tooltip="Body keypoints of the source image (e.g. from DWPose).")]


def _encoder_inputs() -> list:
    """The appearance encoder and the VAE of stages 2 and 3."""
    return [Dinov2Model.Input("dinov2", tooltip="DINOv2-giant image encoder."),
            SdVae.Input("vae", tooltip="The Stable Diffusion 2.1-base VAE.")]


class PCDMPrior(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferPCDMPrior",
            display_name="PoseTransfer PCDM Prior",
            category=PCDMS_CATEGORY,
            description="PCDMs stage 1 (experimental on your own data): predicts the CLIP ViT-H/14 embedding of the "
                        "person in the target pose from the source image's embedding and both poses. Feed it to the "
                        "full stage-2 inpainting model.",
            search_aliases=["pcdms stage 1", "target embedding"],
            is_experimental=True,
            advanced=("pose_convention",),
            inputs=[
                PriorModel.Input("prior", tooltip="From PoseTransfer PCDM Prior Loader."),
                ClipVisionModel.Input("clip_vision", tooltip="CLIP ViT-H/14 vision model with projection (the IPAdapter one)."),
                *_source_inputs(),
                PoseKeypoint.Input("target_pose", tooltip="Body keypoints of each wanted pose; one embedding per frame."),
                *_prior_sampling_inputs("steps", "UnCLIP steps (the paper: 20).", "guidance",
                                        "0 (or anything up to 1) = no guidance, the original's setting. Above 1: "
                                        "classifier-free guidance against a zero source embedding (our extension)."),
                seed_input(),
                _pose_convention_input(),
            ],
            outputs=[PcdmEmbedding.Output(display_name="embedding",
                                          tooltip="Predicted target CLIP-H embeddings (B, 1024) for the full stage-2 model.")],
        )

    @classmethod
    def execute(cls, prior, clip_vision, source_image, source_pose, target_pose, steps: int = 20,
                guidance: float = 0.0, seed: int = 0, pose_convention: str = "fraction") -> io.NodeOutput:
        embeds = run_prior(prior, clip_vision, source_image, source_pose, target_pose, steps, guidance, seed, pose_convention)
        return io.NodeOutput(to_output(embeds))


class PCDMRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferPCDMRefine",
            display_name="PoseTransfer PCDM Refine",
            category=PCDMS_CATEGORY,
            description="PCDMs stage 3: re-denoises a coarse stage-2 result conditioned on the source's DINOv2 "
                        "features to restore texture and identity.",
            search_aliases=["pcdms stage 3", "refine pose transfer"],
            advanced=("guidance_rescale", "size", "sequential_guidance"),
            inputs=[
                RefinerModel.Input("refiner", tooltip="From PoseTransfer PCDM Refiner Loader."),
                *_encoder_inputs(),
                io.Image.Input("coarse_image", tooltip="Stage-2 results to refine (any size; returned at that size)."),
                io.Image.Input("source_image", tooltip="The source person (one image, or one per coarse image)."),
                *pcdm_sampling_inputs(steps=20, scheduler="unipc"),
                _rescale_input(),
                _strength_input("strength"),
                square_input("size", minimum=64, maximum=2048),
                sequential_guidance_input(),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="Refined images, at the coarse images' size.")],
        )

    @classmethod
    def execute(cls, refiner, dinov2, vae, coarse_image, source_image, steps: int = 20, guidance: float = 2.0,
                scheduler: str = "unipc", seed: int = 0, fit: str = "pad", guidance_rescale: float = 0.0,
                strength: float = 1.0, size: int = 512, sequential_guidance: bool = False) -> io.NodeOutput:
        settings = RefineSettings(steps=steps, guidance_scale=guidance, guidance_rescale=guidance_rescale,
                                  strength=strength, scheduler=scheduler, seed=seed, size=size, fit=fit,
                                  sequential_guidance=sequential_guidance)
        refined = run_refine(refiner, dinov2, vae, comfy_to_bchw(coarse_image, "coarse_image"),
                             comfy_to_bchw(source_image, "source_image"), settings)
        return io.NodeOutput(to_output(bchw_to_comfy(refined)))


class PCDMThreeStage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferPCDMThreeStage",
            display_name="PoseTransfer PCDM Three Stages",
            category=PCDMS_CATEGORY,
            description="The paper's full PCDMs pipeline in one node: prior (target CLIP-H embedding) -> full stage-2 "
                        "inpainting -> stage-3 refinement. Each stage's models are loaded through ComfyUI's memory "
                        "management in turn, so the chain fits where one stage fits.",
            search_aliases=["pcdms", "pose transfer", "three stage", "prior inpaint refine"],
            is_experimental=True,
            advanced=("pose_convention", "guidance_rescale", "resolution", "sequential_guidance"),
            inputs=[
                PriorModel.Input("prior", tooltip="From PoseTransfer PCDM Prior Loader (s1_512.pt)."),
                ClipVisionModel.Input("clip_vision", tooltip="CLIP ViT-H/14 vision model with projection."),
                PcdmModel.Input("pcdm_model", tooltip="The FULL stage-2 model (s2_512.pt) from PoseTransfer PCDM Loader."),
                RefinerModel.Input("refiner", tooltip="From PoseTransfer PCDM Refiner Loader (s3_512.pt)."),
                *_encoder_inputs(),
                *_source_inputs(),
                PoseKeypoint.Input("target_pose", tooltip="Keypoints of each wanted pose; a batch of frames gives a batch."),
                *pcdm_sampling_inputs(steps=20, scheduler="unipc"),
                *_prior_sampling_inputs("prior_steps", "UnCLIP steps of the prior (the paper: 20).", "prior_guidance",
                                        "Prior guidance: 0 = the original (none); above 1 = our zero-embedding CFG."),
                _pose_convention_input(),
                _strength_input("refine_strength"),
                _rescale_input(),
                square_input("resolution"),
                sequential_guidance_input(),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="Refined results (stage 3), at the target poses' size."),
                io.Image.Output(display_name="coarse_image", tooltip="Stage-2 results before refinement."),
                PcdmEmbedding.Output(display_name="embedding", tooltip="The prior's target CLIP-H embeddings (B, 1024)."),
            ],
        )

    @classmethod
    def execute(cls, prior, clip_vision, pcdm_model, refiner, dinov2, vae, source_image, source_pose, target_pose,
                steps: int = 20, guidance: float = 2.0, scheduler: str = "unipc", seed: int = 0, fit: str = "pad",
                prior_steps: int = 20, prior_guidance: float = 0.0, pose_convention: str = "fraction",
                refine_strength: float = 1.0, guidance_rescale: float = 0.0, resolution: int = 512,
                sequential_guidance: bool = False) -> io.NodeOutput:
        embeds = run_prior(prior, clip_vision, source_image, source_pose, target_pose, prior_steps, prior_guidance,
                           seed, pose_convention)
        source = comfy_to_bchw(source_image, "source_image")
        # both UNet stages sample alike (SamplingSettings); stage 3 adds its rescale and strength
        sampling = dict(steps=steps, guidance_scale=guidance, scheduler=scheduler, seed=seed, fit=fit, size=resolution,
                        sequential_guidance=sequential_guidance)
        inpaint_settings = InpaintSettings(**sampling)
        coarse = run_inpaint(pcdm_model, dinov2, vae, source, pose_input(None, source_pose, "source_pose",
                                                                          tuple(source.shape[-2:])),
                             pose_input(None, target_pose, "target_pose"), inpaint_settings, embeds)
        refine_settings = RefineSettings(**sampling, guidance_rescale=guidance_rescale, strength=refine_strength)
        # Stage 3 takes stage 2's square and DINOv2 tokens as they are: no trip through the target size and 8 bits,
        # no second DINOv2 pass over the same source square.
        refined = run_refine(refiner, dinov2, vae, coarse.square, source, refine_settings, coarse_fit=coarse.fit,
                             source_tokens=coarse.source_tokens)
        return io.NodeOutput(to_output(bchw_to_comfy(refined)), to_output(bchw_to_comfy(coarse.images)),
                             to_output(embeds))


NODES = [PCDMPriorLoader, PCDMRefinerLoader, PCDMPrior, PCDMRefine, PCDMThreeStage]
