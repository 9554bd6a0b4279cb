"""The PBR material builder: a new Principled BSDF material wired to the converted maps.

Wiring follows what Blender and its glTF exporter expect:
- albedo -> Base Color (sRGB); its alpha -> Alpha when the albedo has one;
- roughness, metallic -> their inputs (Non-Color);
- normal -> Normal Map node (tangent space, OpenGL, Non-Color) -> Normal;
- height -> Displacement node (Midlevel: the manifest's conventions.height_midlevel, the flat level the
  models write) -> Material Output Displacement (bump by default);
- ao -> the "Occlusion" input of the "glTF Material Output" node group (Principled BSDF has no AO input),
  made exactly as io_scene_gltf2 makes it (Occlusion, then Thickness), since its importer reuses a group
  of that name and indexes its inputs.
With `relative`, image paths are stored relative to the saved .blend (`//...`), as Node Wrangler makes them.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import bpy

from ..engine.manifest import ENGINE_MAPS

GLTF_GROUP_NAME = "glTF Material Output"
GLTF_OCCLUSION = "Occlusion"
# The group's inputs in io_scene_gltf2's order (its material_helpers.create_settings_group) with defaults.
GLTF_GROUP_INPUTS = ((GLTF_OCCLUSION, 1.0), ("Thickness", 0.0))
# The flat height level comes from the models' manifest (Manifest.height_midlevel); a 5 cm relief range
# reads well as bump on walls and props at Skyrim scale without exaggerating displacement.
HEIGHT_SCALE = 0.05

COLOUR_MAPS = ("albedo",)
MAP_LABELS = {"albedo": "Albedo", "roughness": "Roughness", "metallic": "Metallic", "ao": "Ambient Occlusion",
              "height": "Height", "normal": "Normal"}
DATA_MAPS = (*ENGINE_MAPS, "normal")  # non-colour image data

# Node columns, left to right: image textures, helpers, shader, output.
_X_IMAGES, _X_HELPERS, _X_SHADER, _X_OUTPUT = -900, -450, 0, 400
_ROW = 300


def build_material(name: str, image_paths: dict[str, Path], *, height_midlevel: float, pack: bool = False,
                   relative: bool = False) -> bpy.types.Material:
    """A NEW material named `name` using the maps in `image_paths` (keys: albedo, roughness,
    metallic, ao, height, normal; any subset). `height_midlevel` is the height of a flat surface, from
    the models' manifest (`Manifest.height_midlevel`). Images load from disk; `pack` embeds them in the
    .blend; `relative` stores their paths relative to the saved .blend (`//...`)."""
    unknown = set(image_paths) - set(COLOUR_MAPS) - set(DATA_MAPS)
    if unknown:
        raise ValueError(f"unknown map names: {sorted(unknown)}")

    material = _new_material(name)
    tree = material.node_tree
    shader, output = _shader_and_output(tree)
    image_node = _image_column(tree, image_paths, pack=pack, relative=relative)
    # Image rows top to bottom in this order.
    if "albedo" in image_paths:
        _wire_albedo(tree, image_node("albedo"), shader)
    for map_name, socket in (("roughness", "Roughness"), ("metallic", "Metallic")):
        if map_name in image_paths:
            tree.links.new(image_node(map_name).outputs["Color"], shader.inputs[socket])
    if "normal" in image_paths:
        _wire_normal(tree, image_node("normal"), shader)
    if "height" in image_paths:
        _wire_height(tree, image_node("height"), output, height_midlevel)
    if "ao" in image_paths:
        _wire_ao(tree, image_node("ao"))
    return material


def _new_material(name: str) -> bpy.types.Material:
    """A new material with an empty node tree, displacement as bump."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x: new materials have no node tree until use_nodes
        material.use_nodes = True
    material.displacement_method = 'BUMP'
    material.node_tree.nodes.clear()
    return material


def _shader_and_output(tree) -> tuple:
    """(Principled BSDF, Material Output), the shader linked to the output's Surface."""
    shader = tree.nodes.new("ShaderNodeBsdfPrincipled")
    shader.location = (_X_SHADER, 0)
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    output.location = (_X_OUTPUT, 0)
    tree.links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    return shader, output


