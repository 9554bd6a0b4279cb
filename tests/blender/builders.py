"""Scenes, materials and textures the Blender tests build for themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array * 255 + 0.5, 0, 255).astype(np.uint8)).save(path)
    return path


def make_texture_pair(folder: Path, name: str = "wall", width: int = 96, height: int = 64):
    """A Skyrim-style diffuse and DirectX `_n` normal map with some structure (bricks)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    mortar = ((y % 16) < 2) | (((x + 16 * ((y // 16) % 2)) % 32) < 2)
    rng = np.random.default_rng(0)
    diffuse = np.stack([0.55 + 0.1 * np.sin(x / 5), 0.35 + 0.05 * np.cos(y / 7), 0.25 * np.ones_like(x)], axis=2)
    diffuse = np.where(mortar[..., None], 0.8, diffuse) + rng.normal(0, 0.02, (height, width, 3))
    nx = 0.3 * np.sin(x / 4)
    ny = -0.3 * np.cos(y / 6)  # DirectX: green points down
    nz = np.sqrt(1 - nx**2 - ny**2)
    normal = (np.stack([nx, ny, nz], axis=2) + 1) / 2
    return (write_png(folder / f"{name}.png", np.clip(diffuse, 0, 1)),
            write_png(folder / f"{name}_n.png", normal))


def make_material(bpy, name: str, diffuse_path: Path | None, normal_path: Path | None):
    """A material the way a NIF importer or a user builds it: Principled BSDF with image nodes."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:
        material.use_nodes = True
    tree = material.node_tree
    shader = next(n for n in tree.nodes if n.type == 'BSDF_PRINCIPLED')
    if diffuse_path is not None:
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = bpy.data.images.load(str(diffuse_path))
        tree.links.new(node.outputs["Color"], shader.inputs["Base Color"])
    if normal_path is not None:
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = bpy.data.images.load(str(normal_path))
        node.image.colorspace_settings.is_data = True
        normal_map = tree.nodes.new("ShaderNodeNormalMap")
        tree.links.new(node.outputs["Color"], normal_map.inputs["Color"])
        tree.links.new(normal_map.outputs["Normal"], shader.inputs["Normal"])
    return material


def make_object(bpy, material=None, name="Wall"):
    """A plane linked to the scene, made active and selected, holding `material` in slot 0."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], [], [(0, 1, 2, 3)])
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    if material is not None:
        obj.data.materials.append(material)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def node_tree_snapshot(material):
    """Nodes, links and image names of a material, to prove it was left untouched."""
    tree = material.node_tree
    return (
        sorted((n.bl_idname, n.name, getattr(getattr(n, "image", None), "name", None)) for n in tree.nodes),
        sorted((l.from_node.name, l.from_socket.identifier, l.to_node.name, l.to_socket.identifier)
               for l in tree.links),
    )


def array_to_image(name: str, array: np.ndarray, *, is_data: bool):
    """A new bpy image holding `array` (H x W or H x W x 1/3/4, top row first, values in [0, 1])."""
    import bpy

    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    rgba = np.ones((height, width, 4), dtype=np.float32)
    if channels == 1:
        rgba[:, :, :3] = array
    else:
        rgba[:, :, :min(channels, 4)] = array[:, :, :4]
    image = bpy.data.images.new(name, width, height, alpha=channels == 4)
    if is_data:
        image.colorspace_settings.is_data = True
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    image.update()
    return image
