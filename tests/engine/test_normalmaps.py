"""The two-channel normal convention: one threshold for the pipeline and the add-on's normal check."""
import numpy as np
import pytest

from addon.engine.normalmaps import NO_Z_MAX_BLUE, stores_no_z
from addon.engine.pipeline import decode_normal


def _encoded(blue: float) -> np.ndarray:
    """A normal map tilted in X and Y whose blue channel is `blue` everywhere."""
    encoded = np.empty((4, 4, 3), dtype=np.float32)
    encoded[..., 0], encoded[..., 1], encoded[..., 2] = 0.6, 0.45, blue
    return encoded


@pytest.mark.parametrize("blue", [0.0, NO_Z_MAX_BLUE, 2.0 / 255.0, 0.01, 0.5])
def test_the_pipeline_rebuilds_z_exactly_when_the_map_stores_no_z(blue):
    vectors = decode_normal(_encoded(blue), "opengl", [])
    rebuilt = bool(np.all(vectors[..., 2] > 0.9))  # a stored blue below 0.5 would point Z inwards
    assert rebuilt == stores_no_z(_encoded(blue)[..., 2])


def test_a_zero_blue_stores_no_z_and_a_real_one_does():
    assert stores_no_z(np.zeros((2, 2))) and stores_no_z(np.full((2, 2), NO_Z_MAX_BLUE))
    assert not stores_no_z(np.full((2, 2), 0.01)) and not stores_no_z(np.array([0.0, 0.8]))