def _image_column(tree, image_paths: dict[str, Path], *, pack: bool, relative: bool):
    """A function map name -> a new Image Texture node of that map, each call one row further down."""
    rows = itertools.count()

    def image_node(map_name: str) -> bpy.types.ShaderNodeTexImage:
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = _load_image(image_paths[map_name], is_data=map_name in DATA_MAPS, pack=pack, relative=relative)
        node.label = MAP_LABELS[map_name]
        node.location = (_X_IMAGES, -next(rows) * _ROW)
        return node

    return image_node


def _wire_albedo(tree, albedo, shader) -> None:
    tree.links.new(albedo.outputs["Color"], shader.inputs["Base Color"])
    if _has_alpha(albedo.image):
        tree.links.new(albedo.outputs["Alpha"], shader.inputs["Alpha"])


def _wire_normal(tree, normal_image, shader) -> None:
    normal_map = tree.nodes.new("ShaderNodeNormalMap")
    normal_map.space = 'TANGENT'
    normal_map.location = (_X_HELPERS, normal_image.location.y)
    tree.links.new(normal_image.outputs["Color"], normal_map.inputs["Color"])
    tree.links.new(normal_map.outputs["Normal"], shader.inputs["Normal"])


def _wire_height(tree, height_image, output, height_midlevel: float) -> None:
    displacement = tree.nodes.new("ShaderNodeDisplacement")
    displacement.inputs["Midlevel"].default_value = height_midlevel
    displacement.inputs["Scale"].default_value = HEIGHT_SCALE
    displacement.location = (_X_OUTPUT - 250, -2 * _ROW)
    tree.links.new(height_image.outputs["Color"], displacement.inputs["Height"])
    tree.links.new(displacement.outputs["Displacement"], output.inputs["Displacement"])


def _wire_ao(tree, ao_image) -> None:
    """AO -> Occlusion of the glTF Material Output group (Principled BSDF has no AO input)."""
    group_node = tree.nodes.new("ShaderNodeGroup")
    group_node.node_tree = gltf_output_group()
    group_node.location = (_X_OUTPUT, -3 * _ROW)
    tree.links.new(ao_image.outputs["Color"], group_node.inputs[GLTF_OCCLUSION])


def gltf_output_group() -> bpy.types.ShaderNodeTree:
    """The "glTF Material Output" node group, reused when the file has one (from the glTF importer, or
    an older PBR Forge that made only Occlusion: the missing inputs are added in the importer's order)."""
    group = bpy.data.node_groups.get(GLTF_GROUP_NAME)
    if group is None or group.bl_idname != "ShaderNodeTree":
        group = bpy.data.node_groups.new(GLTF_GROUP_NAME, "ShaderNodeTree")
        group.nodes.new("NodeGroupOutput")
        group.nodes.new("NodeGroupInput").location = (-200, 0)
    names = {item.name for item in group.interface.items_tree if item.item_type == 'SOCKET' and item.in_out == 'INPUT'}
    for name, default in GLTF_GROUP_INPUTS:
        if name not in names:
            socket = group.interface.new_socket(name, in_out='INPUT', socket_type="NodeSocketFloat")
            socket.default_value = default
            socket.min_value, socket.max_value = 0.0, 1.0
    return group


def _load_image(path: Path, *, is_data: bool, pack: bool, relative: bool) -> bpy.types.Image:
    # check_existing reuses the datablock of an earlier run on the same file; reload picks up new pixels.
    image = bpy.data.images.load(str(path), check_existing=True)
    image.reload()
    if relative and bpy.data.filepath and not pack:
        try:
            image.filepath = bpy.path.relpath(str(path))
        except ValueError:  # another drive than the .blend (Windows): only an absolute path can work
            pass
    if is_data:
        image.colorspace_settings.is_data = True
    else:
        image.colorspace_settings.name = "sRGB"
    if pack and image.packed_file is None:
        image.pack()
    return image


def _has_alpha(image: bpy.types.Image) -> bool:
    # Blender reports 4 channels for every PNG it loads; an RGB file has depth 24 (8-bit) or 48 (16-bit).
    return image.depth in (32, 64)
