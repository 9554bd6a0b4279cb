"""The conversion engine: everything that needs no Blender (image I/O, tiling, onnxruntime
sessions, texture naming, BRDF maths, DDS writing, batch runs). Never import bpy here: the
trainer, the headless CLI and the unit tests use this package without Blender."""
