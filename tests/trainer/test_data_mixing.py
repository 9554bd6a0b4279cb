from collections import Counter

import numpy as np
import pytest
import torch

from trainer.data import synth
from trainer.data.common import DataReport
from trainer.data.matsynth import MatSynthDataset
from trainer.data.sample import DataSourceError
from trainer.data.mixing import MixSampler, build_loader, exact_counts, split_holdout
from trainer.data.skyrim import SkyrimDataset


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    materials = list(synth.generate_set(13, 32, seed=5))
    synth.write_matsynth_shards(materials, root / "matsynth")
    synth.write_skyrim_set(materials[:6], root / "skyrim")
    return {"matsynth": MatSynthDataset(root / "matsynth", resolution=32),
            "skyrim": SkyrimDataset.from_root(root / "skyrim", resolution=32)}


def _sampler(epoch=0, seed=0, rank=0, world_size=1, n=1000, r2=0.3, r4=0.15, sizes=(40, 10)):
    eligible = {"matsynth": np.arange(sizes[0]), "skyrim": np.arange(sizes[1])}
    return MixSampler(eligible, {"matsynth": 0.75, "skyrim": 0.25}, n, r2, r4, seed=seed, epoch=epoch,
                      rank=rank, world_size=world_size)


def test_exact_counts_follow_the_ratios_and_sum_to_the_total():
    assert exact_counts({"matsynth": 0.75, "skyrim": 0.25}, 1000) == {"matsynth": 750, "skyrim": 250}
    assert sum(exact_counts({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 100).values()) == 100


def test_every_epoch_has_the_exact_mix_and_composite_counts():
    for epoch in range(3):
        items = _sampler(epoch).epoch_items()
        singles = Counter(i.source for i in items if i.kind == "single")
        kinds = Counter(i.kind for i in items)
        assert singles == {"matsynth": 750, "skyrim": 250}
        assert kinds == {"single": 1000, "2crop": 300, "4crop": 150}  # composites added, originals kept


def test_epochs_are_reshuffled_cover_the_data_and_are_deterministic_per_seed():
    first, again, other_seed = _sampler(0).epoch_items(), _sampler(0).epoch_items(), _sampler(0, seed=1).epoch_items()
    assert first == again and first != other_seed
    assert first != _sampler(1).epoch_items()
    # Skyrim has 10 materials and 250 draws: each appears exactly 25 times (whole permutations).
    counts = Counter(i.indices[0] for i in first if i.kind == "single" and i.source == "skyrim")
    assert set(counts.values()) == {25}


def test_ddp_ranks_get_disjoint_equal_shards_covering_the_epoch():
    world = [list(_sampler(rank=r, world_size=3)) for r in range(3)]
    assert len({len(w) for w in world}) == 1
    seeds = [item.seed for w in world for item in w]
    total = len(_sampler().epoch_items())
    assert len(set(seeds)) == total and len(seeds) == total + (-total) % 3


def test_resume_replays_the_rest_of_the_epoch(sources):
    cfg = {"mix": {"matsynth": 0.5, "skyrim": 0.5}, "resolution": 32, "augment": True, "composite_2crop": 0.3,
           "composite_4crop": 0.15, "photometric_strength": 1.0, "samples_per_epoch": 8, "crop_size": 16}
    full = list(build_loader(cfg, sources, batch_size=2, epoch=1, seed=3))
    resumed = list(build_loader(cfg, sources, batch_size=2, epoch=1, seed=3, start_step=2))
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    sampler = build_loader(cfg, sources, batch_size=2, epoch=1, seed=3).sampler
    sampler.load_state_dict({"seed": 3, "epoch": 1, "start": 4})
    assert sampler.state_dict()["start"] == 4 and len(sampler) == len(sampler.epoch_items()) - 4


def test_loader_batches_mix_domains_photometric_on_skyrim_only(sources):
    cfg = {"mix": {"matsynth": 0.5, "skyrim": 0.5}, "resolution": 32, "augment": False, "composite_2crop": 0.0,
           "composite_4crop": 0.0, "photometric_strength": 1.0, "samples_per_epoch": 40, "crop_size": 16,
           "photometric_probability": 0.5}
    batches = list(build_loader(cfg, sources, batch_size=8, epoch=0, seed=0))
    domain = torch.cat([b["domain"] for b in batches])
    photometric = torch.cat([b["photometric"] for b in batches])
    assert int((domain == 1).sum()) == 20
    assert photometric[domain == 0].sum() == 0 and 0 < photometric[domain == 1].sum() < 20


def test_composite_rate_holds_over_many_epochs_within_tolerance():
    kinds = Counter()
    for epoch in range(20):
        kinds.update(i.kind for i in _sampler(epoch, n=50, r2=0.2, r4=0.1).epoch_items())
    assert abs(kinds["2crop"] / kinds["single"] - 0.2) < 0.02 and abs(kinds["4crop"] / kinds["single"] - 0.1) < 0.02


def test_holdout_is_by_material_and_stable(sources):
    train, val = split_holdout(sources["matsynth"], 0.2, seed=0)
    train_keys = {train.material_key(i) for i in range(len(train))}
    val_keys = {val.material_key(i) for i in range(len(val))}
    assert len(val_keys) == 3 and not train_keys & val_keys and len(train) + len(val) == 13
    again = split_holdout(sources["matsynth"], 0.2, seed=0)[1]
    assert [again.material_key(i) for i in range(len(again))] == [val.material_key(i) for i in range(len(val))]
    assert val.load(0, np.random.default_rng(0), (8, 8), 32)["diffuse"].shape == (3, 8, 8)


def test_material_filter_keeps_only_labelled_materials(sources):
    cfg = {"mix": {"skyrim": 1.0}, "resolution": 32, "augment": False, "composite_2crop": 0.0, "composite_4crop": 0.0,
           "photometric_strength": 0.0, "material_filter": ["marble"], "samples_per_epoch": 4, "crop_size": 16}
    batch = next(iter(build_loader(cfg, sources, batch_size=4, epoch=0, seed=0)))
    marble = 5
    assert batch["labels"][:, marble].eq(1).all() and batch["labels"].sum() == 4
    with pytest.raises(DataSourceError, match="wood"):  # the Skyrim set holds the first six classes only
        build_loader({**cfg, "material_filter": ["wood"]}, sources, batch_size=4, epoch=0, seed=0)


def test_a_corrupt_file_is_replaced_and_reported(tmp_path):
    materials = list(synth.generate_set(3, 32, seed=9))
    synth.write_skyrim_set(materials, tmp_path)
    broken = sorted((tmp_path / "inputs").rglob("*_n.dds"))[0]
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    report = DataReport()
    cfg = {"mix": {"skyrim": 1.0}, "resolution": 32, "augment": True, "composite_2crop": 0.0, "composite_4crop": 0.0,
           "photometric_strength": 0.0, "samples_per_epoch": 9, "crop_size": 16}
    batches = list(build_loader(cfg, {"skyrim": SkyrimDataset.from_root(tmp_path, resolution=32)}, batch_size=3,
                                epoch=0, seed=0, report=report))
    assert sum(len(b["domain"]) for b in batches) == 9
    assert report.to_dict()["skipped_total"] >= 3  # the truncated file, each time the sampler drew it
    assert any("truncated" in reason or "corrupt" in reason for reason in report.skipped)


def test_missing_source_is_a_user_error(sources):
    cfg = {"mix": {"matsynth": 0.5, "skyrim": 0.5}, "resolution": 32}
    with pytest.raises(DataSourceError, match="skyrim"):
        build_loader(cfg, {"matsynth": sources["matsynth"]}, batch_size=2, epoch=0, seed=0)
