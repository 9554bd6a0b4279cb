"""The two baselines every learned map is judged against (numpy, HxWxC, periodic textures).

- identity: albedo = diffuse; every other map a constant (by default the training-set mean, the
  strongest constant there is for an L1-type error).
- classic filters: the hand-made pipeline a modder would use without learning: delighting (divide out
  the low-frequency shading and the cavity term), cavity AO from the integrated height, height by
  Frankot–Chellappa normal integration (FFT, exact for tiling textures), constant roughness/metallic.
"""
from __future__ import annotations

import numpy as np

from trainer.contract import MAP_CHANNELS
from addon.engine.colour import linear_to_srgb, srgb_to_linear
from addon.engine.priors import integrate_normals
from trainer.data.common import periodic_blur

DEFAULT_CONSTANTS = {"roughness": 0.7, "metallic": 0.0, "ao": 1.0, "height": 0.5}


def normalise_height(height: np.ndarray) -> np.ndarray:
    """Map a height of arbitrary scale to [0, 1] with 0.5 at its mean (the contract's mid level)."""
    centred = height - height.mean()
    span = np.abs(centred).max()
    return 0.5 + 0.5 * centred / span if span > 1e-8 else np.full_like(height, 0.5)


def cavity_ao(height_px: np.ndarray, radius: float = 4.0, strength: float = 1.5) -> np.ndarray:
    """Cavity occlusion: points below their blurred neighbourhood are occluded (wrap-around)."""
    depth = periodic_blur(height_px, radius) - height_px
    scale = np.percentile(np.abs(depth), 99) + 1e-6
    return np.clip(1.0 - strength * np.clip(depth / scale, 0.0, None) * 0.5, 0.0, 1.0)


def identity_baseline(diffuse: np.ndarray, constants: dict | None = None) -> dict[str, np.ndarray]:
    constants = {**DEFAULT_CONSTANTS, **(constants or {})}
    h, w = diffuse.shape[:2]
    maps = {name: np.full((h, w), constants[name], np.float32) for name in MAP_CHANNELS}
    return {"albedo": diffuse[..., :3].astype(np.float32), **maps}


def classic_baseline(diffuse: np.ndarray, normal: np.ndarray, constants: dict | None = None) -> dict[str, np.ndarray]:
    """diffuse: HxWx3 sRGB [0,1]; normal: HxWx3 OpenGL unit vectors."""
    constants = {**DEFAULT_CONSTANTS, **(constants or {})}
    height_px = integrate_normals(normal)
    ao = cavity_ao(height_px)
    linear = srgb_to_linear(diffuse[..., :3].astype(np.float64))
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    # Delighting: baked light varies slowly and darkens cavities; divide out both, keep the mean level.
    shading = periodic_blur(luminance, sigma=max(luminance.shape) / 16)
    shading = shading / max(shading.mean(), 1e-6)
    albedo_linear = linear / np.clip(shading * (0.5 + 0.5 * ao), 0.2, None)[..., None]
    albedo_linear *= linear.mean() / max(albedo_linear.mean(), 1e-6)
    h, w = luminance.shape
    return {
        "albedo": linear_to_srgb(albedo_linear).astype(np.float32),
        "roughness": np.full((h, w), constants["roughness"], np.float32),
        "metallic": np.full((h, w), constants["metallic"], np.float32),
        "ao": ao.astype(np.float32),
        "height": normalise_height(height_px).astype(np.float32),
    }
