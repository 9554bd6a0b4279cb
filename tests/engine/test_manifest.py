"""load_manifest and the ONNX signature check, on a copy of the trainer-exported tiny model set."""
import json
import shutil

import pytest

from addon.engine.errors import ManifestError
from addon.engine.manifest import ENGINE_IO, default_models_dir, load_manifest
from addon.engine.pipeline import Converter


@pytest.fixture
def models_copy(tiny_models_dir, tmp_path):
    return shutil.copytree(tiny_models_dir, tmp_path / "models")


def _edit_manifest(models_dir, change):
    path = models_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_exported_set_loads_with_its_conventions(tiny_models_dir):
    manifest = load_manifest(tiny_models_dir)
    assert set(manifest.models) == set(ENGINE_IO)
    assert manifest.tile % manifest.unet_multiple == 0
    assert len(manifest.condition_channels) == len(manifest.material_classes) + 1
    assert all(entry.path.is_file() for entry in manifest.models.values())


def test_one_changed_byte_fails_the_sha256_check(models_copy):
    model = load_manifest(models_copy).model("maps").path
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"unet_maps\.onnx.*sha256"):
        load_manifest(models_copy)


def test_missing_model_file_is_named(models_copy):
    load_manifest(models_copy).model("classifier").path.unlink()
    with pytest.raises(ManifestError, match=r"vit_classifier\.onnx.*missing"):
        load_manifest(models_copy)


def test_missing_manifest_and_wrong_format_version_are_refused(models_copy, tmp_path):
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path)
    _edit_manifest(models_copy, lambda data: data.update(format_version=99))
    with pytest.raises(ManifestError, match="format version 99"):
        load_manifest(models_copy)


@pytest.mark.parametrize("absolute", [False, True])
def test_model_path_escaping_the_folder_is_refused(models_copy, absolute):
    """The file outside is a real copy with the right sha256: only the path check can refuse it."""
    model = load_manifest(models_copy).model("maps").path
    outside = shutil.copy(model, models_copy.parent / model.name)
    name = str(outside) if absolute else f"../{model.name}"
    _edit_manifest(models_copy, lambda data: data["models"]["maps"].update(file=name))
    with pytest.raises(ManifestError, match=r"malformed \(problem with model file name '.*unet_maps\.onnx'\)"):
        load_manifest(models_copy)


def test_model_whose_io_differs_from_the_manifest_is_refused_when_its_session_starts(models_copy):
    """Swap the two UNet files (and their hashes): sha256 passes, the I/O names do not."""
    def swap(data):
        albedo, maps = data["models"]["albedo"], data["models"]["maps"]
        albedo["file"], maps["file"] = maps["file"], albedo["file"]
        albedo["sha256"], maps["sha256"] = maps["sha256"], albedo["sha256"]

    _edit_manifest(models_copy, swap)
    converter = Converter(models_copy, provider="cpu")
    with pytest.raises(ManifestError, match=r"does not match its manifest \(input names"):
        converter.session("albedo")


def test_wrong_static_dimension_is_refused(models_copy):
    _edit_manifest(models_copy, lambda data: data["models"]["albedo"]["inputs"]["diffuse"].update(
        shape=["batch", 4, "height", "width"]))
    with pytest.raises(ManifestError, match="'diffuse' has size 3 on axis 1, not 4"):
        Converter(models_copy, provider="cpu").session("albedo")


def test_default_models_dir_is_the_repository_models_folder_in_a_checkout():
    repo_root = default_models_dir().parent
    assert (repo_root / "addon" / "engine" / "manifest.py").is_file()
    assert default_models_dir().name == "models"
