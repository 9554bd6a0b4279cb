"""Clean Blender environments: a venv per Blender version holding only bpy (and the numpy that Blender
ships), nothing of the project's. Made once and kept in the cache folder ($PBR_FORGE_CACHE, default
~/.cache/pbr-forge), since bpy is a few hundred MB."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_build_script():
    # Loaded from its path: `build` is also the name of a PyPI package.
    spec = importlib.util.spec_from_file_location("pbr_forge_build", REPO / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


# Blender version -> what its venv gets. Blender 4.2 ships numpy 1.26; the bpy 4.2 wheel allows numpy 2.
CLEAN_BLENDERS = {
    "5.0.1": ["bpy==5.0.1"],
    "4.2.23": ["bpy==4.2.23", "numpy==1.26.4"],
}


def clean_blender_python(version: str) -> Path:
    """The python of a venv with only bpy `version`, created on first use."""
    build = load_build_script()
    venv = build.CACHE / f"clean-bpy-{version}"
    python = venv / "bin" / "python"
    ready = venv / ".complete"
    if not ready.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *CLEAN_BLENDERS[version]], check=True)
        ready.touch()
    return python


@pytest.fixture(scope="session")
def linux_zip(tmp_path_factory) -> Path:
    """What a Linux user of Blender 4.2-5.0 downloads: `python build.py`'s linux-x64 zip for Python 3.11,
    with the shipped models and every wheel."""
    build = load_build_script()
    (zip_path,) = build.build(out_dir=tmp_path_factory.mktemp("dist"), models_dir=REPO / "models",
                              with_wheels=True, platforms=["linux-x64"], pythons=["3.11"])
    return zip_path
