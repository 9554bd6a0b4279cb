"""GGX / Cook-Torrance shading in numpy, and the BRDF-cosine similarity of two PBR sets.

`ggx_radiance` is the formula alone, in arithmetic that numpy arrays and torch tensors share:
`render_ggx` (numpy, evaluation and the add-on's check) and trainer/metrics.py (torch, the render
loss) both call it. Formula (Karis 2013):
    base sRGB -> linear; r = max(roughness, 0.04); alpha = r^2
    D = alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)
    k = (r + 1)^2 / 8;  G1(x) = x / (x (1 - k) + k);  G = G1(n.l) G1(n.v)
    F0 = lerp(0.04, base, metallic);  F = F0 + (1 - F0)(1 - v.h)^5
    diffuse = (1 - F)(1 - metallic) base / pi;  specular = D G F / (4 n.l n.v + 1e-4)
    radiance = (diffuse + specular) n.l, with n.l and n.v clamped at 0.
"""
from __future__ import annotations

import math

import numpy as np

from .colour import srgb_to_linear

MIN_ROUGHNESS = 0.04
DIELECTRIC_F0 = 0.04


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


def ggx_radiance(base, r, metallic, n_dot_l, n_dot_v, n_dot_h, v_dot_h):
    """The radiance of the module's formula from linear base colour, clamped roughness r and the
    clamped dot products (numpy arrays or torch tensors, broadcast against each other)."""
    alpha2 = (r * r) ** 2
    d = alpha2 / (math.pi * (n_dot_h ** 2 * (alpha2 - 1.0) + 1.0) ** 2)
    k = (r + 1.0) ** 2 / 8.0
    g = (n_dot_l / (n_dot_l * (1.0 - k) + k)) * (n_dot_v / (n_dot_v * (1.0 - k) + k))
    f0 = DIELECTRIC_F0 * (1.0 - metallic) + base * metallic
    fresnel = f0 + (1.0 - f0) * (1.0 - v_dot_h) ** 5
    diffuse = (1.0 - fresnel) * (1.0 - metallic) * base / math.pi
    specular = d * g * fresnel / (4.0 * n_dot_l * n_dot_v + 1e-4)
    return (diffuse + specular) * n_dot_l


def render_ggx(base_srgb, normal, roughness, metallic, light_dir, view_dir) -> np.ndarray:
    """(H, W, 3) radiance of a surface lit by a unit directional light (tangent space, z = out)."""
    base = srgb_to_linear(np.asarray(base_srgb, dtype=np.float64))
    n = _unit(normal)
    l, v = _unit(light_dir), _unit(view_dir)
    h = _unit(l + v)
    r = np.maximum(np.asarray(roughness, dtype=np.float64), MIN_ROUGHNESS)[..., None]
    m = np.asarray(metallic, dtype=np.float64)[..., None]
    n_dot_l = np.clip(n @ l, 0.0, None)[..., None]
    n_dot_v = np.clip(n @ v, 0.0, None)[..., None]
    n_dot_h = (n @ h)[..., None]
    v_dot_h = float(np.clip(v @ h, 0.0, 1.0))
    return ggx_radiance(base, r, m, n_dot_l, n_dot_v, n_dot_h, v_dot_h)


def render_blinn_phong(diffuse_srgb, normal, specular_mask, light_dir, view_dir,
                       shininess: float, specular_strength: float) -> np.ndarray:
    """(H, W, 3) radiance of an old (pre-PBR) game surface: Lambert diffuse plus a normalised
    Blinn-Phong highlight scaled by the specular mask (the old normal map's alpha), same light
    and units as `render_ggx` so the two renders can be compared:
        diffuse / pi + mask * strength * (s + 8) / (8 pi) * (n.h)^s, times n.l."""
    base = srgb_to_linear(np.asarray(diffuse_srgb, dtype=np.float64))
    n = _unit(normal)
    l, v = _unit(light_dir), _unit(view_dir)
    h = _unit(l + v)
    n_dot_l = np.clip(n @ l, 0.0, None)[..., None]
    n_dot_h = np.clip(n @ h, 0.0, None)[..., None]
    mask = np.asarray(specular_mask, dtype=np.float64)[..., None]
    highlight = mask * specular_strength * (shininess + 8.0) / (8.0 * np.pi) * n_dot_h ** shininess
    return (base / np.pi + highlight) * n_dot_l


def hemisphere_directions(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) unit vectors with z > 0, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(count, 3))
    directions[:, 2] = np.abs(directions[:, 2]) + 1e-3
    return _unit(directions)


def render_products(maps_a: dict, maps_b: dict, n_dirs: int = 16, seed: int = 0) -> np.ndarray:
    """(a·b, a·a, b·b) of the flattened renders of two sets under the same `n_dirs` seeded light/view
    pairs. Maps dicts need albedo (sRGB), normal, roughness, metallic. Products of several materials
    add up to those of the materials side by side, so a collection's cosine needs no second render."""
    lights = hemisphere_directions(n_dirs, seed)
    views = hemisphere_directions(n_dirs, seed + 1)
    products = np.zeros(3)
    for light, view in zip(lights, views):
        render_a = render_ggx(maps_a["albedo"], maps_a["normal"], maps_a["roughness"], maps_a["metallic"], light, view)
        render_b = render_ggx(maps_b["albedo"], maps_b["normal"], maps_b["roughness"], maps_b["metallic"], light, view)
        products += (np.sum(render_a * render_b), np.sum(render_a * render_a), np.sum(render_b * render_b))
    return products


def cosine_of(products: np.ndarray) -> float:
    """The cosine similarity that render_products (or a sum of them) describes."""
    dot, norm_a, norm_b = (float(v) for v in products)
    return dot / max(np.sqrt(norm_a * norm_b), 1e-12)


def brdf_cosine(maps_a: dict, maps_b: dict, n_dirs: int = 16, seed: int = 0) -> float:
    """Cosine similarity of the flattened renders of two sets (render_products)."""
    return cosine_of(render_products(maps_a, maps_b, n_dirs, seed))
