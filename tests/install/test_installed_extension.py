"""The zip users download installs, enables, converts and uninstalls in a Blender that has nothing else."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile

import pytest

from .conftest import CLEAN_BLENDERS, REPO, clean_blender_python

SCRIPT = REPO / "tests" / "install" / "installed_extension.py"
EXAMPLE = ("stone_example.dds", "stone_example_n.dds")
MAPS = ("albedo", "roughness", "metallic", "ao", "height", "normal")


@pytest.mark.slow
@pytest.mark.parametrize("blender", sorted(CLEAN_BLENDERS))
def test_zip_installs_enables_converts_and_uninstalls_in_clean_blender(blender, linux_zip, tmp_path):
    python = clean_blender_python(blender)
    textures = tmp_path / "textures"
    textures.mkdir()
    for name in EXAMPLE:
        shutil.copy(REPO / "examples" / name, textures / name)
    before = {p.name: p.read_bytes() for p in textures.iterdir()}
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "blender_user")
    # -I: isolated mode, so neither this checkout nor the development venv can leak into sys.path.
    done = subprocess.run([str(python), "-I", str(SCRIPT), str(linux_zip), *(str(textures / n) for n in EXAMPLE),
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Traceback" not in log and "Exception in module" not in log, log
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert result["blender"].startswith(blender.rsplit(".", 1)[0])
    assert result["importable_before"] == [], "the clean environment must not see the project's dependencies"
    assert result["extensions_in_work_dir"]
    assert result["install"] == ["FINISHED"] and result["enabled"]
    assert result["importable_after_install"] == ["onnxruntime", "PIL", "etcpak", "archspec", "texture2ddecoder"]
    assert result["convert"] == ["FINISHED"], result["last_run"]
    assert result["material"] == "stone_example_PBR"
    assert result["outputs"] == sorted(f"stone_example_{m}.png" for m in MAPS)
    assert "Ambient Occlusion" in result["image_nodes"]
    assert result["cli_exit"] == 0 and result["enabled_after_cli"]
    # (the CLI's lock file, .pbr_forge.lock, stays hidden in the output folder)
    assert [f for f in result["cli_outputs"] if not f.startswith(".")] == sorted([f"stone_example_{m}.png" for m in MAPS] + ["stone_example.blend"])
    assert result["sessions_enabled"] == 4 and result["sessions_disabled"] == 0  # the models' memory is freed
    assert not result["enabled_after_disable"] and result["uninstall"] == ["FINISHED"]
    assert not result["operators_left"]
    assert result["extension_files_left"] == []
    # Uninstalling never takes the user's converted maps with it, and the originals are untouched.
    assert result["outputs_after_uninstall"] == result["outputs"]
    assert {p.name: p.read_bytes() for p in textures.iterdir()} == before


def test_zip_carries_the_whole_closure_for_its_python_and_never_numpy(linux_zip):
    with zipfile.ZipFile(linux_zip) as archive:
        names = archive.namelist()
        manifest = archive.read("blender_manifest.toml").decode()
    wheels = [n.removeprefix("wheels/") for n in names if n.startswith("wheels/")]
    distributions = {w.split("-")[0].lower() for w in wheels}
    assert {"onnxruntime", "pillow", "etcpak", "archspec", "texture2ddecoder", "protobuf", "flatbuffers"} <= distributions
    assert "numpy" not in distributions
    python_tags = {w.split("-")[-3] for w in wheels}
    assert python_tags <= {"cp311", "cp37", "cp310", "py3", "py2.py3"}, python_tags
    assert 'blender_version_min = "4.2.0"' in manifest and 'blender_version_max = "5.1.0"' in manifest
    assert {"blender_manifest.toml", "__init__.py", "engine/pipeline.py", "models/manifest.json"} <= set(names)
    assert not any("__pycache__" in name for name in names)
