import numpy as np
import pytest
import torch

from trainer.data import augment
from trainer.data.common import normal_from_height
from trainer.data.sample import DOMAIN_SKYRIM, make_sample

RNG = np.random.default_rng(0)


def _height():
    """A non-symmetric tileable height field, so every flip/rotation gives a different map."""
    y, x = np.meshgrid(np.arange(32) / 32, np.arange(32) / 32, indexing="ij")
    return (0.5 + 0.3 * np.sin(2 * np.pi * (x + 2 * y)) + 0.2 * np.cos(2 * np.pi * 3 * x)).astype(np.float32)


def _sample(height=None, domain=0):
    height = _height() if height is None else height
    return make_sample(RNG.random((32, 32, 3)).astype(np.float32), normal_from_height(height, 6.0), domain=domain,
                       albedo=RNG.random((32, 32, 3)).astype(np.float32),
                       maps={"roughness": RNG.random((32, 32)).astype(np.float32),
                             "metallic": (RNG.random((32, 32)) > 0.5).astype(np.float32),
                             "ao": RNG.random((32, 32)).astype(np.float32), "height": height},
                       labels=["metal"])


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
@pytest.mark.parametrize("mirror", [False, True])
def test_transformed_normals_equal_the_normals_of_the_transformed_height(turns, mirror):
    sample = _sample()
    out = augment.flip_rotate(sample, turns, mirror)
    moved_height = out["maps"][3].numpy()
    expected = normal_from_height(moved_height, 6.0).transpose(2, 0, 1)
    np.testing.assert_allclose(out["normal"].numpy(), expected, atol=1e-5)


def test_quarter_turn_is_counter_clockwise_on_screen():
    sample = _sample()
    out = augment.flip_rotate(sample, 1, False)
    # The top-right pixel moves to the top-left when turning counter-clockwise.
    assert torch.equal(out["albedo"][:, 0, 0], sample["albedo"][:, 0, -1])


def test_colour_jitter_and_photometric_touch_the_diffuse_only():
    sample = _sample(domain=DOMAIN_SKYRIM)
    for out in (augment.colour_jitter(sample, np.random.default_rng(1)),
                augment.SkyrimPhotometric(1.0)(sample, np.random.default_rng(1))):
        assert not torch.equal(out["diffuse"], sample["diffuse"])
        for key in ("normal", "albedo", "maps", "metallic_mask", "labels", "valid", "domain"):
            assert torch.equal(out[key], sample[key]), key
    photometric = augment.SkyrimPhotometric(1.0)(sample, np.random.default_rng(1))
    assert float(photometric["photometric"]) == 1.0 and float(sample["photometric"]) == 0.0


def test_photometric_is_colder_darker_at_the_corners_and_weaker_at_half_strength():
    flat = _sample(height=np.full((32, 32), 0.5, np.float32))
    flat["diffuse"] = torch.full((3, 32, 32), 0.5)
    full = augment.SkyrimPhotometric(1.0)(flat, np.random.default_rng(3))["diffuse"]
    half = augment.SkyrimPhotometric(0.5)(flat, np.random.default_rng(3))["diffuse"]
    assert full[2].mean() > full[0].mean()                 # blue up, red down: colder
    assert full[:, 0, 0].mean() < full[:, 16, 16].mean()   # vignette
    assert (half - 0.5).abs().mean() < (full - 0.5).abs().mean()
    assert augment.SkyrimPhotometric(0.0)(flat, np.random.default_rng(3)) is flat


def test_composites_tile_parts_union_labels_and_keep_only_common_targets():
    a, b = _sample(), _sample()
    b["labels"] = torch.zeros(13)
    b["labels"][0] = 1
    b["valid"][0] = 0
    left_right = augment.composite([a, b], "horizontal")
    assert left_right["albedo"].shape == (3, 32, 64)
    assert torch.equal(left_right["albedo"][:, :, 32:], b["albedo"])
    assert left_right["labels"].sum() == 2 and left_right["valid"][0] == 0
    grid = augment.composite([a, b, a, b], "grid")
    assert grid["maps"].shape == (4, 64, 64) and torch.equal(grid["maps"][:, 32:, :32], a["maps"])
    assert augment.composite_part_size("2crop", "horizontal", 1024) == (1024, 512)
    assert augment.composite_part_size("2crop", "vertical", 1024) == (512, 1024)
    assert augment.composite_part_size("4crop", "grid", 1024) == (512, 512)


def test_crop_curriculum_runs_from_256_to_768_in_steps_of_32():
    assert augment.compute_crop_size(0.0) == 256 and augment.compute_crop_size(1.0) == 768
    assert augment.compute_crop_size(0.5) == 512 and augment.compute_crop_size(7) == 768
    sizes = [augment.compute_crop_size(p / 100) for p in range(101)]
    assert sizes == sorted(sizes) and all(s % 32 == 0 for s in sizes)
