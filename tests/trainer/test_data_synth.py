import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from addon.engine.imageio import read_image
from addon.engine.truepbr import unpack_rmaos
from trainer import contract
from trainer.data import synth
from trainer.data.degrade import bc_roundtrip
from trainer.data.common import ao_from_height, decode_normal, normal_from_height

SIZE = 64


def _seam_ratio(image: np.ndarray, axis: int) -> float:
    """Mean |step| across the wrap seam over the largest mean |step| across any interior line (joints
    between bricks or tiles are interior lines too, so a seam may be as strong as a joint, not more)."""
    steps = np.abs(np.diff(image, axis=axis))
    other_axes = tuple(a for a in range(image.ndim) if a != axis)
    seam = np.abs(np.take(image, 0, axis=axis) - np.take(image, -1, axis=axis))
    return float(seam.mean() / max(steps.mean(axis=other_axes).max(), 1e-6))


@pytest.mark.parametrize("category", contract.MATERIAL_CLASSES)
def test_every_category_tiles_without_a_seam(category):
    material = synth.generate_material(11, SIZE, category)
    for name in ("albedo", "height", "roughness", "metallic", "ao", "normal"):
        image = getattr(material, name)
        for axis in (0, 1):
            assert _seam_ratio(image, axis) < 1.25, (category, name, axis)


def test_generate_material_is_deterministic_and_in_range():
    a = synth.generate_material(5, SIZE, "metal")
    b = synth.generate_material(5, SIZE, "metal")
    c = synth.generate_material(6, SIZE, "metal")
    np.testing.assert_array_equal(a.albedo, b.albedo)
    assert not np.array_equal(a.albedo, c.albedo)
    for image in (a.albedo, a.roughness, a.metallic, a.ao, a.height):
        assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 1
    np.testing.assert_allclose(np.linalg.norm(a.normal, axis=-1), 1.0, atol=1e-5)
    assert a.metallic.max() > 0.5  # plates are bare metal where not rusted


def test_misc_materials_carry_the_labels_of_their_parts():
    pairs = set()
    for seed in range(8):  # whichever parts a seed draws
        labels = synth.generate_material(seed, 32, "misc").labels
        parts = set(labels) - {"misc"}
        assert "misc" in labels and 1 <= len(parts) <= 2 and parts <= set(synth.CATEGORIES)
        pairs.add(frozenset(parts))
    assert len(pairs) > 1  # and the parts vary with the seed


def test_misc_materials_are_made_of_two_other_non_misc_classes():
    for seed in range(8):
        labels = synth.generate_material(seed, 32, "misc").labels
        assert len(set(labels) - {"misc"}) == 2, (seed, labels)


def test_normals_are_the_opengl_normals_of_the_height():
    material = synth.generate_material(2, SIZE, "stone")
    relief = material.metadata["height_factor"] * SIZE / 1024
    np.testing.assert_allclose(material.normal, normal_from_height(material.height, relief), atol=1e-6)


def test_opengl_normal_of_a_ramp_rising_to_the_right_leans_left_and_one_rising_upwards_leans_down():
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    n = normal_from_height(ramp, strength=8)[8, 8]
    assert n[0] < 0 and abs(n[1]) < 1e-6
    rising_up = ramp.T[::-1].copy()  # higher towards row 0 (the top, +Y in OpenGL)
    n = normal_from_height(rising_up, strength=8)[8, 8]
    assert n[1] < 0 and abs(n[0]) < 1e-6


def test_ao_is_open_on_flat_ground_dark_in_a_pit_and_tileable():
    flat = np.full((256, 256), 0.5, np.float32)
    np.testing.assert_allclose(ao_from_height(flat), 1.0)
    pit = flat.copy()
    pit[120:136, 120:136] = 0.0  # 16 px wide, 5 px deep at 256 px with the default depth
    ao = ao_from_height(pit)
    # The walls hide about a quarter of the sky at the centre and more in the corner at their foot.
    assert 0.7 < ao[128, 128] < 0.9 and ao[121, 121] < ao[128, 128] and ao[5, 5] == 1.0
    # A pit across the corner is the same pit as one in the middle, shifted.
    corner = np.roll(pit, (128, 128), axis=(0, 1))
    np.testing.assert_allclose(ao_from_height(corner), np.roll(ao, (128, 128), axis=(0, 1)), atol=1e-5)


