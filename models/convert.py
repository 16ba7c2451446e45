"""Rewrite any supported original model file as a clean safetensors file whose metadata names its kind."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoints import Checkpoint, CheckpointError, Kind, describe_unknown, read_checkpoint

METADATA_KIND = "posetransfer_kind"


def canonical_state_dict(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The weights worth keeping: SCFM files also carry alias and never-used tensors that are dropped."""
    if checkpoint.kind is Kind.SCFM:
        from .scfm.checkpoint import canonical_state_dict as scfm_canonical

        return scfm_canonical(checkpoint.state_dict)
    return checkpoint.state_dict


def default_destination(source: str | os.PathLike) -> Path:
    return Path(source).with_suffix(".safetensors")


def convert_to_safetensors(source: str | os.PathLike, destination: str | os.PathLike | None = None,
                           *, overwrite: bool = False) -> Path:
    """Convert `source` (any container the reader accepts) to safetensors; returns the written path.

    The original is never modified; an existing destination is only replaced with `overwrite`. The file is
    written under a temporary name and renamed, so a failure leaves nothing half-written.
    """
    from safetensors.torch import save_file

    source = Path(source)
    destination = Path(destination) if destination is not None else default_destination(source)
    if destination.resolve() == source.resolve():
        raise CheckpointError(f"{source} is already a safetensors file at the destination; nothing to convert.")
    if destination.exists() and not overwrite:
        raise CheckpointError(f"{destination} already exists; choose another name or allow overwriting.")
    checkpoint = read_checkpoint(source)
    if checkpoint.kind is Kind.UNKNOWN:
        raise CheckpointError(f"{source} is not a model this pack recognises; refusing to convert it. "
                              + describe_unknown(checkpoint.state_dict))
    # safetensors refuses tensors that share memory (aliases, views of one buffer): store each on its own.
    weights = {key: value.detach().contiguous().clone() for key, value in canonical_state_dict(checkpoint).items()}
    metadata = {METADATA_KIND: checkpoint.kind.value, "posetransfer_source": source.name,
                "posetransfer_container": checkpoint.container}
    if checkpoint.config is not None:
        metadata["config"] = json.dumps(checkpoint.config)
    partial = destination.with_name(destination.name + ".partial")
    try:
        save_file(weights, str(partial), metadata=metadata)
        os.replace(partial, destination)
    except Exception as error:  # noqa: BLE001 - OSError, or safetensors' own error wrapping one (missing folder, full disk)
        raise CheckpointError(f"Could not write {destination} ({type(error).__name__}: {error}); {source} is "
                              "unchanged. Choose a writable folder with enough free space.") from error
    finally:
        if partial.exists():
            partial.unlink()
    return destination
