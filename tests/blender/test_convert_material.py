"""Converting a material: a new, correctly wired PBR material; the original is left untouched."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from addon.engine.imageio import read_image

from .builders import make_material, make_object, make_texture_pair, node_tree_snapshot

MAPS = ("albedo", "roughness", "metallic", "ao", "height", "normal")


def _linked_image(socket):
    assert socket.is_linked, socket.name
    node = socket.links[0].from_node
    assert node.type == 'TEX_IMAGE'
    return node.image


def _pixels(image):
    width, height = image.size
    buffer = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    return buffer.reshape(height, width, image.channels)


def test_convert_material_makes_a_wired_pbr_material_and_keeps_the_original(bpy, prefs, tmp_path):
    diffuse_path, normal_path = make_texture_pair(tmp_path / "textures", width=96, height=64)
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (diffuse_path, normal_path)}
    original = make_material(bpy, "Wall", diffuse_path, normal_path)
    before = node_tree_snapshot(original)
    obj = make_object(bpy, original)

    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}

    converted = obj.material_slots[0].material
    assert converted is not original and converted.name == "wall_PBR"
    assert converted.pbr_forge_source == original and original.use_fake_user
    assert node_tree_snapshot(original) == before
    assert all((p.stat().st_mtime_ns, p.read_bytes()) == stamp for p, stamp in stamps.items())

    tree = converted.node_tree
    shader = next(n for n in tree.nodes if n.type == 'BSDF_PRINCIPLED')
    output = next(n for n in tree.nodes if n.type == 'OUTPUT_MATERIAL')
    images = {
        "albedo": _linked_image(shader.inputs["Base Color"]),
        "roughness": _linked_image(shader.inputs["Roughness"]),
        "metallic": _linked_image(shader.inputs["Metallic"]),
    }
    normal_map = shader.inputs["Normal"].links[0].from_node
    assert normal_map.type == 'NORMAL_MAP' and normal_map.space == 'TANGENT'
    images["normal"] = _linked_image(normal_map.inputs["Color"])
    displacement = output.inputs["Displacement"].links[0].from_node
    assert displacement.type == 'DISPLACEMENT'
    assert displacement.inputs["Midlevel"].default_value == pytest.approx(0.5)
    images["height"] = _linked_image(displacement.inputs["Height"])
    group = next(n for n in tree.nodes if n.type == 'GROUP')
    assert group.node_tree.name == "glTF Material Output"
    images["ao"] = _linked_image(group.inputs["Occlusion"])
    assert converted.displacement_method == 'BUMP'
    assert not shader.inputs["Alpha"].is_linked  # the diffuse has no alpha

    out_dir = tmp_path / "out"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"wall_{m}.png" for m in MAPS)
    for name, image in images.items():
        assert tuple(image.size) == (96, 64), name
        assert image.packed_file is None and os.path.samefile(bpy.path.abspath(image.filepath),
                                                              out_dir / f"wall_{name}.png")
        assert image.colorspace_settings.is_data == (name != "albedo"), name
        pixels = _pixels(image)
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0
        # A map may be uniform only where a uniform answer is a real one: no metal, or no occlusion at all.
        assert pixels[..., 0].std() > 0 or name == "metallic" or (name == "ao" and pixels.min() == 1.0), name
    # The normal PNG holds OpenGL unit vectors encoded as (n + 1) / 2.
    vectors = read_image(out_dir / "wall_normal.png")[..., :3] * 2 - 1
    assert np.abs(np.linalg.norm(vectors, axis=2) - 1).mean() < 0.05
    assert vectors[..., 2].mean() > 0.5

    summary = bpy.context.scene.pbr_forge
    assert (summary.last_count, summary.last_unit) == (6, "maps") and summary.last_provider
    assert summary.last_seconds > 0 and f"in {summary.last_seconds:.1f} s" in summary.last_message


def test_the_tile_preferences_reach_the_runs_one_converter_only_with_custom_tiling(bpy, prefs):
    from addon.operators.convert import RunSettings

    settings = RunSettings.from_context(bpy.context)
    converter = settings.converter()
    assert settings.converter() is converter and settings.manifest is converter.manifest  # one per run
    assert (converter.tile, converter.overlap) == (128, 16)
    prefs.custom_tiling = False
    default = RunSettings.from_context(bpy.context).converter()
    assert (default.tile, default.overlap) == (default.manifest.tile, default.manifest.overlap) != (128, 16)


def test_the_manifest_height_midlevel_reaches_the_displacement_node(bpy, prefs, tmp_path):
    manifest_path = Path(prefs.models_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["conventions"]["height_midlevel"] = 0.25  # not the shipped 0.5: it must come from the manifest
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    diffuse_path, normal_path = make_texture_pair(tmp_path / "textures", width=32, height=32)
    obj = make_object(bpy, make_material(bpy, "Wall", diffuse_path, normal_path))

    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}

    output = next(n for n in obj.material_slots[0].material.node_tree.nodes if n.type == 'OUTPUT_MATERIAL')
    displacement = output.inputs["Displacement"].links[0].from_node
    assert displacement.inputs["Midlevel"].default_value == pytest.approx(0.25)


def test_revert_puts_the_original_back_in_one_click(bpy, prefs, tmp_path):
    original = make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures"))
    obj = make_object(bpy, original)
    bpy.ops.pbr_forge.convert_material()
    assert obj.material_slots[0].material is not original

    assert bpy.ops.pbr_forge.revert_material() == {'FINISHED'}
    assert obj.material_slots[0].material == original
    assert not bpy.ops.pbr_forge.revert_material.poll()


def test_convert_selected_converts_each_material_once(bpy, prefs, tmp_path):
    first = make_material(bpy, "Wall", *make_texture_pair(tmp_path / "a", name="wall"))
    second = make_material(bpy, "Floor", *make_texture_pair(tmp_path / "b", name="floor"))
    one, two, three = make_object(bpy, first, "One"), make_object(bpy, second, "Two"), make_object(bpy, first, "Three")

    assert bpy.ops.pbr_forge.convert_selected() == {'FINISHED'}

    assert one.material_slots[0].material.name == "wall_PBR"
    assert three.material_slots[0].material == one.material_slots[0].material
    assert two.material_slots[0].material.name == "floor_PBR"
    assert bpy.context.scene.pbr_forge.last_count == 12


def test_existing_outputs_are_not_overwritten_unless_asked(bpy, prefs, tmp_path):
    original = make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures"))
    obj = make_object(bpy, original)
    (tmp_path / "out").mkdir()
    blocker = tmp_path / "out" / "wall_albedo.png"
    blocker.write_bytes(b"keep me")

    with pytest.raises(RuntimeError, match="already exists"):
        bpy.ops.pbr_forge.convert_material()
    assert blocker.read_bytes() == b"keep me" and obj.material_slots[0].material == original

    prefs.overwrite = True
    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}
    assert read_image(blocker).shape[:2] == (64, 96)


def test_convert_pair_makes_a_material_from_two_files(bpy, prefs, tmp_path):
    diffuse_path, _normal_path = make_texture_pair(tmp_path / "textures", name="rock")
    # The normal is found beside the diffuse by its Skyrim `_n` name.
    assert bpy.ops.pbr_forge.convert_pair(diffuse_path=str(diffuse_path)) == {'FINISHED'}
    material = bpy.data.materials["rock_PBR"]
    assert material.use_fake_user
    assert (tmp_path / "out" / "rock_normal.png").is_file()
