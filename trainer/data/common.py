"""Numpy building blocks shared by the data readers, the procedural generator and the pre-flight audits.

Everything here works on HxW[xC] float32 arrays (top row first) and treats textures as TILEABLE:
derivatives, blurs, resizes and crops wrap around the edges, so nothing here creates a seam.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from addon.engine import normalmaps
from addon.engine.tiling import resize_wrap
from trainer import contract

log = logging.getLogger(__name__)

NUM_CLASSES = len(contract.MATERIAL_CLASSES)
# A pixel belongs to the metallic mask when its metallic value is above this (MatSynth metallic maps
# are nearly binary; 0.5 splits painted/rusty transitions in the middle).
METALLIC_MASK_THRESHOLD = 0.5


def labels_vector(names) -> np.ndarray:
    """Multi-hot float32 vector over contract.MATERIAL_CLASSES; unknown names are ignored."""
    vector = np.zeros(NUM_CLASSES, np.float32)
    for name in names:
        name = str(name).strip().lower()
        if name in contract.MATERIAL_CLASSES:
            vector[contract.MATERIAL_CLASSES.index(name)] = 1.0
    return vector


# ---------------------------------------------------------------- colour and normals

def normal_from_height(height: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """OpenGL tangent-space normals (HxWx3 unit vectors, +Y up) from a height map, wrapping at the edges.

    `strength` is the height difference, in pixels, of a full 0..1 step. Rows run top to bottom, so
    "up" (+Y) is towards row 0: a surface rising towards the bottom of the image leans its normal up.
    """
    h = height.astype(np.float32) * strength
    dh_dx = (np.roll(h, -1, axis=1) - np.roll(h, 1, axis=1)) * 0.5
    dh_drow = (np.roll(h, -1, axis=0) - np.roll(h, 1, axis=0)) * 0.5
    n = np.stack([-dh_dx, dh_drow, np.ones_like(h)], axis=-1)
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)


def decode_normal(rgb: np.ndarray, directx: bool) -> np.ndarray:
    """Normal-map pixels in [0,1] -> OpenGL unit vectors; DirectX maps (Skyrim) get their green flipped.
    The add-on's own decoder, so training sees what users' conversions see (BC5 maps get Z rebuilt)."""
    return normalmaps.decode_normal(rgb, "directx" if directx else "opengl", [])


def encode_normal(n: np.ndarray, directx: bool) -> np.ndarray:
    """OpenGL unit vectors -> float32 pixels in [0,1] (flipping green for DirectX files); the add-on's
    own encoder."""
    return normalmaps.encode_normal(np.asarray(n, np.float32), "directx" if directx else "opengl")


# ---------------------------------------------------------------- periodic filters

def periodic_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with wrap-around (in the Fourier domain, so any sigma costs the same)."""
    h, w = image.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    if image.ndim == 3:
        kernel = kernel[..., None]
    spectrum = np.fft.rfft2(image, axes=(0, 1)) * kernel
    return np.fft.irfft2(spectrum, s=(h, w), axes=(0, 1)).astype(np.float32)


# Horizon search of ao_from_height: 8 directions, distances (pixels at 1024 px) doubling up to 64.
AO_DIRECTIONS = 8
AO_DISTANCES = (1, 2, 4, 8, 16, 32, 64)


# Depth in pixels at 1024 px of a full 0..1 height step for AO targets of heights whose scale is not
# known in pixels (MatSynth's height_factor is not): it suits most materials.
AO_DEPTH_PX = 40.0


