"""Old-game inputs rendered from real ground truth: a randomised family of degradations.

A real PBR material (albedo, OpenGL normal, roughness, metallic, AO, height) has no old-game diffuse.
`render_old_game` makes one the way old pipelines did, with every step's strength drawn at random so
that a model trained on the family does not learn one recipe: baked AO and cavity darkening, a baked
key light from the normals (random direction and strength), a baked specular sheen, metal darkening
and desaturation, a colour cast, white-balance, contrast and gamma shifts, blur or down-up scaling,
and BC1/BC3 block artefacts. The normal map comes back as an old game ships it: DirectX convention,
uncompressed or in one of the block formats Skyrim's normals use (DXT1/DXT5 of the original game, BC7
of Special Edition, two-channel BC5 with Z rebuilt), and its alpha the old specular mask
(roughness/metallic through a random tone curve, blurred and noisy), a flat alpha, or none (always
none in BC5, which stores no alpha).

All arrays are HxW[xC] float32; colour is sRGB in [0, 1]; normals are OpenGL unit vectors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from addon.engine.colour import linear_to_srgb, srgb_to_linear
from trainer.data.common import ao_from_height, encode_normal, periodic_blur, periodic_resize

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass(frozen=True)
class Degradation:
    """The ranges the family draws from (each recipe picks one value per range)."""

    ao_amount: tuple[float, float] = (0.2, 1.0)          # how much of the AO is multiplied in
    cavity_amount: tuple[float, float] = (0.0, 0.8)      # darkening where the height is below its blur
    light_amount: tuple[float, float] = (0.0, 0.8)       # baked key light (n.l) strength
    light_elevation_deg: tuple[float, float] = (25.0, 75.0)
    sheen_amount: tuple[float, float] = (0.0, 0.4)       # baked specular highlight on glossy parts
    metal_darkening: tuple[float, float] = (0.0, 0.6)    # old metals: darker, greyer
    cast_sigma: float = 0.06                             # per-channel colour cast (white balance)
    contrast: tuple[float, float] = (0.8, 1.25)
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    rescale_probability: float = 0.3                     # down-up scaling (an upscaled low-res texture)
    rescale_factor: tuple[float, float] = (0.35, 0.75)
    bc_probability: float = 0.7                          # BC1 (no alpha) or BC3 diffuse
    # The normal map's alpha: the old specular mask, a flat value, or no alpha at all.
    alpha_choices: tuple[float, float, float] = (0.6, 0.15, 0.25)  # specular mask, flat, absent
    alpha_noise: tuple[float, float] = (0.0, 0.08)
    # The normal map's storage: uncompressed, "legacy" (BC1, or BC3 when it has an alpha), BC7, or
    # BC5. BC1's 5:6:5 endpoints cost the most height (scripts/data/height_headroom.py).
    normal_formats: tuple[tuple[str, float], ...] = (("none", 0.3), ("legacy", 0.35), ("bc7", 0.25), ("bc5", 0.1))


DEFAULT = Degradation()


def _uniform(rng, bounds) -> float:
    return float(rng.uniform(*bounds))


BLOCK_FORMATS = ("bc1", "bc3", "bc5", "bc7")


def bc_roundtrip(pixels: np.ndarray, block_format: str) -> np.ndarray:
    """Compress to a DDS block format (BLOCK_FORMATS) and back: its 4x4 block artefacts. `pixels` is
    HxWx3 or HxWx4 in [0, 1] and comes back with the same channels; BC1 drops the alpha (opaque), BC5
    keeps red and green only (blue and alpha come back 0 and 1). Sizes that are not multiples of 4
    come back unchanged."""
    import etcpak
    import texture2ddecoder

    if block_format not in BLOCK_FORMATS:
        raise ValueError(f"unknown block format {block_format!r}; expected one of {BLOCK_FORMATS}")
    h, w = pixels.shape[:2]
    if h % 4 or w % 4:
        return pixels
    channels = pixels.shape[-1]
    rgba = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    if channels == 3:
        rgba = np.concatenate([rgba, np.full((h, w, 1), 255, np.uint8)], axis=-1)
    encode = getattr(etcpak, f"compress_{block_format}")
    decode = getattr(texture2ddecoder, f"decode_{block_format}")
    bgra = np.frombuffer(decode(encode(rgba.tobytes(), w, h), w, h), np.uint8).reshape(h, w, 4)
    out = bgra[..., [2, 1, 0, 3]].astype(np.float32) / 255.0
    return out[..., :channels]


def key_light(azimuth: float, elevation: float) -> np.ndarray:
    """Unit direction (tangent space, z out of the surface) of a light at these angles (radians)."""
    return np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)],
                    np.float32)


def lambert(normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    """n.l relative to flat ground (1 where the surface faces up), the shading a baked light leaves."""
    return np.clip(normal @ light, 0.0, None) / light[2]


def sheen(normal: np.ndarray, light: np.ndarray, roughness: np.ndarray) -> np.ndarray:
    """A Blinn highlight for a viewer straight above, sharper and brighter where the surface is glossy."""
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    gloss = (1.0 - roughness) ** 2
    return np.clip(normal @ half, 0, 1) ** (8 + 56 * gloss) * gloss


def specular_mask(roughness: np.ndarray, metallic: np.ndarray | None, rng, cfg: Degradation = DEFAULT) -> np.ndarray:
    """An old specular mask from roughness/metallic through a random tone curve, blurred and noisy."""
    gloss = 1.0 - roughness
    weight = rng.uniform(0.0, 0.5)
    base = gloss if metallic is None else (1 - weight) * gloss + weight * metallic
    curve = rng.uniform(0.5, 2.5)
    mask = rng.uniform(0.5, 1.0) * np.clip(base, 0, 1) ** curve + rng.uniform(0.0, 0.2)
    if rng.random() < 0.5:
        mask = periodic_blur(mask, rng.uniform(0.5, 3.0))
    mask = mask + rng.normal(0, _uniform(rng, cfg.alpha_noise), mask.shape)
    return np.clip(mask, 0, 1).astype(np.float32)


def render_old_game(maps: dict, rng: np.random.Generator, cfg: Degradation = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """(diffuse HxWx3 sRGB, normal map HxWx3|4 pixels in [0, 1], DirectX, alpha = old specular mask)
    from a ground-truth set. `maps` needs albedo and normal; roughness, metallic, ao and height are
    used when present (a missing map simply skips the steps that need it)."""
    albedo = srgb_to_linear(maps["albedo"][..., :3].astype(np.float32))
    normal = maps["normal"].astype(np.float32)
    roughness, metallic = maps.get("roughness"), maps.get("metallic")
    h, w = albedo.shape[:2]
    shade = np.ones((h, w), np.float32)
    ao = maps.get("ao")
    if ao is None and maps.get("height") is not None:
        ao = ao_from_height(maps["height"], depth_px=rng.uniform(10, 40))
    if ao is not None:
        shade *= 1.0 + (ao - 1.0) * _uniform(rng, cfg.ao_amount)
    if maps.get("height") is not None:
        height = maps["height"] - maps["height"].mean()
        cavity = np.clip(periodic_blur(height, max(h, w) / 64) - height, 0, None)
        cavity /= np.percentile(cavity, 99) + 1e-6
        shade *= np.clip(1.0 - _uniform(rng, cfg.cavity_amount) * cavity * 0.5, 0.2, 1.0)
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = np.radians(_uniform(rng, cfg.light_elevation_deg))
    light = key_light(azimuth, elevation)
    shade *= 1.0 + (lambert(normal, light) - 1.0) * _uniform(rng, cfg.light_amount)
    if metallic is not None:
        grey = (albedo @ LUMA)[..., None]
        darkening = _uniform(rng, cfg.metal_darkening) * metallic[..., None]
        albedo = albedo * (1 - darkening) + grey * 0.6 * darkening
    linear = albedo * shade[..., None]
    if roughness is not None:
        linear = linear + (sheen(normal, light, roughness) * _uniform(rng, cfg.sheen_amount))[..., None]
    linear = linear * (1.0 + rng.normal(0, cfg.cast_sigma, 3)).astype(np.float32)
    srgb = linear_to_srgb(np.clip(linear, 0, 1))
    mean = srgb.mean()
    srgb = np.clip((srgb - mean) * _uniform(rng, cfg.contrast) + mean, 0, 1) ** _uniform(rng, cfg.gamma)
    if rng.random() < cfg.blur_probability:
        srgb = periodic_blur(srgb, _uniform(rng, cfg.blur_sigma))
    if rng.random() < cfg.rescale_probability:
        f = _uniform(rng, cfg.rescale_factor)
        small = periodic_resize(srgb, max(4, int(h * f)), max(4, int(w * f)))
        srgb = periodic_resize(small, h, w)
    srgb = np.clip(srgb, 0, 1).astype(np.float32)
    if rng.random() < cfg.bc_probability:
        srgb = bc_roundtrip(srgb, "bc3" if rng.random() < 0.5 else "bc1")
    return srgb, old_normal_map(normal, roughness, metallic, rng, cfg)


def old_normal_map(normal: np.ndarray, roughness, metallic, rng, cfg: Degradation = DEFAULT) -> np.ndarray:
    """The normal as an old game ships it: DirectX pixels, uncompressed or block-compressed
    (cfg.normal_formats), with the specular mask, a flat value or no alpha (HxWx3 then)."""
    pixels = encode_normal(normal, directx=True)
    names, weights = zip(*cfg.normal_formats)
    storage = names[rng.choice(len(names), p=np.asarray(weights) / sum(weights))]
    choice = rng.choice(3, p=np.asarray(cfg.alpha_choices) / sum(cfg.alpha_choices))
    if storage == "bc5":
        alpha = None
    elif choice == 0 and roughness is not None:
        alpha = specular_mask(roughness, metallic, rng, cfg)
    elif choice in (0, 1):
        alpha = np.full(normal.shape[:2], rng.uniform(0.2, 1.0), np.float32)
    else:
        alpha = None
    if alpha is not None:
        pixels = np.concatenate([pixels, alpha[..., None]], axis=-1)
    if storage == "legacy":
        pixels = bc_roundtrip(pixels, "bc3" if alpha is not None else "bc1")
    elif storage != "none":
        pixels = bc_roundtrip(pixels, storage)
    return pixels.astype(np.float32)


def input_statistics(diffuse: np.ndarray) -> dict[str, float]:
    """Simple statistics of a diffuse (sRGB HxWx3) for comparing synthesised and real old-game inputs:
    mean saturation (HSV), RMS contrast of the luma, and the share of the luma's variance below 1/16 of
    the image's frequencies (low-frequency shading energy: baked light and AO live there)."""
    rgb = np.clip(diffuse[..., :3].astype(np.float64), 0, 1)
    high, low = rgb.max(-1), rgb.min(-1)
    saturation = np.where(high > 1e-6, (high - low) / np.maximum(high, 1e-6), 0.0)
    luma = rgb @ LUMA.astype(np.float64)
    centred = luma - luma.mean()
    spectrum = np.abs(np.fft.fft2(centred)) ** 2
    fy = np.abs(np.fft.fftfreq(luma.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(luma.shape[1]))[None, :]
    low_band = np.maximum(fx, fy) < 1 / 16
    total = spectrum.sum()
    return {"saturation": float(saturation.mean()), "contrast": float(centred.std()),
            "low_frequency_energy": float(spectrum[low_band].sum() / total) if total > 0 else 0.0}
