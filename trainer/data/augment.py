"""The plan's augmentation matrix, on sample dicts of CHW tensors (trainer.data.sample).

| phase  | spatial (all targets alike)                      | photometric (diffuse input only)       |
|--------|--------------------------------------------------|----------------------------------------|
| A0     | none                                             | none                                   |
| A      | flips, 90° rotations, colour jitter, composites   | none                                   |
|        | 2-crop 30 %, 4-crop 15 % (added to originals)    |                                        |
| B      | as A                                             | SkyrimPhotometric on Skyrim samples    |
| C / C′ | as A, composites 20 % / 10 %                      | as B                                   |
| D      | none (full 2K)                                   | SkyrimPhotometric at strength 0.5      |

Ground truth is never photometrically altered: colour jitter and SkyrimPhotometric touch `diffuse` only.
Flips and rotations move every image alike and turn the normal VECTORS with them.
"""
from __future__ import annotations

import numpy as np
import torch

from trainer.data.sample import IMAGE_KEYS

# Curriculum crops across B -> C (plan): mostly single-material patches first, mixed context later.
CROP_START, CROP_END, CROP_MULTIPLE = 256, 768, 32


def compute_crop_size(progress: float, start: int = CROP_START, end: int = CROP_END,
                      multiple: int = CROP_MULTIPLE) -> int:
    """Crop size for a point of the B -> C curriculum (progress 0 = start of B, 1 = end of C), linear,
    rounded to the UNet's multiple of 32."""
    progress = min(max(float(progress), 0.0), 1.0)
    return int(round((start + (end - start) * progress) / multiple) * multiple)


# ---------------------------------------------------------------- spatial

def flip_rotate(sample: dict, quarter_turns: int, mirror: bool) -> dict:
    """Mirror left-right (when `mirror`), then rotate counter-clockwise by 90° × quarter_turns, as seen
    on screen (row 0 at the top). The normal's XY rotate with the image: OpenGL +X right, +Y up."""
    out = dict(sample)
    for key in IMAGE_KEYS:
        image = sample[key]
        if mirror:
            image = image.flip(-1)
        out[key] = torch.rot90(image, quarter_turns % 4, dims=(-2, -1))
    n = out["normal"].clone()
    x, y = n[0].clone(), n[1].clone()
    if mirror:
        x = -x
    for _ in range(quarter_turns % 4):  # (x, y) -> (-y, x): +X (right) turns to +Y (up)
        x, y = -y, x
    n[0], n[1] = x, y
    out["normal"] = n
    return out


def random_flip_rotate(sample: dict, rng: np.random.Generator) -> dict:
    return flip_rotate(sample, int(rng.integers(4)), bool(rng.integers(2)))


def colour_jitter(sample: dict, rng: np.random.Generator, brightness=0.1, contrast=0.1, saturation=0.1,
                  hue_shift=0.02) -> dict:
    """Brightness, contrast, saturation and a small per-channel hue cast on the diffuse input only."""
    out = dict(sample)
    d = sample["diffuse"]
    d = d * (1 + rng.uniform(-brightness, brightness))
    mean = d.mean()
    d = (d - mean) * (1 + rng.uniform(-contrast, contrast)) + mean
    grey = d.mean(dim=0, keepdim=True)
    d = (d - grey) * (1 + rng.uniform(-saturation, saturation)) + grey
    d = d * torch.tensor(1 + rng.uniform(-hue_shift, hue_shift, 3), dtype=d.dtype)[:, None, None]
    out["diffuse"] = d.clamp(0, 1)
    return out


def composite(parts: list[dict], layout: str) -> dict:
    """Tile crops into one canvas: "horizontal" (2 side by side), "vertical" (2 stacked) or "grid"
    (2x2 in reading order). Labels are the union of the parts; a target is valid only where every
    part has it."""
    if layout == "horizontal":
        join = lambda xs: torch.cat(xs, dim=-1)  # noqa: E731
    elif layout == "vertical":
        join = lambda xs: torch.cat(xs, dim=-2)  # noqa: E731
    elif layout == "grid":
        join = lambda xs: torch.cat([torch.cat(xs[:2], -1), torch.cat(xs[2:], -1)], -2)  # noqa: E731
    else:
        raise ValueError(f"unknown composite layout {layout!r}")
    out = {key: join([p[key] for p in parts]) for key in IMAGE_KEYS}
    out["labels"] = torch.stack([p["labels"] for p in parts]).amax(0)
    out["valid"] = torch.stack([p["valid"] for p in parts]).amin(0)
    out["domain"] = parts[0]["domain"]
    out["photometric"] = torch.stack([p["photometric"] for p in parts]).amax(0)
    return out


def composite_part_size(kind: str, layout: str, canvas: int) -> tuple[int, int]:
    """Size (h, w) of each crop of a composite on a canvas of `canvas` px (2-crop halves, 4-crop quarters)."""
    half = canvas // 2
    if kind == "2crop":
        return (canvas, half) if layout == "horizontal" else (half, canvas)
    return half, half


# ---------------------------------------------------------------- Skyrim photometric

class SkyrimPhotometric:
    """Mimic Skyrim's baked lighting on a diffuse input: a warm-dark ambient-occlusion tint in the
    crevices (read from the input normal's slope), a colder white balance and a light vignette.
    Applied to Skyrim samples only, after mixing; never to targets. `strength` 1 in B/C, 0.5 in D."""

    def __init__(self, strength: float = 1.0, ao_tint=0.25, cold_shift=0.06, vignette=0.25):
        self.strength = float(strength)
        self.ao_tint, self.cold_shift, self.vignette = ao_tint, cold_shift, vignette

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if self.strength <= 0:
            return sample
        s = self.strength * rng.uniform(0.5, 1.0)
        out = dict(sample)
        d = sample["diffuse"]
        # Crevices tilt the normal away from +Z: darken them towards a brown tint.
        cavity = (1 - sample["normal"][2].clamp(0, 1)).clamp(0, 1) ** 0.5
        tint = torch.tensor([1.0, 0.85, 0.7], dtype=d.dtype)[:, None, None]
        d = d * (1 - self.ao_tint * s * cavity * (2 - tint))
        cold = self.cold_shift * s
        d = d * torch.tensor([1 - cold, 1.0, 1 + cold], dtype=d.dtype)[:, None, None]
        h, w = d.shape[-2:]
        ys = torch.linspace(-1, 1, h)[:, None]
        xs = torch.linspace(-1, 1, w)[None, :]
        d = d * (1 - self.vignette * s * (xs ** 2 + ys ** 2) / 2)
        out["diffuse"] = d.clamp(0, 1)
        out["photometric"] = torch.tensor(1.0)
        return out
