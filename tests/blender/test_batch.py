"""Batch conversion of a mod folder from the panel's operator."""
from .builders import make_texture_pair


def test_batch_operator_converts_a_mod_folder_and_records_the_summary(bpy, prefs, tmp_path):
    mod = tmp_path / "mod"
    make_texture_pair(mod / "textures" / "architecture", name="wall")
    make_texture_pair(mod / "textures" / "clutter", name="pot")
    originals = {p: p.read_bytes() for p in mod.rglob("*.png")}
    settings = bpy.context.scene.pbr_forge
    settings.batch_input_dir = str(mod)
    settings.batch_output_dir = str(tmp_path / "converted")
    prefs.naming_preset = 'BLENDER'

    assert bpy.ops.pbr_forge.batch_convert() == {'FINISHED'}

    assert (settings.last_count, settings.last_unit) == (2, "texture sets")
    assert "2 texture sets converted" in settings.last_message
    written = {p.name for p in (tmp_path / "converted").rglob("*.png")}
    assert {"wall_albedo.png", "pot_normal.png"} <= written
    assert {p: p.read_bytes() for p in mod.rglob("*.png")} == originals


def test_batch_poll_needs_both_folders(bpy, prefs):
    assert not bpy.ops.pbr_forge.batch_convert.poll()
    bpy.context.scene.pbr_forge.batch_input_dir = "/somewhere"
    assert not bpy.ops.pbr_forge.batch_convert.poll()


def test_batch_operator_honours_the_input_normals_and_overwrite_preferences(bpy, prefs, tmp_path):
    import json

    from addon.engine.batch import JOURNAL_NAME, run_files_dir

    mod = tmp_path / "mod"
    make_texture_pair(mod / "textures", name="wall")
    make_texture_pair(mod / "textures", name="pot")
    out = tmp_path / "converted"
    stranger = out / "blender" / "pot_albedo.png"
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"not ours")
    settings = bpy.context.scene.pbr_forge
    settings.batch_input_dir = str(mod)
    settings.batch_output_dir = str(out)
    prefs.naming_preset = 'BLENDER'
    prefs.normal_convention = 'OPENGL'  # forced, although `_n` files are DirectX by name

    bpy.ops.pbr_forge.batch_convert()

    assert "1 texture sets converted" in settings.last_message and "1 failed" in settings.last_message
    assert stranger.read_bytes() == b"not ours"  # Overwrite Existing Files is off
    records = [json.loads(line) for line in (run_files_dir(out) / JOURNAL_NAME).read_text().splitlines()]
    done = [r for r in records if r["status"] == "done"]
    assert [r["texture"] for r in done] == ["textures/wall.png"]
    assert done[0]["inputs"]["settings"]["normal_convention"] == "opengl"

    prefs.overwrite = True
    bpy.ops.pbr_forge.batch_convert()
    assert "1 texture sets converted, 1 already done" in settings.last_message
    assert stranger.read_bytes() != b"not ours"
