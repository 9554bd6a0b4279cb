"""Cancelling and bad input change nothing: no material, no image, no file, a one-sentence report."""
import numpy as np
import pytest

from .builders import make_material, make_object, make_texture_pair, node_tree_snapshot


def _state(bpy, tmp_path, obj):
    out = tmp_path / "out"
    files = sorted(p.relative_to(out) for p in out.rglob("*")) if out.exists() else []
    return (sorted(m.name for m in bpy.data.materials), sorted(i.name for i in bpy.data.images),
            files, [s.material for s in obj.material_slots] if obj else None)


def test_cancel_mid_run_leaves_no_material_images_or_files(bpy, prefs, tmp_path):
    from addon.operators.convert import ConversionQueue, MaterialConversion, RunSettings

    # Larger than one tile, so the job takes several steps.
    original = make_material(bpy, "Wall", *make_texture_pair(tmp_path / "textures", width=320, height=256))
    obj = make_object(bpy, original)
    before = _state(bpy, tmp_path, obj)

    controller = ConversionQueue([MaterialConversion(RunSettings.from_context(bpy.context), original, [(obj, 0)])])
    controller.start()
    controller.step()
    assert not controller.done
    controller.cancel()

    assert _state(bpy, tmp_path, obj) == before
    assert not original.use_fake_user


def test_poll_is_false_without_an_active_material(bpy, prefs):
    assert not bpy.ops.pbr_forge.convert_material.poll()  # nothing in the scene
    make_object(bpy, None)
    assert not bpy.ops.pbr_forge.convert_material.poll()
    assert not bpy.ops.pbr_forge.convert_selected.poll()
    assert not bpy.ops.pbr_forge.revert_material.poll()


def _assert_refused(bpy, tmp_path, obj, message):
    before = _state(bpy, tmp_path, obj)
    snapshot = node_tree_snapshot(obj.material_slots[0].material)
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.pbr_forge.convert_material()
    assert _state(bpy, tmp_path, obj) == before
    assert node_tree_snapshot(obj.material_slots[0].material) == snapshot


def test_missing_diffuse_file_is_reported_and_nothing_changes(bpy, prefs, tmp_path):
    diffuse_path, normal_path = make_texture_pair(tmp_path / "textures")
    obj = make_object(bpy, make_material(bpy, "Wall", diffuse_path, normal_path))
    diffuse_path.unlink()
    _assert_refused(bpy, tmp_path, obj, "does not exist; relink it")


def test_material_without_image_nodes_is_reported(bpy, prefs, tmp_path):
    obj = make_object(bpy, make_material(bpy, "Plain", None, None))
    _assert_refused(bpy, tmp_path, obj, "No diffuse image found")


def test_diffuse_wired_as_normal_is_refused_by_its_statistics(bpy, prefs, tmp_path):
    diffuse_path, _normal_path = make_texture_pair(tmp_path / "textures")
    obj = make_object(bpy, make_material(bpy, "Wrong", diffuse_path, diffuse_path))
    _assert_refused(bpy, tmp_path, obj, "does not look like a tangent-space normal map")


def test_the_normal_check_skips_exactly_the_maps_that_store_no_z(bpy):
    """A dark image with a little blue is no two-channel normal (the pipeline would use its blue as Z)."""
    from addon.blender.detect import check_normal_statistics
    from addon.engine.errors import PBRForgeError

    image = np.random.default_rng(2).uniform(0.3, 0.7, (16, 16, 3)).astype(np.float32)
    image[..., 2] = 0.0
    check_normal_statistics(image, "bc5_n.dds")  # two-channel: nothing to judge by
    image[..., 2] = 0.01
    with pytest.raises(PBRForgeError, match="does not look like a tangent-space normal map"):
        check_normal_statistics(image, "dark.png")


def test_material_linked_from_a_library_is_refused(bpy, prefs, tmp_path):
    library_path = tmp_path / "library.blend"
    source = make_material(bpy, "Shared", *make_texture_pair(tmp_path / "textures"))
    bpy.data.libraries.write(str(library_path), {source})
    bpy.data.materials.remove(source)
    with bpy.data.libraries.load(str(library_path), link=True) as (data_from, data_to):
        data_to.materials = ["Shared"]
    linked = data_to.materials[0]
    assert linked.library is not None
    obj = make_object(bpy, linked)
    _assert_refused(bpy, tmp_path, obj, "linked from another .blend file")
