"""A converted material carries its validation, and the panel shows it (real bpy)."""
from types import SimpleNamespace

import numpy as np
import pytest

from addon.engine import validation
from addon.engine.imageio import read_image

from .builders import make_material, make_object, make_texture_pair


class _RecordingLayout:
    """Stands in for a UILayout: records the labels, buttons and icons drawn, in order."""

    enabled = True

    def __init__(self):
        self.labels = []

    def box(self):
        return self

    def label(self, text="", icon='NONE'):
        self.labels.append((text, icon))

    row = column = box

    def operator(self, idname, icon='NONE'):
        self.labels.append((f"[{idname}]", icon))

    def prop(self, data, name):
        self.labels.append((f"<prop {name}>", 'NONE'))

    def progress(self, factor=0.0, type='BAR', text=""):
        self.labels.append((text, 'NONE'))

    def template_icon(self, icon_value, scale=1.0):
        self.labels.append((f"<icon {icon_value}>", 'NONE'))


def _check_drawn(bpy, obj) -> list[tuple[str, str]]:
    """What the 3D view's PBR Forge panel draws for the object, from its check box on."""
    from addon.ui.panels import PBR_FORGE_PT_main

    layout = _RecordingLayout()
    PBR_FORGE_PT_main.draw(SimpleNamespace(layout=layout), SimpleNamespace(scene=bpy.context.scene, object=obj))
    start = next(i for i, (text, _) in enumerate(layout.labels) if text.startswith("Check: "))
    end = layout.labels.index(("[pbr_forge.render_preview]", 'RENDER_STILL'))
    return layout.labels[start:end + 1]


def test_a_converted_material_carries_the_score_of_its_conversion(bpy, prefs, tmp_path):
    diffuse_path, normal_path = make_texture_pair(tmp_path / "textures", width=96, height=64)
    obj = make_object(bpy, make_material(bpy, "Wall", diffuse_path, normal_path))

    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}
    check = obj.material_slots[0].material.pbr_forge_check
    assert check.verdict in validation.LEVELS

    # The same check on the written maps (8/16-bit files of the same result) gives the same score.
    out = tmp_path / "out"
    normal = read_image(out / "wall_normal.png")[..., :3] * 2 - 1
    written = SimpleNamespace(albedo=read_image(out / "wall_albedo.png")[..., :3], normal=normal,
                              **{name: read_image(out / f"wall_{name}.png")[..., 0]
                                 for name in ("roughness", "metallic", "height")})
    expected = validation.validate(validation.original_preview(read_image(diffuse_path), read_image(normal_path)),
                                   written)
    assert check.score == pytest.approx(expected.score, abs=0.01)
    assert bool(check.reasons) == (check.verdict != "pass")

    from addon.ui.panels import CHECK_ICONS

    drawn = _check_drawn(bpy, obj)
    assert drawn[0] == (f"Check: {check.verdict.upper()}, score {check.score:.3f}", CHECK_ICONS[check.verdict])
    assert [text for text, _ in drawn[1:-1]] == list(filter(None, check.reasons.split(" | ")))


def test_the_cycles_preview_renders_both_materials_and_reaches_the_panel(bpy, prefs, tmp_path):
    diffuse_path, normal_path = make_texture_pair(tmp_path / "textures", width=96, height=64)
    obj = make_object(bpy, make_material(bpy, "Wall", diffuse_path, normal_path))
    assert bpy.ops.pbr_forge.convert_material() == {'FINISHED'}
    scenes, objects = len(bpy.data.scenes), len(bpy.data.objects)

    assert bpy.ops.pbr_forge.render_preview() == {'FINISHED'}

    check = obj.material_slots[0].material.pbr_forge_check
    from addon.blender.preview import PREVIEW_SIZE
    for image in (check.preview, check.source_preview):
        assert tuple(image.size) == (PREVIEW_SIZE, PREVIEW_SIZE) and image.packed_file is not None
        pixels = np.empty(PREVIEW_SIZE * PREVIEW_SIZE * image.channels, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        assert pixels.reshape(-1, image.channels)[:, :3].std() > 0.01  # lit relief, not a blank frame
    assert (len(bpy.data.scenes), len(bpy.data.objects)) == (scenes, objects)  # nothing left behind

    assert [text for text, _ in _check_drawn(bpy, obj) if text.startswith("<icon")] == [
        f"<icon {check.source_preview.preview.icon_id}>", f"<icon {check.preview.preview.icon_id}>"]


def test_a_material_never_converted_has_no_check(bpy, prefs):
    material = bpy.data.materials.new("Plain")
    assert material.pbr_forge_check.verdict == ""
