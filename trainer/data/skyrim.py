"""Skyrim SE paired reader: vanilla inputs (diffuse + `_n` DirectX normal) and, when given, Community
Shaders True PBR targets at the same relative path (`<name>` albedo, `<name>_rmaos`, `<name>_p`).

Pairing and suffix rules come from addon.engine.naming (the add-on's own rules); pixels come from
addon.engine.imageio. Normals are flipped from DirectX to OpenGL on load; the normal's alpha (the old
specular mask) is kept as `specular` in read_material. Without targets a material is an unlabeled
sample (every `valid` flag 0). Layout and the pre-flight marker file are described in docs/data.md.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from addon.engine import naming
from addon.engine.imageio import read_image
from addon.engine.truepbr import unpack_rmaos
from trainer.contract import MAP_CHANNELS
from trainer.data.common import (
    DataReport, as_gray, as_rgb, decode_normal, periodic_resize, wrap_crop,
)
from trainer.data.sample import DOMAIN_SKYRIM, DataSourceError, cropped_height_prior, make_sample

PREFLIGHT_FILE = "preflight.json"
DUPLICATES_DIR = "duplicates"
BACKUP_DIR = "preflight_backup"
LABELS_FILE = "labels.json"
# Folders pre-flight manages inside a data root: never read as ordinary inputs.
_MANAGED_DIRS = {DUPLICATES_DIR, BACKUP_DIR}


@dataclass(frozen=True)
class SkyrimPair:
    key: str                      # relative stem of the diffuse, posix, e.g. textures/x/wood01
    diffuse: Path
    normal: Path
    albedo: Path | None = None
    rmaos: Path | None = None
    height: Path | None = None
    identity: bool = False        # a pre-flight duplicate: trains albedo as identity only
    unsupervised: bool = False    # genuine no-diffuse material: no albedo target


def _find_target(folder: Path, base: str, suffix: str) -> Path | None:
    for ext in naming.TEXTURE_EXTENSIONS:
        for name in (f"{base}{suffix}{ext}", f"{base}{suffix}{ext.upper()}"):
            if (folder / name).is_file():
                return folder / name
    return None


def find_pairs(inputs_root, targets_root=None, report: DataReport | None = None) -> list[SkyrimPair]:
    """Every diffuse under `inputs_root` with its `_n` normal and, under `targets_root`, its True PBR
    targets at the same relative folder. Diffuses without a normal are skipped and reported."""
    inputs_root = Path(inputs_root)
    report = report if report is not None else DataReport()
    pairs = []
    for path, key in naming.diffuses_under(inputs_root):
        relative = path.relative_to(inputs_root)
        if relative.parts[0] in _MANAGED_DIRS:
            continue
        normal = naming.find_normal_for(path)
        if normal is None:
            report.skip(path, "no _n normal map beside the diffuse")
            continue
        base, _ = naming.split_suffix(path.stem)
        targets = {}
        if targets_root is not None:
            folder = Path(targets_root) / relative.parent
            targets = {role: _find_target(folder, base, naming.TRUEPBR_SUFFIXES[role])
                       for role in ("albedo", "rmaos", "height")}
        pairs.append(SkyrimPair(key, path, normal, **targets))
    return pairs


class SkyrimDataset:
    """Skyrim pairs as a data source for mixing (trainer.data.sample documents the interface).

    `missing_targets`: "unlabeled" keeps a pair without targets as an unlabeled sample, "skip" drops it
    (the default when a targets root is given: a paired set with holes is usually a conversion slip).
    """

    domain = DOMAIN_SKYRIM

    def __init__(self, inputs_root, targets_root=None, *, resolution: int = 1024, report: DataReport | None = None,
                 missing_targets: str | None = None, use_duplicates: bool = False, preflight_file=None):
        self.resolution = int(resolution)
        self.report = report if report is not None else DataReport()
        if not Path(inputs_root).is_dir():
            raise DataSourceError(f"The Skyrim inputs folder '{inputs_root}' does not exist; check --skyrim.")
        missing_targets = missing_targets or ("skip" if targets_root is not None else "unlabeled")
        marker = json.loads(Path(preflight_file).read_text()) if preflight_file and Path(preflight_file).is_file() else {}
        excluded = set(marker.get("excluded", ()))
        unsupervised = set(marker.get("unsupervised", ()))
        labels_path = Path(targets_root) / LABELS_FILE if targets_root is not None else None
        self.labels = json.loads(labels_path.read_text()) if labels_path and labels_path.is_file() else {}
        self.pairs: list[SkyrimPair] = []
        for pair in find_pairs(inputs_root, targets_root, self.report):
            if pair.key in excluded:
                self.report.skip(pair.diffuse, "excluded by pre-flight (black diffuse that cannot be fixed)")
                continue
            if targets_root is not None and pair.albedo is None:
                if missing_targets == "skip":
                    self.report.skip(pair.diffuse, "no True PBR albedo target at the same relative path")
                    continue
            if pair.key in unsupervised:
                pair = SkyrimPair(**{**pair.__dict__, "unsupervised": True})
            self.pairs.append(pair)
        if use_duplicates and preflight_file:
            root = Path(preflight_file).parent / DUPLICATES_DIR
            for pair in find_pairs(root / "inputs", None, self.report) if (root / "inputs").is_dir() else ():
                self.pairs.append(SkyrimPair(pair.key, pair.diffuse, pair.normal, identity=True))

    @classmethod
    def from_root(cls, root, **kwargs) -> "SkyrimDataset":
        """The pre-flight layout: `<root>/inputs`, optional `<root>/targets`, `<root>/preflight.json`."""
        root = Path(root)
        targets = root / "targets"
        return cls(root / "inputs", targets if targets.is_dir() else None, preflight_file=root / PREFLIGHT_FILE,
                   **kwargs)

    def __len__(self) -> int:
        return len(self.pairs)

    def material_key(self, index: int) -> str:
        return self.pairs[index].key

    def labels_of(self, index: int) -> tuple[str, ...] | None:
        labels = self.labels.get(self.pairs[index].key)
        return tuple(labels) if labels is not None else None

    def read_material(self, index: int) -> dict[str, np.ndarray | None]:
        """Full-resolution arrays: diffuse, normal (OpenGL), specular (normal alpha or None), albedo,
        roughness, metallic, ao, height (None when absent). Targets of another size are resized to the
        diffuse's when the aspect ratio matches; otherwise DataSourceError."""
        pair = self.pairs[index]
        diffuse = as_rgb(read_image(pair.diffuse))
        normal_rgba = read_image(pair.normal)
        out = {"diffuse": diffuse, "specular": normal_rgba[..., 3] if normal_rgba.shape[-1] == 4 else None,
               "normal": as_rgb(normal_rgba), "albedo": None, "roughness": None, "metallic": None, "ao": None,
               "height": None}
        if pair.identity:
            out["albedo"] = diffuse
        else:
            if pair.albedo is not None and not pair.unsupervised:
                out["albedo"] = as_rgb(read_image(pair.albedo))
            if pair.rmaos is not None:
                rmaos = read_image(pair.rmaos)
                if rmaos.ndim == 2 or rmaos.shape[-1] < 3:
                    raise DataSourceError(f"{pair.rmaos.name} has {rmaos.shape[-1]} channel(s); _rmaos needs RGB(A)")
                out.update({k: v for k, v in unpack_rmaos(rmaos).items() if k != "specular"})
            if pair.height is not None:
                out["height"] = as_gray(read_image(pair.height))
        h, w = diffuse.shape[:2]
        for key, value in out.items():
            if value is None or value.shape[:2] == (h, w):
                continue
            if abs(value.shape[1] / value.shape[0] - w / h) > 1e-3:
                raise DataSourceError(f"{pair.key}: {key} is {value.shape[1]}x{value.shape[0]} but the diffuse is "
                                      f"{w}x{h}; the aspect ratios differ")
            out[key] = periodic_resize(value, h, w)
        out["normal"] = decode_normal(out["normal"], directx=True)
        return out

    def load(self, index: int, rng: np.random.Generator, size: tuple[int, int], resolution: int | None = None) -> dict:
        """One sample: the texture scaled so its shorter side is `resolution` (default: the dataset's),
        then a wrap-around crop of `size` = (h, w) (Skyrim textures tile, as the engine's wrap-padded
        conversion assumes)."""
        m = self.read_material(index)
        h, w = m["diffuse"].shape[:2]
        scale = int(resolution or self.resolution) / min(h, w)
        rh, rw = max(round(h * scale), size[0]), max(round(w * scale), size[1])
        top, left = int(rng.integers(rh)), int(rng.integers(rw))

        def fit(image):
            return None if image is None else wrap_crop(periodic_resize(image, rh, rw), top, left, *size)

        whole_normal = periodic_resize(m["normal"], rh, rw)
        whole_normal /= np.linalg.norm(whole_normal, axis=-1, keepdims=True).clip(1e-6)
        pair = self.pairs[index]
        maps = {k: fit(m[k]) for k in MAP_CHANNELS}
        return make_sample(fit(m["diffuse"]), wrap_crop(whole_normal, top, left, *size), domain=self.domain,
                           specular=fit(m["specular"]), albedo=fit(m["albedo"]), maps=maps,
                           labels=None if pair.identity else self.labels_of(index),
                           prior=cropped_height_prior(whole_normal, top, left, *size))
