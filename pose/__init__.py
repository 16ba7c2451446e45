"""Pose toolkit (no ComfyUI imports): keypoint types and POSE_KEYPOINT/OpenPose JSON (`keypoints`, `formats`),
OpenCV-exact numpy drawing (`raster`) and the PCDMs / controlnet_aux / SCFM renderers (`render`), DWPose over
onnxruntime (`dwpose`, `detector`, `topdown`, `imageops`) and pose retargeting (`align`)."""
