"""The material builder wires each map the way Blender and the glTF exporter expect."""
import numpy as np
import pytest

from .builders import write_png


def _maps(folder, *, albedo_alpha: bool):
    rng = np.random.default_rng(1)
    paths = {name: write_png(folder / f"t_{name}.png", rng.random((16, 24)).astype(np.float32))
             for name in ("roughness", "metallic", "ao", "height")}
    paths["albedo"] = write_png(folder / "t_albedo.png", rng.random((16, 24, 4 if albedo_alpha else 3)))
    paths["normal"] = write_png(folder / "t_normal.png", np.dstack([np.full((16, 24), 0.5)] * 2 + [np.ones((16, 24))]))
    return paths


def test_albedo_alpha_drives_alpha_and_colour_spaces_are_right(bpy, empty_scene, tmp_path):
    from addon.blender.material import build_material

    material = build_material("Test", _maps(tmp_path, albedo_alpha=True), height_midlevel=0.5)
    tree = material.node_tree
    shader = next(n for n in tree.nodes if n.type == 'BSDF_PRINCIPLED')
    assert shader.inputs["Alpha"].links[0].from_socket.name == "Alpha"
    for node in (n for n in tree.nodes if n.type == 'TEX_IMAGE'):
        is_albedo = node.image.filepath.endswith("t_albedo.png")
        assert node.image.colorspace_settings.is_data != is_albedo
        assert node.image.colorspace_settings.name == ("sRGB" if is_albedo else "Non-Color")
        assert node.image.packed_file is None
    # Nodes are laid out left to right: images, helpers, shader, output.
    output = next(n for n in tree.nodes if n.type == 'OUTPUT_MATERIAL')
    assert max(n.location.x for n in tree.nodes if n.type == 'TEX_IMAGE') < shader.location.x < output.location.x


def test_rgb_albedo_leaves_alpha_alone_and_gltf_group_is_reused(bpy, empty_scene, tmp_path):
    from addon.blender.material import GLTF_GROUP_NAME, build_material

    first = build_material("A", _maps(tmp_path, albedo_alpha=False), height_midlevel=0.5)
    second = build_material("B", _maps(tmp_path, albedo_alpha=False), height_midlevel=0.5, pack=True)
    shader = next(n for n in first.node_tree.nodes if n.type == 'BSDF_PRINCIPLED')
    assert not shader.inputs["Alpha"].is_linked
    groups = [g for g in bpy.data.node_groups if g.name.startswith(GLTF_GROUP_NAME)]
    assert len(groups) == 1
    for material in (first, second):
        group_node = next(n for n in material.node_tree.nodes if n.type == 'GROUP')
        assert group_node.node_tree == groups[0] and group_node.inputs["Occlusion"].is_linked
    assert all(n.image.packed_file is not None for n in second.node_tree.nodes if n.type == 'TEX_IMAGE')


@pytest.mark.parametrize("midlevel", [0.5, 0.25])
def test_the_height_midlevel_given_reaches_the_displacement_node(bpy, empty_scene, tmp_path, midlevel):
    from addon.blender.material import build_material

    material = build_material("M", _maps(tmp_path, albedo_alpha=False), height_midlevel=midlevel)
    output = next(n for n in material.node_tree.nodes if n.type == 'OUTPUT_MATERIAL')
    displacement = output.inputs["Displacement"].links[0].from_node
    assert displacement.type == 'DISPLACEMENT'
    assert displacement.inputs["Midlevel"].default_value == pytest.approx(midlevel)


@pytest.mark.parametrize("names", [("albedo", "roughness", "metallic", "normal", "height", "ao"),
                                   ("metallic", "height"), ("normal",)])
def test_each_map_gets_the_next_image_row_and_reaches_its_socket(bpy, empty_scene, tmp_path, names):
    from addon.blender.material import _ROW, GLTF_OCCLUSION, MAP_LABELS, build_material

    all_maps = _maps(tmp_path, albedo_alpha=False)
    material = build_material("Rows", {name: all_maps[name] for name in names}, height_midlevel=0.5)
    images = {n.label: n for n in material.node_tree.nodes if n.type == 'TEX_IMAGE'}
    assert list(images) == [MAP_LABELS[name] for name in names]
    # One image per row, top to bottom in the order albedo, roughness, metallic, normal, height, ao.
    assert [round(n.location.y) for n in images.values()] == [-row * _ROW for row in range(len(names))]
    sockets = {"albedo": "Base Color", "roughness": "Roughness", "metallic": "Metallic", "normal": "Color",
               "height": "Height", "ao": GLTF_OCCLUSION}
    for name in names:
        (link,) = images[MAP_LABELS[name]].outputs["Color"].links
        assert link.to_socket.name == sockets[name]
    if "normal" in names:
        normal_map = images[MAP_LABELS["normal"]].outputs["Color"].links[0].to_node
        assert normal_map.type == 'NORMAL_MAP' and normal_map.space == 'TANGENT'
        assert normal_map.location.y == images[MAP_LABELS["normal"]].location.y
        assert normal_map.outputs["Normal"].links[0].to_socket.name == "Normal"
