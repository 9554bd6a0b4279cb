"""Procedural PBR materials: a seedable, tileable stand-in for MatSynth and for Skyrim pairs.

`generate_material(seed, size, category)` builds a full set (albedo, OpenGL normal, roughness, metallic,
AO, height) for one of the 13 contract classes; `render_old_diffuse` bakes it into the kind of diffuse
an old game ships. The writers store materials as MatSynth-schema parquet shards or as a Skyrim
vanilla/True PBR folder pair (layouts in docs/data.md), which is what the readers, the tests and CPU
training runs consume when the real data is not at hand.

Everything is periodic by construction (Fourier noise, integer tile counts, wrap-around distances and
filters), so every map tiles seamlessly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from addon.engine.colour import linear_to_srgb, srgb_to_linear
from addon.engine.imageio import encode_png
from addon.engine.truepbr import pack_rmaos
from trainer import contract
from trainer.data.common import ao_from_height, encode_normal, normal_from_height
from trainer.data.degrade import bc_roundtrip, key_light, lambert, sheen
from trainer.data.skyrim import LABELS_FILE

CATEGORIES = contract.MATERIAL_CLASSES


@dataclass
class Material:
    """One procedural material; all maps HxW[xC] float32, top row first."""

    name: str
    category: str
    labels: tuple[str, ...]
    albedo: np.ndarray      # HxWx3 sRGB
    normal: np.ndarray      # HxWx3 OpenGL unit vectors
    roughness: np.ndarray
    metallic: np.ndarray
    ao: np.ndarray
    height: np.ndarray      # 0.5 = mid level
    metadata: dict = field(default_factory=dict)
    diffuse: np.ndarray | None = None  # HxWx3 sRGB old-game diffuse, set by render_old_diffuse
    specular: np.ndarray | None = None  # HxW old-game specular mask (normal-map alpha)


# ---------------------------------------------------------------- periodic primitives

def _grid(size):
    v, u = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
    return u.astype(np.float32), v.astype(np.float32)


def _noise(rng, size, beta=2.0, low=1, high=None):
    """Tileable fractal noise in [0,1]: white noise shaped to a 1/f^beta spectrum between `low` and
    `high` cycles per image (integer frequencies of the FFT basis are periodic)."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    fy = np.abs(np.fft.fftfreq(size) * size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :] * size
    f = np.sqrt(fx ** 2 + fy ** 2)
    high = size / 2 if high is None else high
    amplitude = np.where((f >= low) & (f <= high), 1.0 / np.maximum(f, 1.0) ** (beta / 2), 0.0)
    field_ = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(size, size))
    lo, hi = np.percentile(field_, (0.5, 99.5))
    return np.clip((field_ - lo) / max(hi - lo, 1e-8), 0.0, 1.0).astype(np.float32)


