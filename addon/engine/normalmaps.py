"""Normal-map images: every convention for reading and writing one, in one place.

- Vectors inside the engine (and the models) are OpenGL unit vectors in [-1, 1] (+Y up). An image
  stores a vector as (n + 1) / 2; a DirectX image (Skyrim `_n`) has its green flipped.
- A two-channel normal map (BC5, or RG saved into an RGB file) stores X and Y only: its blue channel
  is 0. Z is then rebuilt from X and Y, and the map cannot be judged by its blue channel. The
  pipeline, blender/detect.py and the trainer all decide it with `stores_no_z`. The threshold is a
  float64 1/255: an 8-bit blue of 1, decoded to float32 (0.0039215689), lies just above it and
  counts as a stored Z.
- Which convention an input uses: asked for ("directx", "opengl"), else ("auto") what its file name
  says (`input_convention`, from naming.normal_convention_of), else what its pixels say
  (`detect_normal_convention`).
"""
from __future__ import annotations

from pathlib import PurePath

import numpy as np

from . import naming

# What a caller may ask for: a green-channel convention, or "auto" (from the name, then the pixels).
NORMAL_CONVENTIONS = ("auto", "directx", "opengl")
NO_Z_MAX_BLUE = 1.0 / 255.0  # the largest blue value of a map that stores no Z
# Auto-detection from the pixels looks at most at this many pixels per side (the test is local; a
# crop suffices).
DETECTION_CROP = 1024


def stores_no_z(blue) -> bool:
    """True when the blue channel (values in [0, 1]) of a whole normal map holds no Z."""
    return float(np.max(blue)) <= NO_Z_MAX_BLUE


def input_convention(requested: str, normal_name: str | PurePath | None) -> str:
    """The convention to read a normal map with: the one asked for, or with "auto" the one its
    name implies ("auto" still when the name says nothing, or there is no normal map)."""
    if requested != "auto" or normal_name is None:
        return requested
    return naming.normal_convention_of(normal_name)


def decode_normal(encoded: np.ndarray, convention: str, warnings: list,
                  rebuild_z: bool | None = None) -> np.ndarray:
    """(H, W, >=3) normal-map pixels in [0, 1] -> (H, W, 3) OpenGL unit vectors (float32).

    Two-channel maps (BC5: blue stored as 0) get Z rebuilt from X and Y (`rebuild_z`: decided by
    the caller for a whole map decoded in parts). DirectX maps (Skyrim `_n`) have their green
    flipped. "auto" picks the convention under which the normals are the slopes of a height field
    (see detect_normal_convention).
    """
    vectors = np.empty(encoded.shape[:2] + (3,), dtype=np.float32)
    np.multiply(encoded[..., :3], 2.0, out=vectors, casting="unsafe")
    vectors -= 1.0
    if rebuild_z is None:
        rebuild_z = stores_no_z(encoded[..., 2])
    if rebuild_z:  # no Z stored: rebuild it (unit length, facing out)
        z = 1.0 - vectors[..., 0] ** 2 - vectors[..., 1] ** 2
        np.sqrt(np.maximum(z, 0.0, out=z), out=vectors[..., 2])
    if convention == "auto":
        convention = detect_normal_convention(vectors, warnings)
    if convention == "directx":
        vectors[..., 1] *= -1.0
    length = np.sqrt(np.einsum("hwc,hwc->hw", vectors, vectors))
    flat = length < 1e-6
    vectors /= np.maximum(length, 1e-6)[..., None]
    vectors[flat] = (0.0, 0.0, 1.0)
    return vectors


def encode_normal(vectors: np.ndarray, convention: str = "opengl") -> np.ndarray:
    """(H, W, 3) OpenGL unit vectors -> normal-map pixels (n + 1) / 2 in [0, 1], green flipped for
    "directx". Computed in the vectors' own float type (half precision stays half: an 8K map)."""
    encoded = np.array(vectors[..., :3], copy=True)
    if convention == "directx":
        encoded[..., 1] *= -1.0
    encoded += 1.0
    encoded *= 0.5
    return np.clip(encoded, 0.0, 1.0, out=encoded)


def detect_normal_convention(vectors: np.ndarray, warnings: list) -> str:
    """Guess DirectX or OpenGL from the normals themselves.

    With the OpenGL convention a tangent-space normal is (-dh/dx, dh/drow, 1) up to scale for some
    height field h, so the slopes p = -nx/nz and q = ny/nz satisfy dp/drow = dq/dx (no curl).
    A flipped green breaks that. Whichever convention leaves less curl wins; a near tie (flat or
    noisy maps) falls back to DirectX, the Skyrim convention, with a warning.
    """
    crop = vectors[:DETECTION_CROP, :DETECTION_CROP].astype(np.float64)
    nz = np.maximum(crop[..., 2], 0.1)
    p = -crop[..., 0] / nz
    q = crop[..., 1] / nz
    dp_drow = np.gradient(p, axis=0)
    dq_dcol = np.gradient(q, axis=1)
    curl_opengl = np.abs(dp_drow - dq_dcol).mean()
    curl_directx = np.abs(dp_drow + dq_dcol).mean()
    if curl_opengl < 0.8 * curl_directx:
        return "opengl"
    if curl_directx < 0.8 * curl_opengl:
        return "directx"
    warnings.append("Could not tell whether the normal map is DirectX or OpenGL; assumed DirectX (Skyrim).")
    return "directx"
