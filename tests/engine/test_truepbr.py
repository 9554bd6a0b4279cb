"""Community Shaders True PBR output: file names, block formats, channel packing, patcher JSON."""
import json

import numpy as np
import pytest

from addon.engine import dds, truepbr
from addon.engine.errors import PBRForgeError
from addon.engine.pipeline import PBRResult
from .helpers import DdsLayout

SIZE = 64


def make_result(size, *, with_alpha=False, flat_height=False):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    wave = lambda fx, fy, phase: 0.5 + 0.4 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)  # noqa: E731
    normal = np.dstack([0.4 * np.sin(2 * np.pi * x), 0.4 * np.cos(2 * np.pi * y), np.ones_like(x)])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return PBRResult(
        albedo=np.dstack([wave(1, 0, 0), wave(0, 1, 1), wave(1, 1, 2)]).astype(np.float32),
        alpha=wave(1, 1, 0).astype(np.float32) if with_alpha else None,
        roughness=wave(1, 0, 0.5).astype(np.float32),
        metallic=(x > 0.5).astype(np.float32),
        ao=wave(0, 1, 1.5).astype(np.float32),
        height=np.full_like(x, 0.5) if flat_height else wave(1, 1, 0.3).astype(np.float32),
        normal=normal.astype(np.float32),
        provider="CPUExecutionProvider", warnings=[], seconds=0.0, material_scores={},
    )


def _decoded(path):
    layout = DdsLayout(path.read_bytes())
    return layout, layout.decode(0).astype(int)


def _as_uint8(values):
    return np.rint(np.clip(values, 0, 1) * 255).astype(int)


def test_the_set_is_four_dds_files_under_textures_pbr(tmp_path):
    written = truepbr.write_truepbr_set(make_result(SIZE), tmp_path, "armor/iron/Cuirass")
    folder = tmp_path / "textures" / "pbr" / "armor" / "iron"
    assert written == {
        "albedo": folder / "Cuirass.dds", "normal": folder / "Cuirass_n.dds",
        "rmaos": folder / "Cuirass_rmaos.dds", "height": folder / "Cuirass_p.dds",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written.values())
    formats = {role: DdsLayout(path.read_bytes()) for role, path in written.items()}
    assert {role: layout.dxgi for role, layout in formats.items()} == \
        {"albedo": 99, "normal": 98, "rmaos": 98, "height": 80}
    assert all(layout.mip_count == dds.mip_count(SIZE, SIZE) for layout in formats.values())


def test_albedo_keeps_colour_and_the_diffuse_alpha(tmp_path):
    result = make_result(SIZE, with_alpha=True)
    written = truepbr.write_truepbr_set(result, tmp_path, "clutter/bowl")
    _layout, pixels = _decoded(written["albedo"])
    assert np.abs(pixels[..., :3] - _as_uint8(result.albedo)).mean() < 4  # four independent channels
    assert np.abs(pixels[..., 3] - _as_uint8(result.alpha)).max() <= 12


def test_albedo_is_opaque_without_a_diffuse_alpha(tmp_path):
    written = truepbr.write_truepbr_set(make_result(SIZE), tmp_path, "clutter/bowl")
    _layout, pixels = _decoded(written["albedo"])
    assert pixels[..., 3].min() >= 254


def test_normal_is_directx_with_green_flipped(tmp_path):
    result = make_result(SIZE)
    written = truepbr.write_truepbr_set(result, tmp_path, "rock")
    _layout, pixels = _decoded(written["normal"])
    stored = pixels[..., :3] / 255 * 2 - 1
    assert np.abs(stored[..., 1] - (-result.normal[..., 1])).mean() < 0.02
    assert np.abs(stored[..., 0] - result.normal[..., 0]).mean() < 0.02
    # and not the OpenGL green: the test would catch a missing flip
    assert np.abs(stored[..., 1] - result.normal[..., 1]).mean() > 0.2


def test_rmaos_packs_roughness_metallic_ao_and_full_specular(tmp_path):
    result = make_result(SIZE)
    written = truepbr.write_truepbr_set(result, tmp_path, "wall")
    _layout, pixels = _decoded(written["rmaos"])
    for channel, values in enumerate((result.roughness, result.metallic, result.ao)):
        assert np.abs(pixels[..., channel] - _as_uint8(values)).mean() < 2.5, channel
    assert pixels[..., 3].min() >= 254


def test_height_is_single_channel_bc4(tmp_path):
    result = make_result(SIZE)
    written = truepbr.write_truepbr_set(result, tmp_path, "wall")
    layout, pixels = _decoded(written["height"])
    assert layout.format == "BC4"
    assert np.abs(pixels[..., 0] - _as_uint8(result.height)).max() <= 6