def _cells(rng, size, count):
    """Wrap-around Voronoi on a jittered grid of about `count` seeds: (distance to the nearest seed,
    to the second nearest, nearest seed id), in pixels. Each pixel checks the 3x3 neighbouring cells."""
    g = max(int(round(np.sqrt(count))), 2)
    jitter = rng.random((g, g, 2))
    cell_px = size / g
    u, v = _grid(size)
    cu, cv = np.floor(u * g).astype(np.int64), np.floor(v * g).astype(np.int64)
    d1 = np.full((size, size), np.inf, np.float32)
    d2 = np.full((size, size), np.inf, np.float32)
    ids = np.zeros((size, size), np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ny, nx = (cv + dy) % g, (cu + dx) % g
            # Seed position unwrapped next to this pixel's cell, so distances need no wrap test.
            py = (cv + dy + jitter[ny, nx, 0]) * cell_px
            px = (cu + dx + jitter[ny, nx, 1]) * cell_px
            d = np.hypot(v * size - py, u * size - px).astype(np.float32)
            closer = d < d1
            d2 = np.where(closer, d1, np.minimum(d2, d))
            ids = np.where(closer, ny * g + nx, ids)
            d1 = np.where(closer, d, d1)
    return d1, d2, ids


def _layout(rng, size, rows, cols, gap_px, shift="half"):
    """Bricks, tiles or planks: (bevel 0 in the joints .. 1 inside, per-piece id). Integer rows/cols keep
    it periodic; "half" is a running bond (rows must be even), "random" staggers each row (planks)."""
    u, v = _grid(size)
    row = np.floor(v * rows).astype(np.int64)
    if shift == "half":
        offsets = (np.arange(rows) % 2) * 0.5
    elif shift == "random":
        offsets = rng.random(rows)
    else:
        offsets = np.zeros(rows)
    x = u * cols + offsets[row]
    col = np.floor(x).astype(np.int64) % cols
    fu, fv = x - np.floor(x), v * rows - row
    edge_px = np.minimum(np.minimum(fu, 1 - fu) * size / cols, np.minimum(fv, 1 - fv) * size / rows)
    bevel = np.clip(edge_px / max(gap_px, 1e-3), 0.0, 1.0)
    return bevel * bevel * (3 - 2 * bevel), row * cols + col


def _tint(rng, base, spread):
    return np.clip(np.asarray(base, np.float32) + rng.normal(0, spread, 3), 0.02, 0.98).astype(np.float32)


def _mix(a, b, t):
    t = t[..., None] if np.ndim(t) == 2 and np.ndim(a) == 3 else t
    return a * (1 - t) + b * t


def _colour(shape_hw, rgb):
    return np.broadcast_to(np.asarray(rgb, np.float32), (*shape_hw, 3)).copy()


# ---------------------------------------------------------------- the 13 categories
# Each returns albedo (sRGB), height, roughness, metallic, relief depth (px of a 0..1 step at 1024 px)
# and extra labels.

def _metal(rng, s):
    n = int(rng.integers(1, 4))
    bevel, pid = _layout(rng, s, n, n, gap_px=s / 128, shift="none")
    u, v = _grid(s)
    fu, fv = (u * n) % 1, (v * n) % 1
    rivet_pos = 0.08
    rivets = np.zeros_like(u)
    for cy in (rivet_pos, 1 - rivet_pos):
        for cx in (rivet_pos, 1 - rivet_pos):
            d = np.hypot((fu - cx) * s / n, (fv - cy) * s / n) / (s / 96)
            rivets = np.maximum(rivets, np.clip(1 - d * d, 0, 1))
    rust = _noise(rng, s, 2.2, 2)
    rust_amount = rng.uniform(0.25, 0.7)
    rust_mask = np.clip((rust - (1 - rust_amount)) * 6 + (1 - bevel) * 0.8, 0, 1)
    scratches = _noise(rng, s, 0.8, 40)
    base = _tint(rng, rng.choice([(0.62, 0.62, 0.64), (0.75, 0.6, 0.35), (0.7, 0.45, 0.35)]), 0.04)
    rust_colour = _tint(rng, (0.42, 0.22, 0.1), 0.04)
    albedo = _mix(_colour(u.shape, base) * (0.9 + 0.1 * scratches[..., None]),
                  rust_colour * (0.7 + 0.6 * _noise(rng, s, 1.5, 8))[..., None], rust_mask)
    metallic = 1.0 - rust_mask
    roughness = _mix(0.25 + 0.2 * scratches, np.full_like(u, 0.85), rust_mask)
    height = 0.35 + 0.35 * bevel + 0.2 * rivets + 0.08 * rust_mask * _noise(rng, s, 1.2, 16)
    return albedo, height, roughness, metallic, 12.0, ()


def _wood(rng, s):
    rows = int(rng.choice([4, 6, 8]))
    bevel, pid = _layout(rng, s, rows, int(rng.integers(1, 3)), gap_px=s / 256, shift="random")
    u, v = _grid(s)
    warp = _noise(rng, s, 3.0, 1, 8)
    phase = rng.random(rows * 2)[pid % (rows * 2)] * 6.28
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (v * rows * 6 + warp * 3) + phase)
    fibres = _noise(rng, s, 1.0, 64)
    base = _tint(rng, (0.55, 0.36, 0.2), 0.06)
    plank_shade = 0.8 + 0.35 * rng.random(pid.max() + 1)[pid]
    albedo = _colour(u.shape, base) * (plank_shade * (0.75 + 0.25 * grain) * (0.9 + 0.1 * fibres))[..., None]
    height = 0.25 + 0.6 * bevel + 0.06 * grain + 0.04 * fibres
    roughness = 0.55 + 0.2 * fibres + 0.15 * (1 - bevel)
    return albedo, height, roughness, np.zeros_like(u), 8.0, ()


