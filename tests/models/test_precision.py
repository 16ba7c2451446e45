"""Precision names -> dtypes, without ComfyUI."""
import pytest
import torch

from posetransfer.models.precision import PRECISIONS, precision_dtype


def test_named_precisions_and_auto_per_device():
    assert [precision_dtype(p, torch.device("cpu")) for p in PRECISIONS] == [
        torch.float32, torch.float32, torch.float16, torch.bfloat16]
    assert precision_dtype("auto", torch.device("cuda")) == torch.float16  # the originals' inference precision
    with pytest.raises(ValueError, match="fp8"):
        precision_dtype("fp8", torch.device("cpu"))
