"""The built extension zip installs into Blender and converts through bpy.ops.pbr_forge."""
import importlib.util
import zipfile
from pathlib import Path

import pytest

from .builders import make_material, make_object, make_texture_pair

REPO = Path(__file__).resolve().parents[2]
EXTENSION_MODULE = "bl_ext.user_default.pbr_forge"


def _load_build_script():
    # Loaded from its path: `build` is also the name of a PyPI package.
    spec = importlib.util.spec_from_file_location("pbr_forge_build", REPO / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_built_zip_installs_and_converts_through_bpy_ops(bpy, empty_scene, tiny_models_dir, tmp_path):
    build = _load_build_script()
    (zip_path,) = build.build(out_dir=tmp_path / "dist", models_dir=tiny_models_dir, with_wheels=False)
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert {"blender_manifest.toml", "__init__.py", "engine/pipeline.py", "models/manifest.json"} <= names
    assert not any("__pycache__" in name for name in names)

    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True)
    assert result == {'FINISHED'}
    try:
        prefs = bpy.context.preferences.addons[EXTENSION_MODULE].preferences
        # The zip ships the models: the default (empty) models folder must find them.
        assert prefs.models_dir == ""
        assert Path(prefs.resolved_models_dir()).parent.name == "pbr_forge"
        prefs.output_dir = str(tmp_path / "out")
        prefs.provider = 'CPU'
        prefs.tile_size = 128
        prefs.tile_overlap = 16

        original = make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures"))
        obj = make_object(bpy, original)
        assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}
        assert obj.material_slots[0].material.name == "wall_PBR"
        assert (tmp_path / "out" / "wall_albedo.png").is_file()
    finally:
        bpy.ops.extensions.package_uninstall(repo_index=_user_repo_index(bpy), pkg_id="pbr_forge")
    assert EXTENSION_MODULE not in bpy.context.preferences.addons
    assert not hasattr(bpy.types, "PBR_FORGE_OT_convert_material")


def _user_repo_index(bpy):
    repos = bpy.context.preferences.extensions.repos
    return next(i for i, repo in enumerate(repos) if repo.module == "user_default")


def test_manifest_fields_follow_the_extension_rules():
    import tomllib

    build = _load_build_script()
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert build.validate_manifest(manifest) == []
    assert manifest["id"] == "pbr_forge" and manifest["blender_version_min"] == "4.2.0"
    broken = dict(manifest, tagline="x" * 65, permissions={"files": "reads files."})
    assert len(build.validate_manifest(broken)) == 2


def test_staged_manifest_lists_platform_and_wheels_before_the_tables():
    import tomllib

    build = _load_build_script()
    text = build.staged_manifest((REPO / "blender_manifest.toml").read_text(), ["linux-x64"],
                                 ["./wheels/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl"])
    parsed = tomllib.loads(text)
    assert parsed["platforms"] == ["linux-x64"] and len(parsed["wheels"]) == 1
    assert parsed["permissions"]["files"]


@pytest.fixture(autouse=True)
def _no_repo_addon(bpy):
    """The checkout's add-on must not be enabled beside the installed one (same operator names)."""
    assert "addon" not in bpy.context.preferences.addons
