import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from addon.engine.errors import ImageReadError
from addon.engine.imageio import encode_png
from addon.engine.tiling import resize_wrap
from addon.engine.truepbr import pack_rmaos, unpack_rmaos
from trainer import contract
from trainer.data import synth
from trainer.data.common import DataReport, decode_normal, encode_normal, periodic_resize
from trainer.data.matsynth import MatSynthDataset
from trainer.data.sample import DataSourceError
from trainer.data.skyrim import SkyrimDataset, find_pairs

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def materials():
    return list(synth.generate_set(4, 32, seed=3))


def _rows(materials):
    return [synth.matsynth_row(m) for m in materials]


def _write(rows, path, group=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=synth.matsynth_schema()), path, row_group_size=group)


def test_matsynth_sample_has_the_architecture_schema(tmp_path, materials):
    synth.write_matsynth_shards(materials, tmp_path)
    dataset = MatSynthDataset(tmp_path, resolution=32)
    sample = dataset.load(0, RNG, (16, 24))
    shapes = {k: tuple(v.shape) for k, v in sample.items()}
    assert shapes == {"diffuse": (3, 16, 24), "normal": (3, 16, 24), "specular": (2, 16, 24),
                      "height_prior": (1, 16, 24), "albedo": (3, 16, 24), "maps": (4, 16, 24),
                      "metallic_mask": (1, 16, 24), "labels": (13,), "valid": (7,), "domain": (), "photometric": ()}
    assert sample["valid"].tolist() == [1.0] * 7 and int(sample["domain"]) == 0
    assert sample["labels"][contract.MATERIAL_CLASSES.index(materials[0].category)] == 1


def test_matsynth_full_crop_at_source_size_is_the_stored_material_shifted_with_wrap(tmp_path, materials):
    synth.write_matsynth_shards(materials[:1], tmp_path)
    m = materials[0]
    draws = np.random.default_rng(1)
    top, left = int(draws.integers(32)), int(draws.integers(32))  # the offsets load() draws first
    sample = MatSynthDataset(tmp_path, resolution=32).load(0, np.random.default_rng(1), (32, 32))
    albedo = np.roll(sample["albedo"].numpy().transpose(1, 2, 0), (top, left), axis=(0, 1))
    np.testing.assert_allclose(albedo, m.albedo, atol=0.5 / 255 + 1e-6)
    height = np.roll(sample["maps"][3].numpy(), (top, left), axis=(0, 1))
    np.testing.assert_allclose(height, m.height, atol=1 / 65535)


def test_matsynth_crop_takes_its_height_prior_from_the_whole_texture(tmp_path, materials):
    synth.write_matsynth_shards([m for m in materials if m.category == "ground"], tmp_path)  # has relief
    dataset = MatSynthDataset(tmp_path, resolution=32)
    whole = dataset.load(0, np.random.default_rng(2), (32, 32))
    window = dataset.load(0, np.random.default_rng(2), (12, 20))
    np.testing.assert_allclose(window["height_prior"], whole["height_prior"][:, :12, :20], atol=1e-6)


def test_the_height_prior_of_a_texture_over_the_integration_size_is_at_its_pixels():
    from addon.engine.priors import PRIOR_MAX_SIDE
    from trainer.data.sample import texture_height_prior
    side = PRIOR_MAX_SIDE + 64
    normal = np.zeros((side, side, 3), np.float32)
    normal[..., 0] = 0.3 * np.sin(np.linspace(0, 2 * np.pi, side, endpoint=False))[None, :]
    normal[..., 2] = 1.0
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    prior = texture_height_prior(normal)
    assert prior.shape == (side, side) and prior.dtype == np.float32
    assert np.ptp(prior[0]) > 0.1 and np.allclose(prior, prior[:1], atol=1e-3)  # varies along x only


