"""A user's files are never lost or stranded, converted materials are not converted again, and the
material works with Blender's glTF importer."""
import base64
import json
import struct

import pytest

from .builders import make_material, make_object, make_texture_pair


def test_unsaved_blend_without_output_folder_packs_the_maps(bpy, prefs, tmp_path):
    # The extension's own folder is deleted on uninstall: maps of an unsaved file must not go there.
    prefs.output_dir = ""
    assert not bpy.data.filepath
    obj = make_object(bpy, make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures")))

    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}

    images = [n.image for n in obj.material_slots[0].material.node_tree.nodes if n.type == 'TEX_IMAGE']
    assert len(images) == 6
    assert [image.name for image in images if image.packed_file is None] == []
    assert sorted(image.filepath for image in images) == sorted(
        f"//textures/wall_{m}.png" for m in ("albedo", "ao", "height", "metallic", "normal", "roughness"))
    assert [image.size[:] for image in images] == [(96, 64)] * 6
    assert "packed into it" in bpy.context.scene.pbr_forge.last_warnings
    assert sorted(p.name for p in (tmp_path / "textures").iterdir()) == ["wall.png", "wall_n.png"]


def test_saved_blend_gets_relative_image_paths(bpy, prefs, tmp_path):
    prefs.output_dir = ""
    obj = make_object(bpy, make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures")))
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))

    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}

    images = [n.image for n in obj.material_slots[0].material.node_tree.nodes if n.type == 'TEX_IMAGE']
    assert sorted(image.filepath for image in images) == sorted(
        f"//pbr_forge/wall_{m}.png" for m in ("albedo", "ao", "height", "metallic", "normal", "roughness"))
    assert all(image.packed_file is None for image in images)
    assert (tmp_path / "pbr_forge" / "wall_albedo.png").is_file()


def test_a_converted_material_is_not_converted_again(bpy, prefs, tmp_path):
    obj = make_object(bpy, make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures")))
    bpy.ops.pbr_forge.convert_material()
    assert obj.material_slots[0].material.name == "wall_PBR"

    assert not bpy.ops.pbr_forge.convert_material.poll()
    with pytest.raises(RuntimeError, match="was made by PBR Forge"):
        bpy.ops.pbr_forge.convert_material()
    with pytest.raises(RuntimeError, match="'wall_PBR' was made by PBR Forge from 'Wall'; convert that original"):
        bpy.ops.pbr_forge.convert_selected()
    assert not (tmp_path / "out" / "wall_albedo_albedo.png").exists()


def test_an_output_map_is_refused_as_a_pair_input(bpy, prefs, tmp_path):
    obj = make_object(bpy, make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures")))
    bpy.ops.pbr_forge.convert_material()
    albedo = tmp_path / "out" / "wall_albedo.png"

    with pytest.raises(RuntimeError, match="is a map PBR Forge made"):
        bpy.ops.pbr_forge.convert_pair(diffuse_path=str(albedo), normal_path=str(tmp_path / "out" / "wall_normal.png"))
    assert not (tmp_path / "out" / "wall_albedo_albedo.png").exists()
    assert obj.material_slots[0].material.name == "wall_PBR"

    # A vendor's own albedo (no PBR Forge set beside it) is an ordinary input.
    vendor = tmp_path / "vendor" / "rock_albedo.png"
    vendor.parent.mkdir()
    vendor.write_bytes(albedo.read_bytes())
    assert bpy.ops.pbr_forge.convert_pair(diffuse_path=str(vendor)) == {'FINISHED'}
    assert (tmp_path / "out" / "rock_albedo_albedo.png").is_file()


def _gltf_with_volume(path):
    """One triangle whose material uses KHR_materials_volume (the importer then wires Thickness)."""
    positions = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    document = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_materials_volume"],
        "scenes": [{"nodes": [0]}], "scene": 0, "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "material": 0}]}],
        "materials": [{"name": "Glass", "extensions": {"KHR_materials_volume": {"thicknessFactor": 0.5}}}],
        "buffers": [{"byteLength": len(positions),
                     "uri": "data:application/octet-stream;base64," + base64.b64encode(positions).decode()}],
        "bufferViews": [{"buffer": 0, "byteLength": len(positions)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]}],
    }
    path.write_text(json.dumps(document))
    return path


def test_gltf_import_with_volume_into_a_converted_file(bpy, prefs, tmp_path):
    obj = make_object(bpy, make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures")))
    bpy.ops.pbr_forge.convert_material()
    material = obj.material_slots[0].material
    ao = next(n for n in material.node_tree.nodes if n.type == 'TEX_IMAGE' and n.label == "Ambient Occlusion")
    assert ao.outputs["Color"].links[0].to_socket.name == "Occlusion"

    assert bpy.ops.import_scene.gltf(filepath=str(_gltf_with_volume(tmp_path / "glass.gltf"))) == {'FINISHED'}

    group = bpy.data.node_groups["glTF Material Output"]
    inputs = [i.name for i in group.interface.items_tree if i.item_type == 'SOCKET' and i.in_out == 'INPUT']
    assert inputs == ["Occlusion", "Thickness"]
    glass = bpy.data.materials["Glass"]
    users = [n for n in glass.node_tree.nodes if n.type == 'GROUP' and n.node_tree == group]
    assert users and users[0].inputs["Thickness"].default_value == pytest.approx(0.5)


def test_cli_blend_points_at_its_maps_from_a_relative_output_folder(bpy, tmp_path, monkeypatch):
    import subprocess
    import sys

    from addon.cli import main

    make_texture_pair(tmp_path / "textures")
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "--input", "textures/wall.png", "--output", "converted", "--provider", "cpu"]) == 0
    # A new Blender process opens the .blend and resolves every image path against its location.
    probe = ("import bpy, json, os; bpy.ops.wm.open_mainfile(filepath='converted/wall.blend'); "
             "print(json.dumps(sorted([n.image.filepath, os.path.isfile(bpy.path.abspath(n.image.filepath))] "
             "for m in bpy.data.materials for n in m.node_tree.nodes if n.type == 'TEX_IMAGE')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True)
    images = json.loads(done.stdout.strip().splitlines()[-1])
    assert images == [[f"//wall_{m}.png", True] for m in ("albedo", "ao", "height", "metallic", "normal", "roughness")]