def test_a_name_escaping_the_output_is_refused_before_writing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PBRForgeError):
        truepbr.write_truepbr_set(make_result(8), out, "../../evil")
    assert list(tmp_path.rglob("*.dds")) == []


def test_patcher_json_lists_entries_in_the_patcher_format(tmp_path):
    entries = [truepbr.patcher_entry("architecture/whiterun/WRWoodPlank01", make_result(16)),
               truepbr.patcher_entry("armor/iron/cuirass", make_result(16, flat_height=True))]
    path = truepbr.write_patcher_json(entries, tmp_path / "PBRNifPatcher" / "mod.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert [e["texture"] for e in loaded] == ["architecture\\whiterun\\WRWoodPlank01", "armor\\iron\\cuirass"]
    first = loaded[0]
    assert first == {
        "texture": "architecture\\whiterun\\WRWoodPlank01", "emissive": False, "parallax": True,
        "subsurface": False, "specular_level": 0.04, "roughness_scale": 1.0,
        "displacement_scale": truepbr.DISPLACEMENT_SCALE, "subsurface_color": [1.0, 1.0, 1.0],
        "subsurface_opacity": 1.0,
    }  # no smooth_angle: the patchers would re-weld the normals of every matching shape
    assert loaded[1]["parallax"] is False  # a flat height map gets no parallax


def test_entry_options_glow_locked_normal_and_a_requested_smooth_angle():
    entry = truepbr.patcher_entry("dungeons/lamp", make_result(16), emissive=True, lock_normal=True, smooth_angle=60)
    assert entry["emissive"] is True and entry["lock_normal"] is True and entry["smooth_angle"] == 60
    assert "lock_normal" not in truepbr.patcher_entry("dungeons/lamp", make_result(16))


def test_height_is_centred_on_the_surface_level_without_losing_relief(tmp_path):
    result = make_result(SIZE)
    relief = result.height - result.height.mean()
    result.height = 0.66 + relief * 0.5  # what the models gave: the mean well above the surface level
    written = truepbr.write_truepbr_set(result, tmp_path, "wall")
    _layout, pixels = _decoded(written["height"])
    stored = pixels[..., 0] / 255
    assert abs(stored.mean() - 0.5) < 0.01
    assert np.abs((stored - stored.mean()) - relief * 0.5).max() < 0.03  # same relief, only shifted


def test_relief_too_tall_to_centre_is_scaled_not_clipped():
    height = np.array([[0.9, 0.9, 0.9, 0.0]], np.float32)  # mean 0.675; shifted, 0 would become -0.175
    centred = truepbr.centred_height(height)
    assert centred.mean() == pytest.approx(0.5) and centred.min() == pytest.approx(0.0)
    assert centred[0, 0] == pytest.approx(0.5 + 0.225 * 0.5 / 0.675)


def test_glow_is_carried_as_srgb_bc7_with_mips_and_a_locked_normal_writes_no_n(tmp_path):
    glow = np.zeros((32, 16, 3), np.float32)
    glow[8:16, 4:12] = (1.0, 0.6, 0.2)
    written = truepbr.write_truepbr_set(make_result(SIZE), tmp_path, "dungeons/lamp", glow=glow, lock_normal=True)
    assert set(written) == {"albedo", "rmaos", "height", "glow"}
    assert written["glow"].name == "lamp_g.dds"
    layout, pixels = _decoded(written["glow"])
    assert (layout.dxgi, layout.width, layout.height, layout.mip_count) == (99, 16, 32, dds.mip_count(16, 32))
    assert np.abs(pixels[..., :3] - _as_uint8(glow)).max() <= 8
    assert not (tmp_path / "textures/pbr/dungeons/lamp_n.dds").exists()


def test_the_trainer_reads_back_the_rmaos_layout_the_engine_writes():
    # One channel layout for both sides: the Skyrim reader unpacks `_rmaos` files the add-on wrote.
    result = make_result(SIZE)
    stored = truepbr.rmaos_rgba(result).astype(np.float32) / 255.0
    maps = truepbr.unpack_rmaos(stored)
    for name in ("roughness", "metallic", "ao"):
        assert np.abs(maps[name] - getattr(result, name)).max() <= 0.5 / 255 + 1e-6, name
    assert np.all(maps["specular"] == truepbr.RMAOS_SPECULAR)
    assert np.all(truepbr.unpack_rmaos(stored[..., :3])["specular"] == truepbr.RMAOS_SPECULAR)
    from trainer.data import skyrim, synth
    assert skyrim.unpack_rmaos is truepbr.unpack_rmaos and synth.pack_rmaos is truepbr.pack_rmaos