def test_matsynth_licence_filter_tags_and_basecolor_fallback(tmp_path, materials):
    rows = _rows(materials[:3])
    rows[0]["metadata"]["license"] = "cc-by"
    rows[1]["metadata"]["tags"] = ["metal", "rusty", "not-a-class"]
    rows[2]["diffuse"] = None
    _write(rows, tmp_path / "data" / "train-00000.parquet")
    report = DataReport()
    dataset = MatSynthDataset(tmp_path, resolution=32, report=report)
    assert len(dataset) == 2 and sum(report.skipped.values()) == 1
    assert set(dataset.labels_of(0)) == {materials[1].category, "metal"}
    maps = dataset.read_material(1)
    np.testing.assert_array_equal(maps["diffuse"], maps["albedo"])  # no diffuse column -> basecolor input
    assert len(MatSynthDataset(tmp_path, resolution=32, licenses=None)) == 3


def test_matsynth_reads_one_row_group_at_a_time(tmp_path, materials, monkeypatch):
    synth.write_matsynth_shards(materials, tmp_path, rows_per_group=1)
    dataset = MatSynthDataset(tmp_path, resolution=32)
    reads, read_row_group = [], pq.ParquetFile.read_row_group

    def counted(parquet, group, *args, **kwargs):
        table = read_row_group(parquet, group, *args, **kwargs)
        reads.append((group, table.num_rows))
        return table

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    first = dataset.read_material(2)
    assert reads == [(2, 1)]  # only the material's own group, of one row
    np.testing.assert_array_equal(dataset.read_material(2)["albedo"], first["albedo"])
    assert reads == [(2, 1)]  # read again from memory
    dataset.read_material(0)
    assert reads == [(2, 1), (0, 1)]


def test_matsynth_bad_rows_raise_user_errors_and_bad_shards_are_reported(tmp_path, materials):
    rows = _rows(materials[:2])
    rows[0]["normal"] = {"bytes": b"\x89PNG truncated", "path": "x.png"}
    rows[1]["roughness"] = {"bytes": encode_png(np.zeros((8, 8), np.float32)), "path": "r.png"}
    _write(rows, tmp_path / "data" / "train-00000.parquet")
    (tmp_path / "data" / "train-00001.parquet").write_bytes(b"not parquet")
    report = DataReport()
    dataset = MatSynthDataset(tmp_path, resolution=32, report=report)
    assert any("unreadable parquet" in r for r in report.skipped)
    with pytest.raises(ImageReadError):
        dataset.read_material(0)
    with pytest.raises(DataSourceError, match="roughness"):
        dataset.read_material(1)  # mismatched sizes


def test_matsynth_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(DataSourceError, match="parquet"):
        MatSynthDataset(tmp_path / "nowhere")


def test_known_directx_normal_flips_to_the_known_opengl_vector():
    # A DirectX texel leaning right and "up" on screen stores green < 0.5 (its +Y points down).
    # DirectX (0.48, -0.6, 0.64) is a unit vector stored as (0.74, 0.2, 0.82).
    pixel = np.array([[[0.74, 0.2, 0.82]]], np.float32)
    n = decode_normal(pixel, directx=True)[0, 0]
    np.testing.assert_allclose(n, [0.48, 0.6, 0.64], atol=1e-6)
    np.testing.assert_allclose(encode_normal(n[None, None], directx=True)[0, 0], pixel[0, 0], atol=1e-6)


def test_rmaos_round_trip_through_a_png(tmp_path):
    r, m, a, s = (RNG.random((8, 8)).astype(np.float32) for _ in range(4))
    (tmp_path / "x_rmaos.png").write_bytes(encode_png(pack_rmaos(r, m, a, s)))
    from addon.engine.imageio import read_image
    maps = unpack_rmaos(read_image(tmp_path / "x_rmaos.png"))
    for name, value in (("roughness", r), ("metallic", m), ("ao", a), ("specular", s)):
        np.testing.assert_allclose(maps[name], value, atol=0.5 / 255 + 1e-6)
    assert unpack_rmaos(np.zeros((2, 2, 3), np.float32))["specular"].min() == 1.0


