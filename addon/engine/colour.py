"""sRGB <-> linear transfer functions (IEC 61966-2-1), the one copy the engine and the trainer use.

Inputs are clipped to [0, 1]; float inputs keep their precision (float64 stays float64), anything else
comes back as float32. `srgb_decode` is the decoding formula alone, in arithmetic numpy arrays and
torch tensors share: srgb_to_linear here and the trainer's torch renderer (trainer/metrics.py) call it.
"""
from __future__ import annotations

import numpy as np


def _as_float(values) -> np.ndarray:
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float32)


def srgb_decode(c, where):
    """Linear values of sRGB-encoded `c` (already in [0, 1]); `where` is np.where or torch.where."""
    return where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_to_linear(srgb) -> np.ndarray:
    c = np.clip(_as_float(srgb), 0.0, 1.0)
    return srgb_decode(c, np.where).astype(c.dtype, copy=False)


def linear_to_srgb(linear) -> np.ndarray:
    c = np.clip(_as_float(linear), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055).astype(c.dtype, copy=False)
