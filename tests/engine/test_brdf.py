"""numpy GGX: the formula's known values and the BRDF-cosine's behaviour."""
import numpy as np

from addon.engine.brdf import brdf_cosine, render_ggx
from addon.engine.colour import srgb_to_linear


def _flat(value, shape=(4, 4)):
    return np.full(shape, value, dtype=np.float64)


def _maps(albedo=0.5, roughness=0.5, metallic=0.0, shape=(8, 8)):
    normal = np.zeros(shape + (3,))
    normal[..., 2] = 1.0
    return {"albedo": np.full(shape + (3,), albedo), "normal": normal,
            "roughness": _flat(roughness, shape), "metallic": _flat(metallic, shape)}


def test_head_on_dielectric_matches_the_formula_by_hand():
    m = _maps(albedo=0.5, roughness=0.5, shape=(1, 1))
    up = np.array([0.0, 0.0, 1.0])
    radiance = render_ggx(m["albedo"], m["normal"], m["roughness"], m["metallic"], up, up)[0, 0, 0]
    base = srgb_to_linear(np.array(0.5))
    alpha2 = 0.25 ** 2
    d = alpha2 / (np.pi * (alpha2 - 1 + 1) ** 2)
    k = 1.5 ** 2 / 8
    g = (1 / (1 - k + k)) ** 2
    f = 0.04
    expected = (1 - f) * base / np.pi + d * g * f / (4 + 1e-4)
    assert np.isclose(radiance, expected, rtol=1e-9)


def test_light_below_the_surface_gives_black():
    m = _maps()
    render = render_ggx(m["albedo"], m["normal"], m["roughness"], m["metallic"],
                        np.array([0.0, 0.3, -1.0]), np.array([0.0, 0.0, 1.0]))
    assert np.all(render == 0.0)


def test_metal_has_no_diffuse_and_tints_its_reflection():
    red = np.zeros((1, 1, 3))
    red[..., 0] = 1.0
    m = _maps(metallic=1.0, roughness=0.3, shape=(1, 1))
    up = np.array([0.0, 0.0, 1.0])
    render = render_ggx(red, m["normal"], m["roughness"], m["metallic"], np.array([0.5, 0.0, 1.0]), up)
    # green and blue come only from Schlick's grazing term (F0 = 0 there) and no diffuse
    assert render[0, 0, 0] > 10 * render[0, 0, 1] and render[0, 0, 1] == render[0, 0, 2]


def test_roughness_is_clamped_at_0_04():
    m = _maps(shape=(1, 1))
    up = np.array([0.0, 0.0, 1.0])
    zero = render_ggx(m["albedo"], m["normal"], _flat(0.0, (1, 1)), m["metallic"], up, up)
    clamped = render_ggx(m["albedo"], m["normal"], _flat(0.04, (1, 1)), m["metallic"], up, up)
    assert np.array_equal(zero, clamped) and np.isfinite(zero).all()


def test_brdf_cosine_is_one_for_identical_sets_and_lower_for_different_ones():
    a = _maps(roughness=0.3)
    assert np.isclose(brdf_cosine(a, a), 1.0)
    shiny_metal = _maps(roughness=0.1, metallic=1.0, albedo=0.9)
    assert brdf_cosine(a, shiny_metal) < 0.95
    assert brdf_cosine(a, shiny_metal, seed=3) == brdf_cosine(a, shiny_metal, seed=3)
