"""build.py: Blender's own validator judges every zip; the Blender range follows the wheels' Python."""
import tomllib

import pytest

from .conftest import REPO, load_build_script


def test_blender_validator_rejects_a_broken_manifest(tmp_path, monkeypatch, tiny_models_dir):
    build = load_build_script()
    broken = tmp_path / "blender_manifest.toml"
    broken.write_text(build.MANIFEST.read_text().replace('full PBR sets"', 'full PBR sets."'))
    monkeypatch.setattr(build, "MANIFEST", broken)
    with pytest.raises(build.BuildError, match="validator rejected"):
        build.build(out_dir=tmp_path / "dist", models_dir=tiny_models_dir, with_wheels=False)


def test_the_source_manifest_validates_as_a_wheel_less_build(tmp_path, tiny_models_dir):
    build = load_build_script()
    (zip_path,) = build.build(out_dir=tmp_path / "dist", models_dir=tiny_models_dir, with_wheels=False)
    assert zip_path.name == "pbr_forge-0.1.0.zip"


@pytest.mark.parametrize("line_index, version_min, version_max", [(0, "4.2.0", "5.1.0"), (1, "5.1.0", None)])
def test_each_python_gets_its_blender_range(line_index, version_min, version_max):
    build = load_build_script()
    line = build.BLENDER_LINES[line_index]
    text = build.staged_manifest((REPO / "blender_manifest.toml").read_text(), platforms=["linux-x64"],
                                 wheels=["./wheels/x-1.0-py3-none-any.whl"], line=line)
    parsed = tomllib.loads(text)
    assert parsed["blender_version_min"] == version_min
    assert parsed.get("blender_version_max") == version_max
    assert parsed["platforms"] == ["linux-x64"] and parsed["permissions"]["files"]


def test_requirements_come_from_pyproject_without_numpy():
    build = load_build_script()
    cpu = build.engine_requirements("cpu")
    assert not any(r.lower().startswith("numpy") for r in cpu)
    assert any(r.startswith("onnxruntime") for r in cpu) and any(r.startswith("Pillow") for r in cpu)
    assert any(r.startswith("onnxruntime-gpu") for r in build.engine_requirements("cuda"))


def test_the_zip_ships_the_onnx_set_the_manifest_lists_and_not_the_trainable_checkpoint(tmp_path, tiny_models_dir):
    import json
    import shutil
    import zipfile
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    (models / "trainable").mkdir()
    (models / "trainable" / "weights.safetensors").write_bytes(b"\0" * 64)  # for the trainer, not for Blender
    (zip_path,) = load_build_script().build(out_dir=tmp_path / "dist", models_dir=models, with_wheels=False)
    listed = {entry["file"] for entry in json.loads((models / "manifest.json").read_text())["models"].values()}
    with zipfile.ZipFile(zip_path) as archive:
        shipped = {name.split("models/", 1)[1] for name in archive.namelist() if name.startswith("models/")}
    assert shipped == listed | {"manifest.json"}
