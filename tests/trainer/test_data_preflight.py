import argparse
import json

import numpy as np
import pytest
from PIL import Image

from addon.engine.imageio import read_image
from trainer.data import preflight, synth
from trainer.data.skyrim import SkyrimDataset

RNG = np.random.default_rng(0)


def _u8(a):
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def _run(argv):
    parser = argparse.ArgumentParser()
    preflight.register_cli(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def data_with_duplicate(tmp_path):
    """Three procedural pairs with strongly baked diffuses; the first one's albedo target is replaced
    by its own diffuse. (A material whose baked light stays within compression noise of its albedo
    is a duplicate by design, so the fixture picks materials with visible relief.)"""
    materials = []
    for seed, category in enumerate(("leather", "plastic", "wood")):
        material = synth.generate_material(seed, 32, category)
        material.diffuse = synth.render_old_diffuse(material, np.random.default_rng(seed), 1.0, bc1=False)
        materials.append(material)
    synth.write_skyrim_set(materials, tmp_path)
    first = sorted((tmp_path / "inputs").rglob("*.dds"))[0]
    rel = first.relative_to(tmp_path / "inputs").with_suffix("")
    Image.fromarray(_u8(read_image(first)[..., :3])).save(tmp_path / "targets" / f"{rel}.png")
    return tmp_path, rel.as_posix()


def test_duplicates_dry_run_reports_and_changes_nothing(data_with_duplicate, tmp_path_factory):
    root, key = data_with_duplicate
    before = sorted(p for p in root.rglob("*"))
    report = tmp_path_factory.mktemp("r") / "dup.json"
    assert _run(["preflight", "duplicates", "--data", str(root), "--json", str(report)]) == 0
    assert sorted(p for p in root.rglob("*")) == before
    decisions = json.loads(report.read_text())["decisions"]
    assert [(d["key"], d["decision"]) for d in decisions] == [(key, "duplicate")]
    assert "mean |diff|" in decisions[0]["reason"]


def test_duplicates_apply_moves_the_set_and_dataset_uses_it_as_identity(data_with_duplicate):
    root, key = data_with_duplicate
    decisions = preflight.find_duplicates(root, apply=True)
    assert [d.key for d in decisions] == [key]
    assert not list((root / "inputs").rglob(f"{key.rsplit('/', 1)[1]}*"))
    moved_inputs = sorted(p.name for p in (root / "duplicates" / "inputs").rglob("*.*"))
    moved_targets = sorted(p.name for p in (root / "duplicates" / "targets").rglob("*.*"))
    assert len(moved_inputs) == 2 and len(moved_targets) == 4  # diffuse + _n ; albedo, _rmaos, _p, _n
    assert json.loads((root / "preflight.json").read_text())["duplicates"] == [key]
    assert len(SkyrimDataset.from_root(root, resolution=32)) == 2
    with_identity = SkyrimDataset.from_root(root, resolution=32, use_duplicates=True)
    index = [p.identity for p in with_identity.pairs].index(True)
    material = with_identity.read_material(index)
    np.testing.assert_array_equal(material["albedo"], material["diffuse"])
    sample = with_identity.load(index, RNG, (32, 32))
    assert sample["valid"].tolist() == [1, 0, 0, 0, 0, 0, 0]  # albedo identity only


def test_a_real_conversion_is_not_a_duplicate():
    albedo = RNG.random((16, 16, 3)).astype(np.float32)
    assert preflight.compare(albedo, albedo * 0.7)[0] is False
    assert preflight.compare(albedo, np.clip(albedo + 1 / 255, 0, 1))[0] is True
    assert preflight.compare(albedo, albedo[:8])[0] is False


def _plant(inputs, name, array):
    path = inputs / f"{name}.png"
    Image.fromarray(array).save(path)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(inputs / f"{name}_n.png")
    return path


def test_black_diffuse_decisions_on_planted_cases(tmp_path):
    inputs = tmp_path / "inputs" / "set"
    inputs.mkdir(parents=True)
    colour = (RNG.random((8, 8, 3)) * 200 + 40).astype(np.uint8)
    _plant(inputs, "zero_alpha", np.concatenate([colour, np.zeros((8, 8, 1), np.uint8)], -1))
    _plant(inputs, "premultiplied", np.zeros((8, 8, 4), np.uint8))
    _plant(inputs, "in_alpha", np.concatenate([np.zeros((8, 8, 3), np.uint8), colour[..., :1]], -1))
    _plant(inputs, "truncated16", (RNG.random((8, 8)) * 255).astype(np.uint16))  # 16-bit PNG, 8-bit values
    _plant(inputs, "all_zero", np.zeros((8, 8, 3), np.uint8))
    _plant(inputs, "emissive", np.zeros((8, 8, 3), np.uint8))
    Image.fromarray(colour).save(inputs / "emissive_g.png")
    _plant(inputs, "dark", (RNG.random((8, 8, 3)) * 4).astype(np.uint8))
    _plant(inputs, "fine", colour)
    (inputs / "empty.png").write_bytes(b"\0" * 64)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(inputs / "empty_n.png")
    decisions = {d.key.split("/")[-1]: d for d in preflight.audit_black_diffuse(tmp_path)}
    assert {k: d.decision for k, d in decisions.items()} == {
        "zero_alpha": "fixable", "premultiplied": "excluded", "in_alpha": "fixable", "truncated16": "fixable",
        "all_zero": "excluded", "emissive": "unsupervised", "dark": "unsupervised", "empty": "excluded"}
    assert "alpha" in decisions["zero_alpha"].reason and "16-bit" in decisions["truncated16"].reason
    assert all(d.reason for d in decisions.values())


def test_black_diffuse_apply_fixes_pngs_with_a_backup_and_marks_the_rest(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    colour = (RNG.random((8, 8, 3)) * 200 + 40).astype(np.uint8)
    original = _plant(inputs, "zero_alpha", np.concatenate([colour, np.zeros((8, 8, 1), np.uint8)], -1))
    truncated = (RNG.random((8, 8)) * 255).astype(np.uint16)
    _plant(inputs, "truncated16", truncated)
    _plant(inputs, "dark", (RNG.random((8, 8, 3)) * 4).astype(np.uint8))
    original_bytes = original.read_bytes()
    _run(["preflight", "black-diffuse", "--data", str(tmp_path), "--apply"])
    np.testing.assert_allclose(read_image(original)[..., :3], colour / 255, atol=1e-6)
    assert (tmp_path / "preflight_backup" / "inputs" / "zero_alpha.png").read_bytes() == original_bytes
    np.testing.assert_allclose(read_image(inputs / "truncated16.png")[..., 0], truncated / 255, atol=0.5 / 255 + 1e-6)
    marker = json.loads((tmp_path / "preflight.json").read_text())
    assert marker["fixed"] == ["truncated16", "zero_alpha"] and marker["unsupervised"] == ["dark"]
    dataset = SkyrimDataset.from_root(tmp_path, resolution=8)
    dark = [p.key for p in dataset.pairs].index("dark")
    assert dataset.pairs[dark].unsupervised
    # A second run finds nothing left to fix and keeps the first backup.
    assert [d.decision for d in preflight.audit_black_diffuse(tmp_path, apply=True)] == ["unsupervised"]
    assert (tmp_path / "preflight_backup" / "inputs" / "zero_alpha.png").read_bytes() == original_bytes


def test_excluded_materials_are_not_trained_on(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _plant(inputs, "all_zero", np.zeros((8, 8, 3), np.uint8))
    _plant(inputs, "fine", (RNG.random((8, 8, 3)) * 255).astype(np.uint8))
    preflight.audit_black_diffuse(tmp_path, apply=True)
    dataset = SkyrimDataset.from_root(tmp_path, resolution=8)
    assert [p.key for p in dataset.pairs] == ["fine"] and dataset.report.skipped


def test_preflight_without_the_layout_is_a_user_error(tmp_path):
    with pytest.raises(preflight.DataSourceError, match="inputs"):
        preflight.audit_black_diffuse(tmp_path)


def test_black_diffuse_keys_are_the_keys_the_skyrim_reader_gives_the_same_diffuses(tmp_path):
    # preflight.json marks materials by key; the reader must find them under the same key.
    from trainer.data.skyrim import find_pairs

    black = np.zeros((8, 8, 3), np.uint8)
    (tmp_path / "inputs" / "a" / "b").mkdir(parents=True)
    Image.fromarray(black).save(tmp_path / "inputs" / "a" / "Wall_d.png")
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "inputs" / "a" / "Wall_n.png")
    _plant(tmp_path / "inputs" / "a" / "b", "floor", black)
    Image.fromarray(black).save(tmp_path / "inputs" / "lonely.png")  # no normal: audited, not paired
    audited = {d.key for d in preflight.audit_black_diffuse(tmp_path)}
    paired = {p.key for p in find_pairs(tmp_path / "inputs")}
    assert paired == {"a/Wall", "a/b/floor"} and audited == paired | {"lonely"}
