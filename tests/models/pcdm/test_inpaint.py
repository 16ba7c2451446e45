"""Stage-2 pipeline: the original's conventions checked explicitly, determinism, batches, errors."""
import copy

import numpy as np
import pytest
import torch

from posetransfer.models.encoders import encode_dino
from posetransfer.models.images import to_signed
from posetransfer.models.pcdm.inpaint import InpaintSettings, canvas_mask, inpaint
from posetransfer.models.vae import encode_latents
from posetransfer.pose.conditions import pcdms_renders
from posetransfer.pose.formats import frames_from_pose_keypoint

from .conftest import TINY_SIZE

# A standing person, OpenPose-18 pixels of a 512 x 512 canvas like the PCDMs demo poses (None = not visible).
DEMO_BODY = [(256, 80), (256, 140), (210, 140), (196, 220), (188, 290), (302, 140), (316, 220), (324, 290),
             (226, 300), (226, 390), (226, 470), (286, 300), (286, 390), (286, 470), (246, 66), (266, 66), None, None]


class Spy(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.inner(*args, **kwargs)


def _spied(model):
    model = copy.copy(model)  # shallow: shares weights, own submodule table
    model._modules = dict(model._modules)
    model.unet, model.pose_proj = Spy(model.unet), Spy(model.pose_proj)
    return model


def _images(seed, batch=1, height=TINY_SIZE, width=TINY_SIZE):
    # 8-bit values, like every loaded image (the square fit resizes with PIL on uint8)
    return torch.randint(0, 256, (batch, 3, height, width), generator=torch.Generator().manual_seed(seed)) / 255.0


def _settings(**kw):
    return InpaintSettings(**{"steps": 3, "size": TINY_SIZE, "seed": 7, **kw})


def test_mask_is_one_on_source_half():
    mask = canvas_mask(4, 8)
    assert mask[..., :4].eq(1).all() and mask[..., 4:].eq(0).all()


def test_simplified_conventions(stage2_parts):
    simplified, _, vae, dino = stage2_parts
    model = _spied(simplified)
    source, target = _images(0), _images(1)
    target[..., 10:20, 10:20] = 1.0  # a white patch in a pose render
    inpaint(model, vae, dino, source, _images(2), target, _settings(steps=50))
    (x, t, ), kw = model.unet.calls[0]
    assert x.shape == (2, 9, 8, 16)  # [uncond, cond] x (latents 4 + mask 1 + masked latents 4)
    assert x[:, 4, :, :8].eq(1).all() and x[:, 4, :, 8:].eq(0).all()  # mask = 1 on the SOURCE half
    canvas = to_signed(torch.cat([source, torch.zeros_like(source)], -1))
    torch.testing.assert_close(x[:, 5:], encode_latents(vae, canvas).expand(2, -1, -1, -1))
    tokens = kw["encoder_hidden_states"]
    projected_zero = simplified.image_proj(torch.zeros(1, 24))
    torch.testing.assert_close(tokens[0], projected_zero.expand(tokens.shape[1], -1))  # uncond: projection of 0
    assert tokens[0].abs().max() > 0.1
    torch.testing.assert_close(tokens[1], simplified.image_proj(encode_dino(dino, source))[0])
    pose = kw["pose_residual"]
    assert torch.equal(pose[0], pose[1])  # one pose residual for both halves
    (pose_canvas,), _ = model.pose_proj.calls[0]
    assert pose_canvas.shape == (1, 3, TINY_SIZE, 2 * TINY_SIZE)
    assert pose_canvas.min() >= -1 and pose_canvas.max() == 1  # [-1, 1], white -> +1
    assert pose_canvas[..., TINY_SIZE + 10:TINY_SIZE + 20, TINY_SIZE + 10:TINY_SIZE + 20].eq(1).all()
    assert "class_labels" not in kw
    assert [call[0][1].item() for call in model.unet.calls] == list(range(981, 0, -20))  # DDIM leading + offset


def test_full_model_conventions(stage2_parts):
    _, full, vae, dino = stage2_parts
    model = _spied(full)
    embed = torch.randn(1, 32)
    inpaint(model, vae, dino, _images(0), _images(2), _images(1), _settings(scheduler="unipc"), target_embeds=embed)
    _, kw = model.unet.calls[0]
    tokens, labels = kw["encoder_hidden_states"], kw["class_labels"]
    assert tokens.shape[1] == 1 + (224 // 14) ** 2 + 1  # DINO tokens + the target embedding
    assert tokens[0].eq(0).all() and labels[0].eq(0).all()  # literal zeros for the uncond half
    torch.testing.assert_close(tokens[1, -1], embed[0])  # the target embedding is the last cond token ...
    torch.testing.assert_close(labels[1], embed[0])  # ... and the cond class label


def test_deterministic_and_independent_of_batch_and_chunks(stage2_parts):
    simplified, _, vae, dino = stage2_parts
    source, source_pose, targets = _images(0), _images(2), _images(1, batch=3)
    first = inpaint(simplified, vae, dino, source, source_pose, targets, _settings(chunk_size=3))
    again = inpaint(simplified, vae, dino, source, source_pose, targets, _settings(chunk_size=3))
    assert torch.equal(first.images, again.images)
    chunked = inpaint(simplified, vae, dino, source, source_pose, targets, _settings(chunk_size=1))
    torch.testing.assert_close(chunked.images, first.images, atol=1e-5, rtol=0)
    alone = inpaint(simplified, vae, dino, source, source_pose, targets[1:2], _settings(seed=8))  # item 1 = seed + 1
    torch.testing.assert_close(alone.images[0], first.images[1], atol=1e-5, rtol=0)
    other_seed = inpaint(simplified, vae, dino, source, source_pose, targets[:1], _settings(seed=8))
    assert (other_seed.images[0] - first.images[0]).abs().max() > 1e-3


def test_any_aspect_in_and_out(stage2_parts):
    simplified, _, vae, dino = stage2_parts
    source = _images(0, height=80, width=56)
    result = inpaint(simplified, vae, dino, source, _images(2, height=40, width=28), _images(1, batch=2, height=48,
                     width=80), _settings(fit="pad"))
    assert result.images.shape == (2, 3, 48, 80) and result.canvas.shape == (2, 3, TINY_SIZE, 2 * TINY_SIZE)
    assert 0 <= result.images.min() and result.images.max() <= 1


def test_bad_inputs_are_explained(stage2_parts):
    simplified, full, vae, dino = stage2_parts
    with pytest.raises(ValueError, match="source batch is 2"):
        inpaint(simplified, vae, dino, _images(0, 2), _images(2, 2), _images(1, 3), _settings())
    with pytest.raises(ValueError, match="source pose batch"):
        inpaint(simplified, vae, dino, _images(0, 1), _images(2, 2), _images(1, 2), _settings())
    with pytest.raises(ValueError, match="same aspect ratio"):
        inpaint(simplified, vae, dino, _images(0), _images(2, width=32), _images(1), _settings())
    with pytest.raises(ValueError, match="stage-1 prior"):
        inpaint(full, vae, dino, _images(0), _images(2), _images(1), _settings())
    with pytest.raises(ValueError, match="simplified"):
        inpaint(simplified, vae, dino, _images(0), _images(2), _images(1), _settings(), target_embeds=torch.zeros(1, 32))


def test_one_source_per_pose_batch(stage2_parts):
    simplified, _, vae, dino = stage2_parts
    sources, source_poses, targets = _images(0, batch=2), _images(2, batch=2), _images(1, batch=2)
    both = inpaint(simplified, vae, dino, sources, source_poses, targets, _settings())
    second = inpaint(simplified, vae, dino, sources[1:], source_poses[1:], targets[1:], _settings(seed=8))
    torch.testing.assert_close(both.images[1], second.images[0], atol=1e-5, rtol=0)
    assert (both.canvas[0, :, :, :TINY_SIZE] - both.canvas[1, :, :, :TINY_SIZE]).abs().max() > 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_stay_close_to_fp32(stage2_parts, dtype):
    simplified, _, vae, dino = stage2_parts
    args = (_images(0), _images(2), _images(1))
    reference = inpaint(simplified, vae, dino, *args, _settings()).images
    half = [copy.deepcopy(m).to(dtype) for m in (simplified, vae, dino)]
    images = inpaint(*half, *args, _settings()).images
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    assert (images - reference).abs().mean() < 0.02


def test_demo_pose_reaches_pose_proj_as_the_demo_resized_it(stage2_parts):
    from PIL import Image

    simplified, _, vae, dino = stage2_parts
    flat = [v for point in DEMO_BODY for v in ((*point, 1.0) if point else (0.0, 0.0, 0.0))]
    frames = frames_from_pose_keypoint([{"people": [{"pose_keypoints_2d": flat}], "canvas_width": 512,
                                         "canvas_height": 512}])
    render = pcdms_renders(frames, 512, 512)[0]  # a 512 x 512 PCDMs-style render, as the demo's pose files
    pose = torch.from_numpy(render.copy()).movedim(-1, 0)[None] / 255.0
    expected = np.array(Image.fromarray(render).resize((TINY_SIZE, TINY_SIZE), Image.BICUBIC))
    model = _spied(simplified)
    inpaint(model, vae, dino, _images(0), _images(2), pose, _settings(steps=1))
    (canvas,), _ = model.pose_proj.calls[0]
    expected = torch.from_numpy(expected).movedim(-1, 0).float() / 255.0 * 2 - 1
    torch.testing.assert_close(canvas[0, :, :, TINY_SIZE:], expected, atol=1e-6, rtol=0)


def test_full_model_keeps_its_heads_float32_at_half_precision(simplified_file, full_file, stage2_parts):
    """The paper's stage-2 script runs image_proj_model_p and pose_proj in float32 beside a float16 UNet; the
    simplified model's demo casts them with the UNet."""
    from posetransfer.models.pcdm.stages import load_pcdm_checkpoint

    full = load_pcdm_checkpoint(str(full_file), torch.float16)
    simplified = load_pcdm_checkpoint(str(simplified_file), torch.float16)
    assert full.dtype == torch.float16 and full.head_dtype == torch.float32
    assert {p.dtype for p in full.pose_proj.parameters()} == {torch.float32}
    assert {p.dtype for p in simplified.parameters()} == {torch.float16}
    _, reference, vae, dino = stage2_parts
    spied = _spied(full)
    images = inpaint(spied, vae, dino, _images(0), _images(2), _images(1), _settings(),
                     target_embeds=torch.randn(1, 32))
    (pose_canvas,), _ = spied.pose_proj.calls[0]
    _, kw = spied.unet.calls[0]
    assert pose_canvas.dtype == torch.float32 and kw["pose_residual"].dtype == torch.float32
    # the float32 heads give the float32 model's tokens up to the UNet's own rounding
    tokens = encode_dino(dino, _images(0))
    torch.testing.assert_close(full.image_proj(tokens), reference.image_proj(tokens), atol=0, rtol=0)
    assert torch.isfinite(images.images).all()