def test_old_diffuse_bakes_light_and_ao_and_zero_strength_keeps_the_albedo():
    material = synth.generate_material(4, SIZE, "stone")
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(synth.render_old_diffuse(material, rng, 0.0, bc1=False), material.albedo, atol=1e-4)
    baked = synth.render_old_diffuse(material, np.random.default_rng(0), 1.0, bc1=False)
    grooves = material.ao < 0.9
    ratio = baked.mean(-1) / np.maximum(material.albedo.mean(-1), 1e-3)
    assert ratio[grooves].mean() < ratio[~grooves].mean()


def test_bc1_roundtrip_leaves_block_artefacts_within_bc1_error():
    material = synth.generate_material(4, SIZE, "wood")
    out = bc_roundtrip(material.albedo, "bc1")
    assert out.shape == material.albedo.shape and 0 < np.abs(out - material.albedo).mean() < 0.05


def test_matsynth_shard_has_the_hugging_face_schema(tmp_path):
    materials = list(synth.generate_set(3, 32, seed=1))
    shards = synth.write_matsynth_shards(materials, tmp_path, rows_per_shard=2, rows_per_group=1)
    assert [p.name for p in shards] == ["train-00000.parquet", "train-00001.parquet"]
    file = pq.ParquetFile(shards[0])
    assert file.metadata.num_row_groups == 2
    names = file.schema_arrow.names
    for column in ("name", "category", "metadata", *synth.MATSYNTH_IMAGE_COLUMNS):
        assert column in names
    features = json.loads(file.schema_arrow.metadata[b"huggingface"])["info"]["features"]
    assert features["category"]["names"] == list(contract.MATERIAL_CLASSES)
    row = file.read_row_group(0).to_pylist()[0]
    assert row["metadata"]["license"] == "cc0" and row["displacement"] is None
    assert contract.MATERIAL_CLASSES[row["category"]] == materials[0].category
    height_png = tmp_path / "h.png"
    height_png.write_bytes(row["height"]["bytes"])
    np.testing.assert_allclose(read_image(height_png)[..., 0], materials[0].height, atol=1 / 65535)


def test_skyrim_writer_pairs_inputs_and_true_pbr_targets(tmp_path):
    material = next(synth.generate_set(1, 32, seed=2))
    synth.write_skyrim_set([material], tmp_path)
    rel = f"textures/synth/{material.category}/{material.name}"
    diffuse = read_image(tmp_path / "inputs" / f"{rel}.dds")
    normal = read_image(tmp_path / "inputs" / f"{rel}_n.dds")
    assert diffuse.shape[:2] == (32, 32) and normal.shape[-1] == 4
    # The vanilla normal is DirectX: decoding it as such gives back the OpenGL normals (within BC3 error).
    decoded = decode_normal(normal, directx=True)
    assert np.mean(np.sum(decoded * material.normal, axis=-1)) > 0.98
    maps = unpack_rmaos(read_image(tmp_path / "targets" / f"{rel}_rmaos.png"))
    np.testing.assert_allclose(maps["roughness"], material.roughness, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(maps["ao"], material.ao, atol=1 / 255 + 1e-6)
    labels = json.loads((tmp_path / "targets" / "labels.json").read_text())
    assert labels[rel] == list(material.labels)


def test_synth_command_writes_both_layouts(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    synth.register_cli(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--count", "2", "--size", "32"])
    assert args.func(args) == 0
    assert list((tmp_path / "matsynth" / "data").glob("*.parquet"))
    assert len(list((tmp_path / "skyrim" / "inputs").rglob("*_n.dds"))) == 2
