"""Fixtures shared by the engine, Blender and trainer tests."""
from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from pathlib import Path

import pytest

TINY_MODELS_SEED = 1234
REPO = Path(__file__).resolve().parents[1]
# Everything the exported tiny set depends on: a change to any of these re-exports it.
_EXPORT_SOURCES = ("trainer/contract.py", "trainer/export.py", "trainer/models", "tests/conftest.py",
                   "addon/engine/priors.py", "addon/engine/manifest.py")
_EXPORT_PACKAGES = ("torch", "timm", "transformers", "peft", "onnx", "onnxscript", "onnxruntime")


def _export_key() -> str:
    digest = hashlib.sha256()
    for source in _EXPORT_SOURCES:
        path = REPO / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(REPO).as_posix().encode())
            digest.update(file.read_bytes())
    for package in _EXPORT_PACKAGES:
        digest.update(f"{package}={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_models_dir(request, tmp_path_factory) -> Path:
    """A models folder (four *.onnx files + manifest.json) exported from seeded, untrained
    ModelsConfig.tiny() networks by the real export path (parity-checked against PyTorch).

    Untrained outputs are meaningless but deterministic; tests that use this folder check plumbing
    (shapes, ranges, tiling, manifest validation), not quality. The export takes tens of seconds on
    2 cores, so it is kept in pytest's cache keyed by the exporting sources and library versions;
    each session gets its own copy, free to tamper with.
    """
    cached = Path(request.config.cache.mkdir("tiny_models")) / _export_key()
    if not (cached / "manifest.json").is_file():
        from trainer.export import export_models
        from trainer.models import ModelsConfig, create_models

        models = create_models(ModelsConfig.tiny(), seed=TINY_MODELS_SEED)
        staging = tmp_path_factory.mktemp("tiny_models_export")
        export_models(models, staging, provenance={"source": "tests/conftest.py tiny_models_dir",
                                                   "config": "ModelsConfig.tiny()", "seed": TINY_MODELS_SEED})
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(staging, cached)
    out = tmp_path_factory.mktemp("tiny_models") / "models"
    shutil.copytree(cached, out)
    return out