def test_periodic_resize_is_the_engines_wrap_resize_after_its_box_halvings():
    rng = np.random.default_rng(4)
    image = rng.random((24, 20, 3), dtype=np.float32)
    for size in ((40, 30), (24, 33), (13, 20)):  # no halving: exactly the add-on's resize
        assert np.array_equal(periodic_resize(image, *size), resize_wrap(image, *size)), size
    grey = image[..., 0]
    assert np.array_equal(periodic_resize(grey, 40, 30), resize_wrap(grey[..., None], 40, 30)[..., 0])
    # Shrinking by 4: two box halvings, so each pixel is the mean of 4x4 (bilinear alone would alias).
    big = rng.random((64, 48), dtype=np.float32)
    assert np.allclose(periodic_resize(big, 16, 12), big.reshape(16, 4, 12, 4).mean(axis=(1, 3)))


def test_skyrim_pairs_by_relative_path_and_reads_targets(tmp_path, materials):
    synth.write_skyrim_set(materials, tmp_path)
    dataset = SkyrimDataset.from_root(tmp_path, resolution=32)
    assert len(dataset) == 4
    m = dataset.read_material(0)
    source = next(x for x in materials if x.name in dataset.material_key(0))
    assert np.mean(np.sum(m["normal"] * source.normal, axis=-1)) > 0.98  # DirectX file -> OpenGL vectors
    np.testing.assert_allclose(m["roughness"], source.roughness, atol=1 / 255 + 1e-6)
    assert m["specular"] is not None and m["specular"].shape == (32, 32)
    sample = dataset.load(0, RNG, (32, 32))
    assert sample["valid"].tolist() == [1.0] * 7 and int(sample["domain"]) == 1


def test_skyrim_suffix_rules_missing_normals_and_missing_targets(tmp_path):
    inputs, targets = tmp_path / "inputs", tmp_path / "targets"
    (inputs / "a").mkdir(parents=True)
    (targets / "a").mkdir(parents=True)
    rgb = (RNG.random((8, 8, 3)) * 255).astype(np.uint8)
    for name in ("wall_d.png", "wall_n.png", "lonely.png", "floor.png", "floor_n.png", "floor_g.png", "floor_p.png"):
        Image.fromarray(rgb).save(inputs / "a" / name)
    Image.fromarray(rgb).save(targets / "a" / "wall.png")
    report = DataReport()
    pairs = find_pairs(inputs, targets, report)
    assert [p.key for p in pairs] == ["a/floor", "a/wall"]  # _g, _p and _n are not diffuses
    assert pairs[1].albedo == targets / "a" / "wall.png" and pairs[1].rmaos is None
    assert list(report.skipped) == ["no _n normal map beside the diffuse"]
    strict = SkyrimDataset(inputs, targets, resolution=8)
    assert [p.key for p in strict.pairs] == ["a/wall"]  # floor has no target: skipped by default
    loose = SkyrimDataset(inputs, targets, resolution=8, missing_targets="unlabeled")
    floor = loose.load(0, RNG, (8, 8))
    assert floor["valid"].sum() == 0


def test_skyrim_without_targets_gives_unlabeled_samples_and_odd_inputs_load(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    grey16 = (RNG.random((16, 16)) * 65535).astype(np.uint16)
    Image.fromarray(grey16).save(inputs / "odd name (1).png")  # 16-bit grey diffuse with spaces in its name
    palette = Image.fromarray((RNG.random((8, 8, 3)) * 255).astype(np.uint8)).convert("P")
    palette.save(inputs / "odd name (1)_n.png")  # half-size palette normal: same aspect, resized
    dataset = SkyrimDataset(inputs, resolution=16)
    sample = dataset.load(0, RNG, (16, 16))
    assert sample["valid"].sum() == 0 and sample["diffuse"].shape == (3, 16, 16)
    np.testing.assert_allclose(sample["normal"].norm(dim=0).numpy(), 1.0, atol=1e-5)


def test_skyrim_mismatched_aspect_is_a_data_error(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(inputs / "x.png")
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(inputs / "x_n.png")
    with pytest.raises(DataSourceError, match="aspect"):
        SkyrimDataset(inputs, resolution=8).read_material(0)


def test_skyrim_labels_file_gives_labels(tmp_path, materials):
    synth.write_skyrim_set(materials[:1], tmp_path)
    dataset = SkyrimDataset.from_root(tmp_path, resolution=32)
    labels = json.loads((tmp_path / "targets" / "labels.json").read_text())
    assert dataset.labels_of(0) == tuple(labels[dataset.material_key(0)])