def _bricks(rng, s, base, mortar, rows_choice):
    rows = int(rng.choice(rows_choice))
    bevel, pid = _layout(rng, s, rows, rows // 2, gap_px=s / 96, shift="half")
    rough = _noise(rng, s, 1.6, 8)
    piece = 0.8 + 0.3 * rng.random(pid.max() + 1)[pid]
    albedo = _mix(_colour(bevel.shape, mortar),
                  _colour(bevel.shape, _tint(rng, base, 0.05)) * (piece * (0.85 + 0.25 * rough))[..., None],
                  bevel)
    height = 0.2 + 0.6 * bevel + 0.15 * rough * bevel
    roughness = 0.75 + 0.2 * rough
    return albedo, height, roughness, np.zeros_like(bevel), 20.0


def _stone(rng, s):
    if rng.random() < 0.5:
        return (*_bricks(rng, s, (0.5, 0.49, 0.46), (0.35, 0.34, 0.32), [4, 6]), ())
    d1, d2, ids = _cells(rng, s, int(rng.integers(12, 40)))
    edge = np.clip((d2 - d1) / (s / 64), 0, 1)
    rough = _noise(rng, s, 1.8, 4)
    shade = 0.7 + 0.4 * rng.random(ids.max() + 1)[ids]
    albedo = _colour(edge.shape, _tint(rng, (0.45, 0.44, 0.42), 0.05)) * (shade * (0.8 + 0.3 * rough) * (0.5 + 0.5 * edge))[..., None]
    height = 0.15 + 0.65 * np.sqrt(edge) + 0.15 * rough
    return albedo, height, 0.8 + 0.15 * rough, np.zeros_like(edge), 25.0, ()


def _fabric(rng, s):
    threads = int(rng.choice([32, 48, 64])) * max(s // 256, 1)
    u, v = _grid(s)
    warp_thread = np.sin(np.pi * u * threads) ** 2
    weft_thread = np.sin(np.pi * v * threads) ** 2
    over = (np.floor(u * threads) + np.floor(v * threads)) % 2
    weave = np.where(over > 0, 0.5 + 0.5 * warp_thread, 0.5 + 0.5 * weft_thread)
    fuzz = _noise(rng, s, 1.0, 32)
    dye = _tint(rng, rng.choice([(0.6, 0.15, 0.12), (0.2, 0.3, 0.55), (0.7, 0.65, 0.5), (0.25, 0.4, 0.2)]), 0.05)
    albedo = _colour(u.shape, dye) * (0.7 + 0.3 * weave * (0.9 + 0.1 * fuzz))[..., None]
    return albedo, 0.3 + 0.5 * weave + 0.1 * fuzz, 0.85 + 0.1 * fuzz, np.zeros_like(u), 4.0, ()


def _leather(rng, s):
    d1, d2, _ = _cells(rng, s, int(rng.integers(150, 300)))
    creases = np.clip((d2 - d1) / (s / 200), 0, 1)
    folds = _noise(rng, s, 2.5, 1, 12)
    albedo = _colour(d1.shape, _tint(rng, (0.32, 0.19, 0.11), 0.05)) * (0.7 + 0.3 * creases * (0.8 + 0.4 * folds))[..., None]
    height = 0.3 + 0.25 * creases + 0.35 * folds
    return albedo, height, 0.45 + 0.3 * (1 - creases) + 0.1 * folds, np.zeros_like(d1), 6.0, ()


def _ground(rng, s):
    dirt = _noise(rng, s, 2.0, 2)
    d1, _, ids = _cells(rng, s, int(rng.integers(40, 120)))
    radius = s / 40
    pebbles = np.clip(1 - (d1 / radius) ** 2, 0, 1) * (rng.random(ids.max() + 1)[ids] > 0.4)
    dirt_colour = _tint(rng, (0.36, 0.27, 0.18), 0.05)
    pebble_colour = _tint(rng, (0.5, 0.48, 0.45), 0.05)
    albedo = _mix(_colour(d1.shape, dirt_colour) * (0.7 + 0.5 * dirt)[..., None], _colour(d1.shape, pebble_colour),
                  np.clip(pebbles * 4, 0, 1))
    height = 0.3 * dirt + 0.6 * np.sqrt(pebbles)
    return albedo, height, 0.9 - 0.2 * np.clip(pebbles * 4, 0, 1), np.zeros_like(d1), 20.0, ()


def _plaster(rng, s):
    base = _noise(rng, s, 2.6, 1)
    ridges = 1 - np.abs(_noise(rng, s, 2.0, 3) * 2 - 1)
    cracks = np.clip((ridges - 0.97) * 40, 0, 1)
    albedo = _colour(base.shape, _tint(rng, (0.82, 0.79, 0.72), 0.04)) * (0.88 + 0.12 * base - 0.4 * cracks)[..., None]
    height = 0.45 + 0.3 * base - 0.35 * cracks + 0.05 * _noise(rng, s, 1.0, 64)
    return albedo, height, 0.8 + 0.1 * base, np.zeros_like(base), 6.0, ()


def _marble(rng, s):
    u, v = _grid(s)
    turbulence = _noise(rng, s, 2.4, 1, 8)
    k = int(rng.integers(1, 4))
    veins = np.abs(np.sin(np.pi * (k * (u + v) + 4 * turbulence)))
    vein_mask = np.clip((0.15 - veins) * 12, 0, 1) * (0.6 + 0.4 * _noise(rng, s, 1.5, 4))
    base = _tint(rng, rng.choice([(0.9, 0.89, 0.86), (0.3, 0.32, 0.3), (0.85, 0.8, 0.72)]), 0.03)
    vein = _tint(rng, (0.35, 0.35, 0.38), 0.06)
    albedo = _mix(_colour(u.shape, base) * (0.92 + 0.08 * turbulence)[..., None], _colour(u.shape, vein), vein_mask)
    return albedo, 0.5 + 0.05 * turbulence - 0.05 * vein_mask, 0.08 + 0.1 * turbulence, np.zeros_like(u), 2.0, ()


def _ceramic(rng, s):
    n = int(rng.choice([2, 4, 8]))
    bevel, pid = _layout(rng, s, n, n, gap_px=s / 160, shift="none")
    glaze = _tint(rng, rng.choice([(0.85, 0.85, 0.82), (0.2, 0.4, 0.6), (0.6, 0.2, 0.2), (0.3, 0.55, 0.4)]), 0.04)
    variation = 0.9 + 0.15 * rng.random(pid.max() + 1)[pid]
    grout = (0.55, 0.53, 0.5)
    albedo = _mix(_colour(bevel.shape, grout), _colour(bevel.shape, glaze) * variation[..., None], bevel)
    return albedo, 0.25 + 0.6 * bevel, _mix(np.full_like(bevel, 0.85), np.full_like(bevel, 0.12), bevel), \
        np.zeros_like(bevel), 6.0, ()


def _concrete(rng, s):
    base = _noise(rng, s, 2.0, 2)
    fine = _noise(rng, s, 0.8, 32)
    d1, _, ids = _cells(rng, s, 300)
    pores = np.clip(1 - d1 / (s / 350), 0, 1) * (rng.random(ids.max() + 1)[ids] > 0.5)
    albedo = _colour(base.shape, _tint(rng, (0.55, 0.55, 0.53), 0.03)) * (0.8 + 0.2 * base + 0.1 * fine - 0.4 * pores)[..., None]
    height = 0.45 + 0.2 * base + 0.1 * fine - 0.35 * pores
    return albedo, height, 0.85 + 0.1 * fine, np.zeros_like(base), 8.0, ()


def _terracotta(rng, s):
    return (*_bricks(rng, s, (0.68, 0.36, 0.22), (0.6, 0.56, 0.5), [4, 6, 8]), ())


def _plastic(rng, s):
    base = _noise(rng, s, 3.0, 1)
    n = int(rng.choice([1, 2]))
    bevel, _ = _layout(rng, s, n, n, gap_px=s / 200, shift="none")
    colour = _tint(rng, rng.choice([(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.9, 0.9, 0.9), (0.1, 0.1, 0.1)]), 0.05)
    albedo = _colour(base.shape, colour) * (0.95 + 0.05 * base)[..., None]
    return albedo, 0.4 + 0.4 * bevel + 0.02 * base, 0.3 + 0.15 * base, np.zeros_like(base), 4.0, ()


_GENERATORS = {
    "ceramic": _ceramic, "concrete": _concrete, "fabric": _fabric, "ground": _ground, "leather": _leather,
    "marble": _marble, "metal": _metal, "plaster": _plaster, "plastic": _plastic, "stone": _stone,
    "terracotta": _terracotta, "wood": _wood,
}


def _misc(rng, s):
    """Two other materials under a blobby mask (e.g. wood with metal patches): a multi-label sample."""
    first, second = rng.choice(sorted(set(_GENERATORS) - {"misc"}), size=2, replace=False)
    a, b = _GENERATORS[first](rng, s), _GENERATORS[second](rng, s)
    mask = np.clip((_noise(rng, s, 2.5, 1, 6) - 0.5) * 12 + 0.5, 0, 1)
    albedo = _mix(a[0], b[0], mask)
    height = _mix(a[1], b[1], mask) + 0.1 * mask
    return albedo, height, _mix(a[2], b[2], mask), _mix(a[3], b[3], mask), (a[4] + b[4]) / 2, (first, second)


_GENERATORS["misc"] = _misc
assert set(_GENERATORS) == set(CATEGORIES)


def generate_material(seed: int, size: int = 512, category: str | None = None) -> Material:
    """A tileable PBR material; the same (seed, size, category) always gives the same maps.

    With category None the seed also picks the category (uniformly over the 13 classes).
    """
    rng = np.random.default_rng([int(seed), int(size)])
    if category is None:
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    if category not in _GENERATORS:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    albedo, height, roughness, metallic, depth_px, extra = _GENERATORS[category](rng, size)
    height = np.asarray(height, np.float32)
    lo, hi = float(height.min()), float(height.max())
    height = (0.1 + 0.8 * (height - lo) / max(hi - lo, 1e-6)).astype(np.float32)
    relief = depth_px * size / 1024.0
    labels = tuple(sorted({category, *extra}))
    return Material(
        name=f"{category}_{seed:06d}",
        category=category,
        labels=labels,
        albedo=np.clip(albedo, 0, 1).astype(np.float32),
        normal=normal_from_height(height, strength=relief),
        roughness=np.clip(roughness, 0.04, 1).astype(np.float32),
        metallic=np.clip(metallic, 0, 1).astype(np.float32),
        ao=ao_from_height(height, depth_px=depth_px),
        height=height,
        metadata={"license": "cc0", "tags": list(labels), "height_factor": depth_px, "method": "procedural",
                  "source": "pbr-forge synth", "seed": int(seed), "stationary": True},
    )


def render_old_diffuse(material: Material, rng: np.random.Generator, strength: float = 1.0,
                       bc1: bool | None = None) -> np.ndarray:
    """The fixed recipe of the procedural sets (trainer.data.degrade.render_old_game is the randomised
    family for real ground truth, built from the same steps).

    The diffuse an old game would ship for this material (HxWx3 sRGB): albedo with baked AO, a baked
    directional light from the normals, a specular sheen on glossy parts, a colour cast, and (when `bc1`,
    or at random when None) BC1 block artefacts. `strength` 0 returns the albedo unchanged."""
    albedo = srgb_to_linear(material.albedo)
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = rng.uniform(np.radians(35), np.radians(70))
    light = key_light(azimuth, elevation)
    shade = 1.0 + (lambert(material.normal, light) - 1.0) * 0.6 * strength
    occlusion = 1.0 + (material.ao - 1.0) * 0.8 * strength
    highlight = sheen(material.normal, light, material.roughness) * 0.35 * strength
    # Old metals were painted grey-ish: pull metallic areas towards their luminance.
    grey = albedo.mean(axis=-1, keepdims=True)
    albedo = _mix(albedo, grey * 0.8, material.metallic * 0.4 * strength)
    cast = 1.0 + rng.normal(0, 0.04, 3).astype(np.float32) * strength
    linear = albedo * (shade * occlusion)[..., None] * cast + highlight[..., None]
    diffuse = linear_to_srgb(np.clip(linear, 0, 1))
    if bc1 is None:
        bc1 = bool(rng.random() < 0.5)
    if bc1:
        diffuse = bc_roundtrip(diffuse, "bc1")
    return diffuse


def old_specular_mask(material: Material) -> np.ndarray:
    """What old games stored in the normal map's alpha: a rough gloss mask."""
    return np.clip((1.0 - material.roughness) * 0.8 + material.metallic * 0.2, 0, 1).astype(np.float32)


def generate_set(count: int, size: int = 512, seed: int = 0, diffuse_strength: float = 1.0):
    """`count` materials cycling through the 13 categories, each with its old-game diffuse rendered."""
    for i in range(count):
        material_seed = seed * 1_000_003 + i
        material = generate_material(material_seed, size, CATEGORIES[i % len(CATEGORIES)])
        rng = np.random.default_rng([material_seed, 7])
        material.diffuse = render_old_diffuse(material, rng, strength=diffuse_strength)
        material.specular = old_specular_mask(material)
        yield material


# ---------------------------------------------------------------- writers

MATSYNTH_IMAGE_COLUMNS = ("basecolor", "diffuse", "displacement", "height", "metallic", "normal", "opacity",
                          "roughness", "specular", "blend_mask")


def matsynth_schema():
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    metadata = pa.struct([
        ("authors", pa.list_(pa.string())), ("category", pa.string()), ("description", pa.string()),
        ("height_factor", pa.float32()), ("height_mean", pa.float32()), ("license", pa.string()),
        ("link", pa.string()), ("maps", pa.list_(pa.string())), ("method", pa.string()), ("name", pa.string()),
        ("physical_size", pa.float32()), ("source", pa.string()), ("stationary", pa.bool_()),
        ("tags", pa.list_(pa.string())),
    ])
    fields = [("name", pa.string()), ("category", pa.int64()), ("metadata", metadata)]
    fields += [(column, image) for column in MATSYNTH_IMAGE_COLUMNS]
    # The Hugging Face `datasets` feature description, so `datasets` decodes these columns as images.
    features = {"name": {"dtype": "string", "_type": "Value"},
                "category": {"names": list(CATEGORIES), "_type": "ClassLabel"},
                **{column: {"_type": "Image"} for column in MATSYNTH_IMAGE_COLUMNS}}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def matsynth_row(material: Material) -> dict:
    """One parquet row in MatSynth's schema. The `diffuse` column holds the old-game rendering (real
    MatSynth stores a clean diffuse map there); AO is not stored, as in MatSynth."""
    def image(array, column, bits=8):
        return {"bytes": encode_png(array, bits), "path": f"{material.name}/{column}.png"}

    meta = material.metadata
    return {
        "name": material.name,
        "category": CATEGORIES.index(material.category),
        "metadata": {
            "authors": ["pbr-forge"], "category": material.category, "description": "procedural material",
            "height_factor": float(meta.get("height_factor", 1.0)), "height_mean": float(material.height.mean()),
            "license": meta.get("license", "cc0"), "link": "", "maps": ["basecolor", "diffuse", "height",
                                                                        "metallic", "normal", "roughness"],
            "method": meta.get("method", "procedural"), "name": material.name, "physical_size": 1.0,
            "source": meta.get("source", ""), "stationary": True, "tags": list(meta.get("tags", material.labels)),
        },
        "basecolor": image(material.albedo, "basecolor"),
        "diffuse": image(material.diffuse, "diffuse") if material.diffuse is not None else None,
        "displacement": None,
        "height": image(material.height, "height", bits=16),
        "metallic": image(material.metallic, "metallic"),
        "normal": image(encode_normal(material.normal, directx=False), "normal"),
        "opacity": None,
        "roughness": image(material.roughness, "roughness"),
        "specular": None,
        "blend_mask": None,
    }


def write_matsynth_shards(materials, out_dir, rows_per_shard: int = 64, rows_per_group: int = 4,
                          split: str = "train") -> list[Path]:
    """Write `<out_dir>/data/<split>-NNNNN.parquet` shards (MatSynth's layout). Small row groups keep
    the reader's memory bounded: it decodes one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir = Path(out_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    schema = matsynth_schema()
    written, rows = [], []

    def flush():
        path = data_dir / f"{split}-{len(written):05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=rows_per_group)
        written.append(path)
        rows.clear()

    for material in materials:
        rows.append(matsynth_row(material))
        if len(rows) == rows_per_shard:
            flush()
    if rows:
        flush()
    return written




def write_skyrim_pair(material: Material, inputs_root, targets_root, relative_dir: str = "") -> Path:
    """Write one material as a Skyrim pair: vanilla inputs `<name>.dds` (BC1 diffuse) and `<name>_n.dds`
    (BC3, DirectX normal, specular in alpha) under `inputs_root`, and Community Shaders True PBR
    targets `<name>.png` (albedo), `<name>_rmaos.png`, `<name>_p.png` (16-bit height) and `<name>_n.png`
    (DirectX normal) under `targets_root`, at the same relative path. Returns the diffuse path.
    Targets are PNG so the ground truth carries no compression loss."""
    from PIL import Image

    if material.diffuse is None:
        raise ValueError("render the material's old diffuse first (render_old_diffuse / generate_set)")
    in_dir = Path(inputs_root) / relative_dir
    out_dir = Path(targets_root) / relative_dir
    in_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    def u8(array):
        return np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)

    diffuse_path = in_dir / f"{material.name}.dds"
    Image.fromarray(u8(material.diffuse)).save(diffuse_path, format="DDS", pixel_format="DXT1")
    specular = material.specular if material.specular is not None else old_specular_mask(material)
    normal_rgba = np.concatenate([encode_normal(material.normal, directx=True), specular[..., None]], axis=-1)
    Image.fromarray(u8(normal_rgba)).save(in_dir / f"{material.name}_n.dds", format="DDS", pixel_format="DXT5")

    (out_dir / f"{material.name}.png").write_bytes(encode_png(material.albedo))
    rmaos = pack_rmaos(material.roughness, material.metallic, material.ao)
    (out_dir / f"{material.name}_rmaos.png").write_bytes(encode_png(rmaos))
    (out_dir / f"{material.name}_p.png").write_bytes(encode_png(material.height, bits=16))
    (out_dir / f"{material.name}_n.png").write_bytes(encode_png(encode_normal(material.normal, directx=True)))
    return diffuse_path


def write_skyrim_set(materials, root, relative_dir: str = "textures/synth") -> Path:
    """`<root>/inputs/...` and `<root>/targets/...` (the layout preflight and SkyrimDataset read), with
    per-material class labels in `<root>/targets/labels.json` (relative stem -> class names)."""
    root = Path(root)
    labels_path = root / "targets" / LABELS_FILE
    labels = json.loads(labels_path.read_text()) if labels_path.exists() else {}
    for material in materials:
        rel_dir = f"{relative_dir}/{material.category}".strip("/")
        write_skyrim_pair(material, root / "inputs", root / "targets", rel_dir)
        labels[f"{rel_dir}/{material.name}"] = list(material.labels)
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    labels_path.write_text(json.dumps(labels, indent=1, sort_keys=True))
    return root


# ---------------------------------------------------------------- command line

def register_cli(subparsers) -> None:
    """`python -m trainer synth --out DIR --count N [--size S] [--seed K] [--format ...]`."""
    parser = subparsers.add_parser("synth", help="write procedural PBR materials (MatSynth shards, Skyrim pairs)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--count", required=True, type=int, help="number of materials")
    parser.add_argument("--size", type=int, default=512, help="texture size in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("matsynth", "skyrim", "both"), default="both")
    parser.set_defaults(func=run_cli)


def run_cli(args) -> int:
    if args.count < 1 or args.size < 16 or args.size % 4:
        raise SystemExit("--count must be at least 1 and --size a multiple of 4 of at least 16")
    materials = list(generate_set(args.count, args.size, args.seed))
    if args.format in ("matsynth", "both"):
        shards = write_matsynth_shards(materials, args.out / "matsynth")
        print(f"wrote {len(materials)} materials to {len(shards)} MatSynth shard(s) in {args.out / 'matsynth'}")
    if args.format in ("skyrim", "both"):
        write_skyrim_set(materials, args.out / "skyrim")
        print(f"wrote {len(materials)} Skyrim pairs to {args.out / 'skyrim'}")
    return 0
