"""User interface: the sidebar panels."""
import bpy

from . import panels


def register():
    for cls in panels.classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(panels.classes):
        bpy.utils.unregister_class(cls)
