"""PBR Forge Blender extension: registration only.

The Blender-side modules are imported inside register() so that the bpy-free engine
(`engine/`) stays importable by the trainer, the CLI and unit tests without Blender.
"""

_registered_modules = []


def register():
    from . import preferences, properties, operators, ui

    for module in (preferences, properties, operators, ui):
        module.register()
        _registered_modules.append(module)


def unregister():
    from .engine import sessions

    while _registered_modules:
        _registered_modules.pop().unregister()
    # The models' onnxruntime sessions hold about 1 GB: they go with the add-on, not at Blender's exit.
    sessions.clear_cache()
