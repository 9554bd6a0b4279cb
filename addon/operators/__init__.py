"""Operators: converting materials, image pairs and mod folders, and reverting a conversion."""
import bpy

from . import batch, convert

_classes = convert.classes + batch.classes


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
