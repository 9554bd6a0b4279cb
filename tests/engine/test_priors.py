"""The classic inputs of the networks (addon/engine/priors.py), and that training and conversion
derive them the same way."""
import numpy as np
import pytest

from addon.engine import priors
from addon.engine.priors import (FLAT_ALPHA_RANGE, HEIGHT_PRIOR_SPREAD, has_specular_mask, height_prior,
                                 integrate_normals, specular_input)
from trainer.data.common import normal_from_height


def _periodic_height(size=96):
    y = np.arange(size)[:, None] * 2 * np.pi / size
    x = np.arange(size)[None, :] * 2 * np.pi / size
    return (np.sin(2 * x) * np.cos(3 * y) + 0.5 * np.sin(x + 2 * y)).astype(np.float32)


def test_integration_recovers_a_periodic_height_from_its_normals():
    height = _periodic_height()
    recovered = integrate_normals(normal_from_height(height, strength=8.0))
    assert np.corrcoef(recovered.ravel(), height.ravel())[0, 1] > 0.99


def test_height_prior_is_standardised_and_seamless():
    normal = normal_from_height(_periodic_height(), strength=8.0)
    prior = height_prior(normal)
    z = (prior - 0.5) / HEIGHT_PRIOR_SPREAD
    assert abs(z.mean()) < 1e-3 and z.std() == pytest.approx(1.0, rel=1e-3)
    # Shifting the texture shifts the prior: no edge is special, so tiles meet without a seam.
    shifted = height_prior(np.roll(normal, (17, 40), axis=(0, 1)))
    np.testing.assert_allclose(shifted, np.roll(prior, (17, 40), axis=(0, 1)), atol=1e-5)


def test_height_prior_of_a_large_texture_is_integrated_at_the_prior_size():
    normal = normal_from_height(np.kron(_periodic_height(64), np.ones((4, 4), np.float32)), strength=2.0)
    small = height_prior(normal, max_side=64)
    assert small.shape == (64, 64)
    assert np.corrcoef(small.ravel(), height_prior(normal)[::4, ::4].ravel())[0, 1] > 0.98


def test_a_flat_normal_gives_the_mid_level():
    flat = np.zeros((32, 32, 3), np.float32)
    flat[..., 2] = 1.0
    assert np.all(height_prior(flat) == 0.5)


def test_specular_mask_and_presence_flag():
    rng = np.random.default_rng(0)
    mask = rng.random((8, 8)).astype(np.float32)
    present = specular_input(mask, 8, 8)
    np.testing.assert_array_equal(present[..., 0], mask)
    assert np.all(present[..., 1] == 1.0)
    # No alpha, or one flat value (a tool's constant), is "absent": zeros the networks learned to handle.
    for alpha in (None, np.full((8, 8), 0.7, np.float32), 0.7 + mask * FLAT_ALPHA_RANGE * 0.5):
        assert not has_specular_mask(alpha)
        assert np.all(specular_input(alpha, 8, 8) == 0.0)


def test_training_samples_carry_the_inputs_the_engine_computes():
    from trainer.data.sample import make_sample
    normal = normal_from_height(_periodic_height(64), strength=8.0)
    alpha = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    sample = make_sample(np.full((64, 64, 3), 0.5, np.float32), normal, domain=0, specular=alpha)
    np.testing.assert_array_equal(sample["specular"].numpy().transpose(1, 2, 0), specular_input(alpha, 64, 64))
    np.testing.assert_array_equal(sample["height_prior"][0].numpy(), height_prior(normal))
    without = make_sample(np.full((64, 64, 3), 0.5, np.float32), normal, domain=0)
    assert float(without["specular"].abs().sum()) == 0.0


def test_standardise_measures_only_where_the_mask_says():
    height = np.zeros((4, 8))
    height[:, :4] = np.arange(4)[:, None]   # the used half: 0..3 per row
    height[:, 4:] = 100.0                   # unused atlas area that must not move the statistics
    mask = np.zeros_like(height, bool)
    mask[:, :4] = True
    z = priors.standardise(height, mask)
    assert np.isclose(z[mask].mean(), 0.0) and np.isclose(z[mask].std(), 1.0)
    assert np.allclose(priors.standardise(np.full((3, 3), 7.0)), 0.0)  # flat stays flat
