"""Find a material's diffuse and normal images.

First by wiring (an image feeding the Principled BSDF's Base Color, an image feeding a Normal Map
node that feeds its Normal), then by file name (Skyrim `_n` suffix, Node Wrangler tags) among the
material's image nodes, which is what NIF importers and hand-made node trees leave behind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

import bpy
import numpy as np

from ..engine import naming
from ..engine.errors import PBRForgeError
from ..engine.normalmaps import stores_no_z


@dataclass
class DetectedInputs:
    diffuse: bpy.types.Image | None = None
    normal: bpy.types.Image | None = None
    # "directx" for Skyrim `_n` files, "opengl" for Blender-style names, "auto" when the name says nothing.
    normal_convention: str = "auto"
    how: list[str] = field(default_factory=list)  # one line per finding, shown in the panel

    @property
    def base_name(self) -> str:
        """The name outputs are derived from: the diffuse file stem without its Skyrim suffix."""
        if self.diffuse is None:
            return ""
        source = self.diffuse.filepath or self.diffuse.name
        stem = PurePath(bpy.path.basename(source) or self.diffuse.name).stem
        base, _suffix = naming.split_suffix(stem)
        return bpy.path.clean_name(base)


def detect_inputs(material: bpy.types.Material) -> DetectedInputs:
    found = DetectedInputs()
    tree = material.node_tree
    if tree is None:
        return found

    for shader in (n for n in tree.nodes if n.type == 'BSDF_PRINCIPLED'):
        if found.diffuse is None:
            node = _upstream_image(shader.inputs["Base Color"])
            if node is not None:
                found.diffuse = node.image
                found.how.append(f"Diffuse '{node.image.name}' is connected to Base Color")
        if found.normal is None:
            normal_map = _upstream_node(shader.inputs["Normal"], 'NORMAL_MAP')
            node = _upstream_image(normal_map.inputs["Color"]) if normal_map else None
            if node is not None:
                found.normal = node.image
                found.how.append(f"Normal '{node.image.name}' is connected through a Normal Map node")

    if found.diffuse is None or found.normal is None:
        for node in tree.nodes:
            if node.type != 'TEX_IMAGE' or node.image is None or node.image in (found.diffuse, found.normal):
                continue
            role = _role_by_name(node.image)
            if role == "diffuse" and found.diffuse is None:
                found.diffuse = node.image
                found.how.append(f"Diffuse '{node.image.name}' found by its file name")
            elif role == "normal" and found.normal is None:
                found.normal = node.image
                found.how.append(f"Normal '{node.image.name}' found by its file name")

    if found.normal is not None:
        found.normal_convention = naming.normal_convention_of(_image_name(found.normal))
    return found


def _image_name(image: bpy.types.Image) -> str:
    return bpy.path.basename(image.filepath) or image.name


def _role_by_name(image: bpy.types.Image) -> str | None:
    """'diffuse', 'normal' or None, from Node Wrangler tags first, then Skyrim suffixes."""
    name = _image_name(image)
    tag = naming.tag_role(name)
    if tag == "base_color":
        return "diffuse"
    if tag == "normal":
        return "normal"
    if tag is not None:
        return None
    role = naming.role_of(name)
    return role if role in ("diffuse", "normal") else None


def _upstream_node(socket, node_type: str, depth: int = 6):
    """The first node of `node_type` feeding `socket`, looking through reroutes and mix nodes."""
    if depth == 0 or not socket.is_linked:
        return None
    node = socket.links[0].from_node
    if node.type == node_type:
        return node
    for upstream in node.inputs:
        found = _upstream_node(upstream, node_type, depth - 1)
        if found is not None:
            return found
    return None


def _upstream_image(socket):
    node = _upstream_node(socket, 'TEX_IMAGE')
    return node if node is not None and node.image is not None else None


# A tangent-space normal map points mostly out of the surface: its blue channel (Z) is bright
# everywhere and its vectors have unit length. A diffuse wired as a normal fails both.
_MIN_NORMAL_BLUE = 0.6
_MAX_LENGTH_ERROR = 0.25


def check_normal_statistics(normal: np.ndarray, image_name: str) -> None:
    """Refuse an image that cannot be a tangent-space normal map (e.g. a diffuse in the normal slot)."""
    rgb = normal[:, :, :3].astype(np.float32)
    if stores_no_z(rgb[:, :, 2]):
        return  # two-channel (BC5) normal: Z is rebuilt from X and Y, nothing to judge by
    vectors = rgb * 2.0 - 1.0
    length_error = float(np.median(np.abs(np.linalg.norm(vectors, axis=2) - 1.0)))
    mean_blue = float(rgb[:, :, 2].mean())
    if mean_blue < _MIN_NORMAL_BLUE or length_error > _MAX_LENGTH_ERROR:
        raise PBRForgeError(
            f"The image '{image_name}' used as the normal map does not look like a tangent-space normal map "
            f"(mean blue {mean_blue:.2f}); connect the _n texture to the Normal Map node instead."
        )
