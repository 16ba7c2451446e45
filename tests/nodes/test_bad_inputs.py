"""Node inputs from the wild (issue #10): refused before any model runs, with the input named."""
import pytest
import torch

from posetransfer.errors import PoseTransferError
from posetransfer.nodes import pcdm


def _image(batch=1, height=16, width=12):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("node", [pcdm.PCDMInpaint, pcdm.PCDMPoseTransfer])
@pytest.mark.parametrize("people", [[], None, [{"pose_keypoints_2d": [5.0, 5.0, 0.0] * 18}]])
def test_pcdm_refuses_a_target_pose_without_a_visible_person(node, people):
    """As SCFM Warp and PCDM Prior do; the models are never touched (None here)."""
    target = [{"people": people, "canvas_width": 12, "canvas_height": 16}]
    args = dict(source_image=_image(), steps=1, guidance=2.0, scheduler="ddim", seed=0, fit="pad",
                target_pose_keypoint=target)
    if node is pcdm.PCDMInpaint:
        args["source_pose"] = _image()
    else:
        args.update(dwpose_model="dw.onnx", detector_model="yolox.onnx")
    with pytest.raises(PoseTransferError, match="target_pose_keypoint: frame 0 holds .*a person is needed"):
        node.execute(None, None, None, **args)


def test_image_inputs_that_are_not_images_are_named():
    with pytest.raises(PoseTransferError, match="source_pose: expected an IMAGE of shape"):
        pcdm.pose_input(torch.rand(1, 16, 12), None, "source_pose")
    with pytest.raises(PoseTransferError, match="source_pose: the IMAGE has no pixels"):
        pcdm.pose_input(torch.rand(1, 0, 12, 3), None, "source_pose")


def _far_pose():
    body = [5.0, 5.0, 1.0] * 18
    body[3:5] = [1e9, -1e9]  # an editor's absurd point: drawing it spun for minutes
    return [{"people": [{"pose_keypoints_2d": body}], "canvas_width": 12, "canvas_height": 16}]


@pytest.mark.parametrize("style", ["pcdms", "controlnet_aux"])
def test_renderers_refuse_absurd_coordinates_naming_the_point(style):
    from posetransfer.nodes.pose import RenderPose

    with pytest.raises(PoseTransferError, match=r"pose_keypoints_2d: point 1 is at \(1e\+09, -1e\+09\) px"):
        RenderPose.execute(_far_pose(), style=style)


def test_pcdm_inpaint_refuses_absurd_coordinates_naming_the_point():
    with pytest.raises(PoseTransferError, match=r"point 1 is at \(1e\+09, -1e\+09\) px"):
        pcdm.PCDMInpaint.execute(None, None, None, source_image=_image(), source_pose=_image(), steps=1, guidance=2.0,
                                 scheduler="ddim", seed=0, fit="pad", target_pose_keypoint=_far_pose())
