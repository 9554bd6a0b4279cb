"""Blender-side helpers: bpy images <-> numpy, the PBR material builder, input detection.

These modules import bpy; the format knowledge they rely on lives in `engine/`."""
