"""The add-on registers and unregisters cleanly, and its engine never needs Blender."""
import subprocess
import sys
from pathlib import Path

from .conftest import ADDON_MODULE

REPO = Path(__file__).resolve().parents[2]


def test_enable_disable_twice_registers_and_removes_everything(bpy, empty_scene):
    import addon_utils

    for _ in range(2):
        addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
        assert hasattr(bpy.types, "PBR_FORGE_OT_convert_material")
        assert hasattr(bpy.types, "PBR_FORGE_PT_main")
        assert hasattr(bpy.types.Scene, "pbr_forge")
        assert bpy.context.preferences.addons[ADDON_MODULE].preferences.provider == 'AUTO'
        addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)
        assert not hasattr(bpy.types, "PBR_FORGE_OT_convert_material")
        assert not hasattr(bpy.types.Scene, "pbr_forge")
        assert not hasattr(bpy.types.Material, "pbr_forge_source")


def test_preference_choices_are_the_engines_own(bpy, empty_scene):
    import addon_utils
    from addon import preferences

    addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
    try:
        rna = bpy.context.preferences.addons[ADDON_MODULE].preferences.bl_rna.properties
        for prop, mapping in (("provider", preferences.PROVIDERS), ("naming_preset", preferences.NAMING_PRESETS),
                              ("normal_convention", preferences.NORMAL_CONVENTIONS)):
            assert sorted(item.identifier for item in rna[prop].enum_items) == sorted(mapping), prop
    finally:
        addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)


def test_disabling_the_addon_frees_the_onnxruntime_sessions(bpy, empty_scene, tiny_models_dir):
    import addon_utils

    addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
    from addon.engine.sessions import ModelSession

    model = next(tiny_models_dir.glob("*.onnx"))
    cached = ModelSession(model, "cpu", []).session  # a full-size one holds about 1 GB
    assert ModelSession(model, "cpu", []).session is cached  # created once per process
    addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)
    assert ModelSession(model, "cpu", []).session is not cached  # the cache was freed


def test_importing_the_package_and_every_engine_module_does_not_import_bpy():
    code = ("import importlib, pkgutil, sys, addon, addon.engine, addon.cli\n"
            "names = [m.name for m in pkgutil.iter_modules(addon.engine.__path__, 'addon.engine.')]\n"
            "assert len(names) > 15, names\n"
            "for name in names: importlib.import_module(name)\n"
            "sys.exit(3 if 'bpy' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _raise(error):
    raise error
