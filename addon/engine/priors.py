"""Classic estimates the networks start from, computed the same way in training and conversion.

- `specular_input`: the old normal map's alpha (Skyrim's specular mask) as two channels, the mask and
  a presence flag. A missing or flat alpha gives (0, 0): the networks learn a fallback for it.
- `height_prior`: Frankot–Chellappa integration of the normal map (FFT, exact for tiling textures),
  standardised. UNet-Maps predicts height as a correction to it, so the network starts as good as
  normal integration and learns what integration misses.

Both take the whole texture (or a training crop, which the trainer treats as a texture of its own);
the prior is integrated at most PRIOR_MAX_SIDE pixels per side, so an 8K texture costs what a 1K one does.
"""
from __future__ import annotations

import numpy as np

from .tiling import resize_antialiased

# An alpha whose values span less than this is "flat" (a constant written by a tool), not a mask.
FLAT_ALPHA_RANGE = 0.02
PRIOR_MAX_SIDE = 1024
# The standardised prior is stored as 0.5 + HEIGHT_PRIOR_SPREAD * z (z in standard deviations).
HEIGHT_PRIOR_SPREAD = 0.1
SPECULAR_CHANNELS = ("specular_mask", "specular_present")


def has_specular_mask(alpha: np.ndarray | None) -> bool:
    """Whether a normal map's alpha plane is a specular mask (not absent, not one flat value)."""
    return alpha is not None and float(alpha.max()) - float(alpha.min()) >= FLAT_ALPHA_RANGE


def specular_planes(mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """(height, width, 2) float32 in SPECULAR_CHANNELS order: the mask (clipped to [0, 1]) and 1, or
    zeros when `mask` is None (no mask: the flag tells the networks to use their fallback)."""
    out = np.zeros((height, width, 2), dtype=np.float32)
    if mask is not None:
        out[..., 0] = np.clip(mask, 0.0, 1.0)
        out[..., 1] = 1.0
    return out


def specular_input(alpha: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """The specular input of a whole image: its alpha when that is a mask (has_specular_mask),
    else the absent (0, 0). Decided once for the whole image given."""
    return specular_planes(alpha if has_specular_mask(alpha) else None, height, width)


def normal_slopes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dh/dcolumn, dh/drow) of the surface an OpenGL normal map describes (float64)."""
    normal = np.asarray(normal, dtype=np.float64)
    nz = np.clip(normal[..., 2], 0.05, None)
    # OpenGL tangent space: +X right, +Y up. Rows run downwards, so dh/drow = +ny/nz.
    return -normal[..., 0] / nz, normal[..., 1] / nz


def integrate_normals(normal: np.ndarray, depth_scale: float = 1.0) -> np.ndarray:
    """Frankot–Chellappa: the periodic height whose gradient best matches the OpenGL normal map.

    Returns height in pixel units (mean zero); depth_scale multiplies the slopes first.
    """
    p, q = normal_slopes(normal)
    p, q = p * depth_scale, q * depth_scale
    h, w = p.shape
    wy = 2j * np.pi * np.fft.fftfreq(h)[:, None]
    wx = 2j * np.pi * np.fft.fftfreq(w)[None, :]
    denom = np.abs(wx) ** 2 + np.abs(wy) ** 2
    denom[0, 0] = 1.0
    spectrum = (np.conj(wx) * np.fft.fft2(p) + np.conj(wy) * np.fft.fft2(q)) / denom
    spectrum[0, 0] = 0.0
    return np.real(np.fft.ifft2(spectrum))


def standardise(height: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Zero mean, unit standard deviation, measured where `mask` is true (everywhere without one);
    a flat height stays flat: zeros."""
    values = height[mask] if mask is not None else height
    centred = height - values.mean()
    spread = float(values.std())
    return centred / spread if spread > 1e-8 else np.zeros_like(centred)


def height_prior(normal: np.ndarray, max_side: int = PRIOR_MAX_SIDE) -> np.ndarray:
    """(h, w) float32 standardised integrated height, 0.5 + HEIGHT_PRIOR_SPREAD * z, of an (H, W, 3)
    OpenGL unit normal map; (h, w) = (H, W) shrunk to at most max_side (the caller resamples it with
    wrap-around to the texture's pixels, as the context logits are)."""
    height, width = normal.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        normal = resize_antialiased(normal[..., :3], max(1, round(height * scale)), max(1, round(width * scale)))
    z = standardise(integrate_normals(normal))
    return np.clip(0.5 + HEIGHT_PRIOR_SPREAD * z, 0.0, 1.0).astype(np.float32)
