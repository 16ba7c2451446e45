"""Evaluation metrics as the papers computed them: SSIM, PSNR, LPIPS and FID, with the originals' protocols.

No ComfyUI, no torchvision: the networks (FID's Inception-v3, LPIPS's AlexNet) are built here from the
weight files the user points to, read through the pack's safe checkpoint reader.
"""
