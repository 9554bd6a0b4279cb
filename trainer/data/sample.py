"""The sample dict every dataset returns (docs/architecture.md) and the interface of a data source.

A *source* (MatSynthDataset, SkyrimDataset, or a Subset of one) is what trainer.data.mixing draws from:

    len(source)                                  number of materials
    source.load(index, rng, size, resolution)    one sample: scaled to `resolution`, cropped to size=(h, w),
                                                 never augmented
    source.material_key(index) -> str            stable material id (for hold-out splits)
    source.labels_of(index) -> tuple | None      class names when known without decoding images
    source.domain                                0 = MatSynth / procedural, 1 = Skyrim
    source.report                                its DataReport
"""
from __future__ import annotations

import numpy as np
import torch

from addon.engine.errors import PBRForgeError
from addon.engine.priors import height_prior, specular_input
from addon.engine.tiling import resize_wrap
from trainer.contract import DOMAINS, MAP_CHANNELS, VALID_TARGETS
from trainer.data.common import METALLIC_MASK_THRESHOLD, NUM_CLASSES, labels_vector, wrap_crop

class DataSourceError(PBRForgeError):
    """A training data folder or shard that cannot be used as given."""


DOMAIN_MATSYNTH = DOMAINS.index("matsynth")
DOMAIN_SKYRIM = DOMAINS.index("skyrim")
IMAGE_KEYS = ("diffuse", "normal", "specular", "height_prior", "albedo", "maps", "metallic_mask")


def _chw(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array, np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def texture_height_prior(normal: np.ndarray) -> np.ndarray:
    """The height prior of a whole texture (H, W, 3 OpenGL unit normals) at its own pixels, as
    conversion computes it: integrated over the whole texture (shrunk to PRIOR_MAX_SIDE), then
    resampled with wrap-around."""
    prior = height_prior(normal)
    return prior if prior.shape == normal.shape[:2] else resize_wrap(prior[..., None], *normal.shape[:2])[..., 0]


def cropped_height_prior(normal: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The crop (wrap-around) of the whole texture's height prior. A crop is not periodic: integrating
    it alone would bend its borders and drop its large-scale slope, errors that conversion, which
    integrates the whole texture, never shows."""
    return wrap_crop(texture_height_prior(normal), top, left, height, width)


def consistent_height(clean_normal: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The height target of a real material whose input normal is rendered from `clean_normal`, its
    whole clean normal map: that normal's integral, cropped (re-rendering consistency). A real height
    map is not always what its normal map was made from (scans, hand-painted relief); its part that
    the normal does not show is not in the inputs, and trained on it the height head learned to invent
    it from the diffuse and lost to plain integration on real held-out materials (docs/quality.md).
    What the inputs can tell is the clean normal's integral: the head learns to undo what old-game
    compression did to the normal. (Procedural normals are made from their heights, so MatSynth-role
    heights stay as stored.)"""
    return cropped_height_prior(clean_normal, top, left, height, width)


def make_sample(diffuse: np.ndarray, normal: np.ndarray, *, domain: int, specular: np.ndarray | None = None,
                albedo: np.ndarray | None = None, maps: dict[str, np.ndarray] | None = None,
                labels=None, prior: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Build a sample from HxW[xC] arrays. `specular` is the old normal map's alpha (None when it has
    none); the networks' specular input is derived here exactly as the add-on derives it
    (addon/engine/priors.py). `prior` is the height prior of the texture the sample was cropped from
    (cropped_height_prior); None treats the sample as a whole texture. Absent targets are zeros with
    valid = 0; the metallic mask is metallic > METALLIC_MASK_THRESHOLD and valid whenever metallic is."""
    h, w = diffuse.shape[:2]
    maps = maps or {}
    zeros = np.zeros((h, w), np.float32)
    valid = dict.fromkeys(VALID_TARGETS, 0.0)
    if albedo is not None:
        valid["albedo"] = 1.0
    for name in MAP_CHANNELS:
        if maps.get(name) is not None:
            valid[name] = 1.0
    metallic = maps.get("metallic")
    if metallic is not None:
        valid["metallic_mask"] = 1.0
    if labels is not None:
        valid["labels"] = 1.0
    label_vec = labels_vector(labels) if labels is not None else np.zeros(NUM_CLASSES, np.float32)
    return {
        "diffuse": _chw(diffuse),
        "normal": _chw(normal),
        "specular": _chw(specular_input(specular, h, w)),
        "height_prior": _chw(texture_height_prior(normal) if prior is None else prior),
        "albedo": _chw(albedo if albedo is not None else np.zeros((h, w, 3), np.float32)),
        "maps": _chw(np.stack([maps.get(n) if maps.get(n) is not None else zeros for n in MAP_CHANNELS], -1)),
        "metallic_mask": _chw((metallic > METALLIC_MASK_THRESHOLD).astype(np.float32)
                              if metallic is not None else zeros),
        "labels": torch.from_numpy(label_vec),
        "valid": torch.tensor([valid[k] for k in VALID_TARGETS], dtype=torch.float32),
        "domain": torch.tensor(domain, dtype=torch.long),
        "photometric": torch.tensor(0.0),
    }
