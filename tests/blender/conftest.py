"""Fixtures for tests that run inside real Blender (the bpy module).

bpy can be imported once per process, and Blender reads its user configuration from $HOME: the
session fixture points HOME (and XDG_CONFIG_HOME) at a temporary folder before the first import,
so the tests never read or write the user's own Blender settings or extensions.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ADDON_MODULE = "addon"  # the add-on loaded straight from this checkout


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def bpy(tmp_path_factory):
    home = tmp_path_factory.mktemp("blender_home")
    saved = {key: os.environ.get(key) for key in ("HOME", "XDG_CONFIG_HOME")}
    os.environ["HOME"] = str(home)
    os.environ["XDG_CONFIG_HOME"] = str(home / ".config")
    import bpy as bpy_module

    assert Path(bpy_module.utils.resource_path('USER')).is_relative_to(home)
    yield bpy_module
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def empty_scene(bpy):
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene


@pytest.fixture
def prefs(bpy, empty_scene, tiny_models_dir, tmp_path):
    """The add-on enabled from the checkout, with preferences pointing at the tiny models."""
    import addon_utils

    addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.models_dir = str(tiny_models_dir)
    prefs.output_dir = str(tmp_path / "out")
    prefs.provider = 'CPU'
    prefs.custom_tiling = True  # without it the tile size and overlap below are not used
    prefs.tile_size = 128
    prefs.tile_overlap = 16
    prefs.overwrite = False
    yield prefs
    addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)


def _raise(error):
    raise error
