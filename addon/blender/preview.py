"""A small Cycles CPU render of a material on a plane, for the panel (made only when asked).

Headless-safe: Cycles on the CPU needs no GPU and no window. The render happens in a scene of its
own that is removed afterwards, so the user's scene, camera and render settings are untouched.
"""
from __future__ import annotations

import os
import tempfile

import bpy

PREVIEW_SIZE = 128   # pixels per side
PREVIEW_SAMPLES = 8  # few: a preview, not a beauty render (about a second on 2 CPU cores)
_SCENE_NAME = "PBR Forge Preview"


def render_material_preview(material: bpy.types.Material, name: str) -> bpy.types.Image:
    """Render `material` on a plane lit by a low sun; returns the image `name`, packed into the
    .blend (replaced if it exists)."""
    scene = bpy.data.scenes.new(_SCENE_NAME)
    made = []
    try:
        plane = _plane(material)
        made += [plane, plane.data]
        camera = bpy.data.objects.new("PBR Forge Preview Camera", bpy.data.cameras.new("PBR Forge Preview Camera"))
        camera.data.type = 'ORTHO'
        camera.data.ortho_scale = 2.0
        camera.location = (0.0, 0.0, 3.0)
        sun = bpy.data.objects.new("PBR Forge Preview Sun", bpy.data.lights.new("PBR Forge Preview Sun", 'SUN'))
        sun.data.energy = 3.0
        sun.rotation_euler = (0.9, 0.0, 0.6)  # a grazing light shows the relief
        made += [camera, camera.data, sun, sun.data]
        for obj in (plane, camera, sun):
            scene.collection.objects.link(obj)
        scene.camera = camera
        _settings(scene)
        handle, path = tempfile.mkstemp(suffix=".png", prefix="pbr_forge_preview_")
        os.close(handle)
        try:
            scene.render.filepath = path
            bpy.ops.render.render(write_still=True, scene=scene.name)
            return _load_packed(path, name)
        finally:
            os.remove(path)
    finally:
        bpy.data.scenes.remove(scene)
        for block in made:
            _remove(block)


def _plane(material) -> bpy.types.Object:
    mesh = bpy.data.meshes.new("PBR Forge Preview Plane")
    mesh.from_pydata([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, coords in zip(uv.data, ((0, 0), (1, 0), (1, 1), (0, 1))):
        loop.uv = coords
    mesh.materials.append(material)
    return bpy.data.objects.new("PBR Forge Preview Plane", mesh)


def _settings(scene) -> None:
    scene.render.engine = 'CYCLES'
    scene.cycles.device = 'CPU'
    scene.cycles.samples = PREVIEW_SAMPLES
    scene.render.resolution_x = scene.render.resolution_y = PREVIEW_SIZE
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = 'PNG'
    scene.render.film_transparent = False


def _load_packed(path: str, name: str) -> bpy.types.Image:
    old = bpy.data.images.get(name)
    if old is not None:
        bpy.data.images.remove(old)
    image = bpy.data.images.load(path)
    image.name = name
    image.pack()
    image.filepath = ""  # the temporary file is gone; the packed pixels are the image
    return image


def _remove(block) -> None:
    """Remove a data-block made for the preview (objects are listed before their data)."""
    if isinstance(block, bpy.types.Object):
        bpy.data.objects.remove(block)
    elif isinstance(block, bpy.types.Mesh):
        bpy.data.meshes.remove(block)
    elif isinstance(block, bpy.types.Camera):
        bpy.data.cameras.remove(block)
    else:
        bpy.data.lights.remove(block)
