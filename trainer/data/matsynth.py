"""MatSynth reader: local parquet shards in the Hugging Face schema.

Per material it serves: input diffuse = MatSynth's `diffuse` (the `basecolor` when a row has none),
input normal (OpenGL, as MatSynth stores it), targets basecolor, roughness, metallic, AO (derived from
the height with common.ao_from_height: MatSynth has no AO), height (16-bit), a metallic mask
(metallic > 0.5) and multi-hot labels (the category plus any tag that names a class).

Sources of 4K are resized whole to the phase resolution with a wrap-safe resize, then cropped at a
random offset with wrap-around, so every crop is seamless. Only the index columns (name, category,
metadata) are read up front; image columns are read one row group at a time, so memory stays bounded
by one row group per worker.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from addon.engine.imageio import decode_image
from trainer import contract
from trainer.data.common import (
    AO_DEPTH_PX, DataReport, ao_from_height, as_gray, as_rgb, decode_normal, periodic_resize, wrap_crop,
)
from trainer.data.sample import DOMAIN_MATSYNTH, DataSourceError, cropped_height_prior, make_sample

DEFAULT_LICENSES = ("cc0",)
INDEX_COLUMNS = ("name", "category", "metadata")
IMAGE_COLUMNS = ("basecolor", "diffuse", "height", "metallic", "normal", "roughness")


@dataclass(frozen=True)
class _Entry:
    file: Path
    row_group: int
    row: int
    name: str
    labels: tuple[str, ...]


def _category_name(value) -> str | None:
    if isinstance(value, (int, np.integer)):
        return contract.MATERIAL_CLASSES[value] if 0 <= value < len(contract.MATERIAL_CLASSES) else None
    return str(value).strip().lower() if value is not None else None


def _metadata(value) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return {}
    return {}


def labels_for(category, metadata: dict) -> tuple[str, ...]:
    """The category plus every tag that is itself a class name (e.g. a 'misc' panel tagged 'metal')."""
    names = {_category_name(category)} | {str(t).strip().lower() for t in metadata.get("tags") or ()}
    return tuple(sorted(n for n in names if n in contract.MATERIAL_CLASSES))


def shard_files(paths) -> list[Path]:
    """Parquet files from files or folders (a MatSynth checkout has them under data/)."""
    files: list[Path] = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        path = Path(path)
        if path.is_dir():
            files.extend(sorted(path.rglob("*.parquet")))
        elif path.suffix == ".parquet" and path.is_file():
            files.append(path)
        else:
            raise DataSourceError(f"'{path}' is neither a folder of MatSynth .parquet shards nor a shard; "
                                  "point --matsynth at the dataset's folder.")
    if not files:
        raise DataSourceError(f"No .parquet shards found under {paths}; point --matsynth at the MatSynth folder.")
    return files


class MatSynthDataset:
    """Materials from local MatSynth-schema parquet shards (see module doc). A data source for mixing."""

    domain = DOMAIN_MATSYNTH

    def __init__(self, paths, *, resolution: int = 1024, licenses=DEFAULT_LICENSES, report: DataReport | None = None,
                 ao_depth_px: float = AO_DEPTH_PX):
        import pyarrow.parquet as pq

        self.resolution = int(resolution)
        self.licenses = tuple(l.lower() for l in licenses) if licenses else None
        self.report = report if report is not None else DataReport()
        self.ao_depth_px = ao_depth_px
        self.entries: list[_Entry] = []
        for file in shard_files(paths):
            try:
                parquet = pq.ParquetFile(file)
                missing = {"name", "category"} - set(parquet.schema_arrow.names)
                if missing:
                    self.report.skip(file, f"shard lacks the MatSynth columns {sorted(missing)}")
                    continue
                columns = [c for c in INDEX_COLUMNS if c in parquet.schema_arrow.names]
                for group in range(parquet.metadata.num_row_groups):
                    for row, record in enumerate(parquet.read_row_group(group, columns=columns).to_pylist()):
                        self._add(file, group, row, record)
            except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
                self.report.skip(file, f"unreadable parquet shard ({type(exc).__name__})")
        self._cache: tuple[Path, int, list[dict]] | None = None

    def _add(self, file, group, row, record):
        metadata = _metadata(record.get("metadata"))
        name = str(record.get("name") or f"{file.stem}:{group}:{row}")
        licence = str(metadata.get("license", "")).strip().lower()
        if self.licenses is not None and licence not in self.licenses:
            self.report.skip(f"{file}:{name}", f"licence '{licence or 'unknown'}' not in {list(self.licenses)}")
            return
        self.entries.append(_Entry(file, group, row, name, labels_for(record.get("category"), metadata)))

    def __len__(self) -> int:
        return len(self.entries)

    def material_key(self, index: int) -> str:
        return self.entries[index].name

    def labels_of(self, index: int) -> tuple[str, ...]:
        return self.entries[index].labels

    def _row(self, entry: _Entry) -> dict:
        import pyarrow.parquet as pq

        if self._cache is None or self._cache[:2] != (entry.file, entry.row_group):
            parquet = pq.ParquetFile(entry.file)
            columns = [c for c in IMAGE_COLUMNS if c in parquet.schema_arrow.names]
            self._cache = (entry.file, entry.row_group, parquet.read_row_group(entry.row_group, columns=columns)
                           .to_pylist())
        return self._cache[2][entry.row]

    def read_material(self, index: int) -> dict[str, np.ndarray]:
        """Full-resolution maps of one material: diffuse, albedo (HxWx3), normal (OpenGL), roughness,
        metallic, height (HxW). Raises ImageReadError/DataSourceError on a bad row."""
        entry = self.entries[index]
        row = self._row(entry)

        def image(column):
            cell = row.get(column)
            if not cell or not cell.get("bytes"):
                return None
            return decode_image(cell["bytes"], f"{entry.name}/{column}")

        albedo = image("basecolor")
        normal = image("normal")
        if albedo is None or normal is None:
            raise DataSourceError(f"{entry.name} has no {'basecolor' if albedo is None else 'normal'} map")
        diffuse = image("diffuse")
        maps = {"albedo": as_rgb(albedo), "diffuse": as_rgb(diffuse if diffuse is not None else albedo),
                "normal": decode_normal(as_rgb(normal), directx=False)}
        for column in ("roughness", "metallic", "height"):
            value = image(column)
            maps[column] = as_gray(value) if value is not None else None
        shape = maps["albedo"].shape[:2]
        for key, value in maps.items():
            if value is not None and value.shape[:2] != shape:
                raise DataSourceError(f"{entry.name}: {key} is {value.shape[1]}x{value.shape[0]}, "
                                      f"basecolor is {shape[1]}x{shape[0]}")
        return maps

    def load(self, index: int, rng: np.random.Generator, size: tuple[int, int], resolution: int | None = None) -> dict:
        """One sample: the material resized whole to `resolution` (default: the dataset's), then a
        wrap-around crop of `size` = (h, w)."""
        maps = self.read_material(index)
        r = int(resolution or self.resolution)
        top, left = int(rng.integers(r)), int(rng.integers(r))

        def fit(image):
            return wrap_crop(periodic_resize(image, r, r), top, left, *size)

        whole_normal = periodic_resize(maps["normal"], r, r)
        whole_normal /= np.linalg.norm(whole_normal, axis=-1, keepdims=True).clip(1e-6)
        height = fit(maps["height"]) if maps["height"] is not None else None
        # AO from the height at the phase resolution, before cropping, so that it wraps correctly.
        ao = (wrap_crop(ao_from_height(periodic_resize(maps["height"], r, r), self.ao_depth_px), top, left, *size)
              if maps["height"] is not None else None)
        sample_maps = {"roughness": fit(maps["roughness"]) if maps["roughness"] is not None else None,
                       "metallic": fit(maps["metallic"]) if maps["metallic"] is not None else None,
                       "ao": ao, "height": height}
        return make_sample(fit(maps["diffuse"]), wrap_crop(whole_normal, top, left, *size),
                           domain=self.domain, albedo=fit(maps["albedo"]), maps=sample_maps,
                           labels=self.entries[index].labels,
                           prior=cropped_height_prior(whole_normal, top, left, *size))
