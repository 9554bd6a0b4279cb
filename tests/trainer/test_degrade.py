"""The old-game degradation family: what it bakes in, what it leaves, and the input statistics."""
import numpy as np
import pytest

from trainer.data import degrade
from trainer.data.common import decode_normal
from trainer.data.synth import generate_material

SIZE = 64
NOTHING = degrade.Degradation(ao_amount=(0, 0), cavity_amount=(0, 0), light_amount=(0, 0), sheen_amount=(0, 0),
                              metal_darkening=(0, 0), cast_sigma=0.0, contrast=(1, 1), gamma=(1, 1),
                              blur_probability=0.0, rescale_probability=0.0, bc_probability=0.0,
                              alpha_choices=(0, 0, 1), normal_formats=(("none", 1.0),))


def _maps(seed=1, category="stone"):
    m = generate_material(seed, SIZE, category)
    return {"albedo": m.albedo, "normal": m.normal, "roughness": m.roughness, "metallic": m.metallic,
            "ao": m.ao, "height": m.height}


def test_with_every_step_off_the_diffuse_is_the_albedo_and_the_normal_is_exact():
    maps = _maps()
    diffuse, normal = degrade.render_old_game(maps, np.random.default_rng(0), NOTHING)
    np.testing.assert_allclose(diffuse, maps["albedo"], atol=1e-4)
    assert normal.shape == (SIZE, SIZE, 3)  # alpha absent
    np.testing.assert_allclose(decode_normal(normal, directx=True), maps["normal"], atol=1e-5)


def test_the_family_bakes_shading_and_varies_with_the_seed():
    maps = _maps()
    a, na = degrade.render_old_game(maps, np.random.default_rng(1))
    b, _ = degrade.render_old_game(maps, np.random.default_rng(2))
    again, _ = degrade.render_old_game(maps, np.random.default_rng(1))
    np.testing.assert_array_equal(a, again)
    assert not np.allclose(a, b, atol=0.01)
    assert a.shape == (SIZE, SIZE, 3) and a.min() >= 0 and a.max() <= 1
    # DirectX pixels: decoded with the green flipped they are the truth again (up to block compression).
    assert np.abs(decode_normal(na[..., :3], directx=True) - maps["normal"]).mean() < 0.05


def test_baked_ao_darkens_the_occluded_pixels():
    maps = _maps(3, "ground")
    maps["ao"] = np.where(np.arange(SIZE)[:, None] % 8 < 4, 0.5, 1.0).repeat(SIZE, 1).astype(np.float32)
    only_ao = degrade.Degradation(**{**NOTHING.__dict__, "ao_amount": (1.0, 1.0)})
    diffuse, _ = degrade.render_old_game(maps, np.random.default_rng(0), only_ao)
    occluded = maps["ao"] < 1.0
    ratio = diffuse.mean(-1) / np.maximum(maps["albedo"].mean(-1), 1e-3)
    assert ratio[occluded].mean() < ratio[~occluded].mean() - 0.1


def test_specular_alpha_follows_gloss():
    maps = _maps(4, "metal")
    mask = degrade.specular_mask(maps["roughness"], maps["metallic"], np.random.default_rng(0))
    assert mask.shape == (SIZE, SIZE) and 0 <= mask.min() and mask.max() <= 1
    assert np.corrcoef(mask.ravel(), 1 - maps["roughness"].ravel())[0, 1] > 0.5


def test_bc_roundtrip_keeps_the_image_within_block_error():
    rgb = generate_material(5, SIZE, "wood").albedo
    out = degrade.bc_roundtrip(rgb, "bc1")
    assert out.shape == rgb.shape and 0 < np.abs(out - rgb).mean() < 0.03
    rgba = np.concatenate([rgb, rgb[..., :1]], -1)
    for block_format in ("bc3", "bc7"):
        out = degrade.bc_roundtrip(rgba, block_format)
        assert out.shape == rgba.shape and np.abs(out - rgba).mean() < 0.03
    with pytest.raises(ValueError, match="block format"):
        degrade.bc_roundtrip(rgb, "bc2")


def test_each_normal_storage_decodes_to_the_normal_within_its_block_error():
    maps = _maps(6, "stone")
    errors = {}
    for storage in ("none", "legacy", "bc7", "bc5"):
        cfg = degrade.Degradation(alpha_choices=(1, 0, 0), normal_formats=((storage, 1.0),))
        pixels = degrade.old_normal_map(maps["normal"], maps["roughness"], None, np.random.default_rng(0), cfg)
        # BC5 stores X and Y only: no specular alpha, and the decoder rebuilds Z.
        assert pixels.shape[-1] == (3 if storage == "bc5" else 4)
        errors[storage] = np.abs(decode_normal(pixels[..., :3], directx=True) - maps["normal"]).mean()
    assert errors["none"] < 0.005 and max(errors.values()) < 0.05
    # DXT1/DXT5's 5:6:5 endpoints lose the most; BC7 (Special Edition's) less.
    assert errors["bc7"] < 0.75 * errors["legacy"]
def test_input_statistics_see_saturation_contrast_and_baked_shading():
    flat = np.full((SIZE, SIZE, 3), (0.5, 0.25, 0.25), np.float32)
    stats = degrade.input_statistics(flat)
    assert abs(stats["saturation"] - 0.5) < 1e-6 and stats["contrast"] == 0.0
    y = np.linspace(0, 2 * np.pi, SIZE, endpoint=False)
    shaded = flat * (0.75 + 0.25 * np.sin(y))[:, None, None]    # a slow light gradient
    grainy = flat * (0.75 + 0.25 * np.sin(16 * y))[:, None, None]
    assert degrade.input_statistics(shaded)["low_frequency_energy"] > 0.9
    assert degrade.input_statistics(grainy)["low_frequency_energy"] < 0.1