def ao_from_height(height: np.ndarray, depth_px: float | None = None) -> np.ndarray:
    """Ambient occlusion (1 = open sky, 0 = fully occluded) from a height map, tileable.

    MatSynth ships no AO, so targets use this horizon-based estimate: along 8 directions the
    highest horizon elevation is searched at doubling distances (wrapping around the edges), and
    each direction contributes the cosine-weighted visible fraction of its half-plane, cos^2 of the
    elevation. Distances and depth are given for 1024 px and follow the image size, so a material
    gets the same AO at any resolution. `depth_px` is the depth, in pixels at 1024 px, of a full
    0..1 height step (40 suits most materials; the procedural materials store theirs as
    metadata["height_factor"]).
    """
    depth_px = AO_DEPTH_PX if depth_px is None else depth_px
    scale = max(height.shape[:2]) / 1024.0
    h = height.astype(np.float32) * depth_px * scale
    visible = np.zeros_like(h)
    for k in range(AO_DIRECTIONS):
        angle = 2 * np.pi * k / AO_DIRECTIONS
        steepest = np.zeros_like(h)
        seen = set()
        for distance in AO_DISTANCES:
            dy, dx = (int(round(distance * scale * np.sin(angle))), int(round(distance * scale * np.cos(angle))))
            if (dy, dx) == (0, 0) or (dy, dx) in seen:
                continue
            seen.add((dy, dx))
            rise = np.roll(h, (-dy, -dx), axis=(0, 1)) - h
            steepest = np.maximum(steepest, rise / np.hypot(dy, dx))
        visible += 1.0 / (1.0 + steepest ** 2)  # cos^2(atan(tangent))
    return (visible / AO_DIRECTIONS).astype(np.float32)


def _box_halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image.reshape(h // 2, 2, w // 2, 2, *image.shape[2:]).mean(axis=(1, 3))


def periodic_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a tileable HxW[xC] image so that it stays tileable: 2x box reductions while the image is at
    least twice the target (no aliasing), then the engine's bilinear wrap-around resize.

    The box reductions are on purpose trainer-only: training sources shrink by large factors (4K to a
    crop), while the engine resamples only a normal map to its diffuse's size and must stay as it is."""
    image = image.astype(np.float32)
    while (image.shape[0] >= 2 * height and image.shape[1] >= 2 * width
           and image.shape[0] % 2 == 0 and image.shape[1] % 2 == 0):
        image = _box_halve(image)
    if image.shape[:2] != (height, width):
        planes = image if image.ndim == 3 else image[..., None]
        image = resize_wrap(planes, height, width).reshape(height, width, *image.shape[2:])
    return image.astype(np.float32)


def _wrap_take(image: np.ndarray, start: int, length: int, axis: int) -> np.ndarray:
    n = image.shape[axis]
    start %= n
    if start + length <= n:  # the common case: a plain slice, no copy
        return image[(slice(None),) * axis + (slice(start, start + length),)]
    return np.take(image, (start + np.arange(length)) % n, axis=axis)


def wrap_crop(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Crop that continues across the edges of a tileable image (any offset is seamless)."""
    return _wrap_take(_wrap_take(image, top, height, 0), left, width, 1)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any 1..4-channel image -> HxWx3 (grey is repeated, alpha dropped)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] in (1, 2):
        return np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]


def as_gray(image: np.ndarray) -> np.ndarray:
    """Any 1..4-channel image -> HxW (the first channel: data maps are stored grey or in R)."""
    return image if image.ndim == 2 else image[..., 0]


# ------------------------------------------------------------------------- the data report

@dataclass
class DataReport:
    """What the readers served and skipped, and why: `loader.dataset.report` of a training loader,
    `dataset.report` of a reader. Every skip is also logged as a warning. Counted in the process that
    reads: with DataLoader workers each worker counts in its own copy, so the warnings are the record."""

    loaded: Counter = field(default_factory=Counter)      # source -> samples served
    skipped: Counter = field(default_factory=Counter)     # reason -> count
    examples: dict = field(default_factory=dict)          # reason -> first few paths
    max_examples: int = 5

    def ok(self, source: str) -> None:
        self.loaded[source] += 1

    def skip(self, path, reason: str) -> None:
        """Record one skipped file or sample. `reason` is a short sentence without the path."""
        self.skipped[reason] += 1
        paths = self.examples.setdefault(reason, [])
        if len(paths) < self.max_examples:
            paths.append(str(path))
        log.warning("skipped %s: %s", path, reason)

    def to_dict(self) -> dict:
        return {"loaded": dict(self.loaded), "skipped_total": sum(self.skipped.values()),
                "skipped": dict(self.skipped), "examples": self.examples}
