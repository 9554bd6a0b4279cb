import numpy as np

from trainer.baselines import cavity_ao, classic_baseline, identity_baseline, integrate_normals, normalise_height


def _normals_of(height):
    """OpenGL normals of a periodic height (rows run downwards, +Y up)."""
    d_col = (np.roll(height, -1, 1) - np.roll(height, 1, 1)) / 2
    d_row = (np.roll(height, -1, 0) - np.roll(height, 1, 0)) / 2
    n = np.stack([-d_col, d_row, np.ones_like(height)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _bumps(h=64, w=96):
    y, x = np.mgrid[0:h, 0:w]
    return 3 * np.sin(4 * np.pi * x / w) + 2 * np.cos(6 * np.pi * y / h)


def test_normal_integration_recovers_a_known_periodic_height():
    height = _bumps()
    recovered = integrate_normals(_normals_of(height))
    assert np.corrcoef(recovered.ravel(), height.ravel())[0, 1] > 0.999
    assert np.abs(recovered - (height - height.mean())).max() < 0.1


def test_integration_sign_follows_the_opengl_convention():
    # A DirectX normal map (green flipped) must integrate to a visibly different, wrong height.
    height = _bumps()
    directx = _normals_of(height) * np.array([1, -1, 1])
    assert np.corrcoef(integrate_normals(directx).ravel(), height.ravel())[0, 1] < 0.9


def test_cavity_ao_darkens_pits_and_leaves_peaks_lit():
    height = np.zeros((64, 64))
    height[30:34, 30:34] = -5.0  # a pit
    ao = cavity_ao(height)
    assert ao[31, 31] < 0.7
    assert ao[5, 5] > 0.99
    assert ao.min() >= 0 and ao.max() <= 1


def test_baselines_give_every_map_in_range():
    rng = np.random.default_rng(0)
    diffuse = rng.uniform(0.2, 0.8, (64, 96, 3)).astype(np.float32)
    normal = _normals_of(_bumps())
    for maps in (identity_baseline(diffuse), classic_baseline(diffuse, normal)):
        assert set(maps) == {"albedo", "roughness", "metallic", "ao", "height"}
        for name, value in maps.items():
            assert value.shape[:2] == (64, 96), name
            assert 0.0 <= value.min() and value.max() <= 1.0, name
    assert np.array_equal(identity_baseline(diffuse)["albedo"], diffuse)
    assert abs(normalise_height(_bumps()).mean() - 0.5) < 1e-6
