"""Fixtures shared by the command-line tests: a models folder holding the tiny simplified PCDMs model, VAE and DINOv2."""
import shutil

import pytest

from ..models.pcdm.conftest import dino_file, simplified_file, vae_file  # noqa: F401  (fixtures)


@pytest.fixture
def models_dir(tmp_path, monkeypatch, simplified_file, vae_file, dino_file):  # noqa: F811
    root = tmp_path / "models"
    for folder, path in (("pcdms", simplified_file), ("vae", vae_file), ("clip_vision", dino_file)):
        (root / folder).mkdir(parents=True)
        shutil.copy(path, root / folder / path.name)
        shutil.copy(path.with_suffix(".json"), root / folder / path.with_suffix(".json").name)
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(root))
    return root
