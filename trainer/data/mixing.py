"""Phase data mixing: exact per-epoch source ratios, composites added alongside the originals, the
augmentation matrix, DDP sharding, exact resume and material hold-out splits.

An epoch is a list of *items* fixed by (seed, epoch) alone:
  * `samples_per_epoch` originals, split between sources by the phase mix with largest-remainder
    rounding (75/25 of 1000 is exactly 750/250). Each source is read as an endless stream of
    permutations of its materials, and epoch e takes the next slice of that stream, so consecutive
    epochs see every material before repeating one and each epoch is reshuffled;
  * round(rate × samples_per_epoch) 2-crop and 4-crop composites on top (plan: "add, do not
    replace"), each built from crops of one source, sources in the same mix;
  * all shuffled together, padded to a multiple of world_size and dealt to ranks round-robin.
Every item carries its own seed, so crops, augmentations and SkyrimPhotometric are the same whatever
the number of workers, and resuming at step k (skipping k × batch_size items) replays exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from addon.engine.errors import PBRForgeError
from trainer.data import augment
from trainer.data.common import DataReport
from trainer.data.sample import DOMAIN_SKYRIM, DataSourceError

# Share of Skyrim items that get SkyrimPhotometric, so each may appear pristine and distorted (plan).
PHOTOMETRIC_PROBABILITY = 0.5
# A bad file is replaced by another material of the same source; after this many in a row, stop.
MAX_REPLACEMENTS = 16
_LAYOUTS = {"2crop": ("horizontal", "vertical"), "4crop": ("grid",)}


@dataclass(frozen=True)
class Item:
    """One entry of an epoch: which materials, how to combine them, and the seed of its randomness."""

    source: str
    indices: tuple[int, ...]
    kind: str  # "single", "2crop" or "4crop"
    seed: int


def stable_int(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def exact_counts(mix: dict[str, float], total: int) -> dict[str, int]:
    """Split `total` by the mix ratios with largest-remainder rounding (the counts sum to `total`)."""
    weights = {k: float(v) for k, v in mix.items() if v > 0}
    norm = sum(weights.values())
    raw = {k: total * v / norm for k, v in weights.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def _stream_slice(eligible: np.ndarray, seed: int, source: str, start: int, count: int) -> np.ndarray:
    """Positions [start, start+count) of the endless stream of per-cycle permutations of `eligible`."""
    n = len(eligible)
    out = np.empty(count, np.int64)
    for i, position in enumerate(range(start, start + count)):
        cycle, offset = divmod(position, n)
        if i == 0 or offset == 0:
            perm = np.random.default_rng(stable_int(seed, source, cycle)).permutation(eligible)
        out[i] = perm[offset]
    return out


class MixSampler(Sampler):
    """Yields this rank's Items of one epoch (see module doc). `state_dict()` / `load_state_dict()`
    hold (seed, epoch, start); `start` counts items this rank already consumed."""

    def __init__(self, eligible: dict[str, np.ndarray], mix: dict[str, float], samples_per_epoch: int,
                 composite_2crop: float, composite_4crop: float, *, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1):
        self.eligible, self.mix = eligible, {k: v for k, v in mix.items() if v > 0}
        self.samples_per_epoch = int(samples_per_epoch)
        self.rates = {"2crop": float(composite_2crop), "4crop": float(composite_4crop)}
        self.seed, self.epoch, self.rank, self.world_size = int(seed), int(epoch), int(rank), int(world_size)
        self.start = 0
        self._items = self._build()

    def epoch_items(self) -> list[Item]:
        """Every rank's items of this epoch, shuffled (before padding and dealing)."""
        items = []
        for source, count in exact_counts(self.mix, self.samples_per_epoch).items():
            indices = _stream_slice(self.eligible[source], self.seed, source, self.epoch * count, count)
            items += [Item(source, (int(i),), "single", 0) for i in indices]
        for kind, rate in self.rates.items():
            total = int(round(rate * self.samples_per_epoch))
            parts = 2 if kind == "2crop" else 4
            rng = np.random.default_rng(stable_int(self.seed, self.epoch, kind))
            for source, count in exact_counts(self.mix, total).items():
                picks = rng.choice(self.eligible[source], size=(count, parts))
                items += [Item(source, tuple(int(i) for i in row), kind, 0) for row in picks]
        order = np.random.default_rng(stable_int(self.seed, self.epoch, "shuffle")).permutation(len(items))
        return [dataclasses.replace(items[i], seed=stable_int(self.seed, self.epoch, position))
                for position, i in enumerate(order)]

    def _build(self) -> list[Item]:
        items = self.epoch_items()
        padded = items + items[: (-len(items)) % self.world_size]  # every rank gets as many items
        return padded[self.rank::self.world_size]

    def __iter__(self):
        return iter(self._items[self.start:])

    def __len__(self) -> int:
        return len(self._items) - self.start

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["epoch"]) != (self.seed, self.epoch):
            raise ValueError("the sampler state is for another seed or epoch; build the loader for that epoch")
        self.start = int(state["start"])


class Subset:
    """Some materials of a source, with the source interface (trainer.data.sample)."""

    def __init__(self, source, indices):
        self.source, self.indices = source, [int(i) for i in indices]
        self.domain, self.report = source.domain, source.report

    def __len__(self):
        return len(self.indices)

    def load(self, index, rng, size, resolution=None):
        return self.source.load(self.indices[index], rng, size, resolution)

    def material_key(self, index):
        return self.source.material_key(self.indices[index])

    def labels_of(self, index):
        return self.source.labels_of(self.indices[index])


class Concat:
    """Several sources of one domain read as one (e.g. MatSynth shards and a material library)."""

    def __init__(self, sources):
        self.sources = list(sources)
        self.domain, self.report = self.sources[0].domain, self.sources[0].report
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self):
        return int(self._offsets[-1])

    def _locate(self, index):
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.sources[part], int(index - self._offsets[part])

    def load(self, index, rng, size, resolution=None):
        source, local = self._locate(index)
        return source.load(local, rng, size, resolution)

    def material_key(self, index):
        source, local = self._locate(index)
        return source.material_key(local)

    def labels_of(self, index):
        source, local = self._locate(index)
        return source.labels_of(local)


def split_holdout(dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """(train, validation) split BY MATERIAL: every index of a material lands on the same side, so
    validation materials are never trained on. The split depends only on the material keys and the
    seed, and takes round(fraction × materials) materials (at least one when fraction > 0 and there
    are two or more)."""
    keys = sorted({dataset.material_key(i) for i in range(len(dataset))}, key=lambda k: (stable_int(seed, k), k))
    n_val = int(round(fraction * len(keys)))
    if fraction > 0 and len(keys) > 1:
        n_val = min(max(n_val, 1), len(keys) - 1)
    val_keys = set(keys[:n_val])
    val = [i for i in range(len(dataset)) if dataset.material_key(i) in val_keys]
    train = [i for i in range(len(dataset)) if dataset.material_key(i) not in val_keys]
    return Subset(dataset, train), Subset(dataset, val)


class MixedDataset(torch.utils.data.Dataset):
    """Turns sampler Items into sample dicts: crops, composites, augmentations, SkyrimPhotometric."""

    def __init__(self, sources: dict, eligible: dict[str, np.ndarray], *, resolution: int, crop_size: int,
                 augment_on: bool, photometric_strength: float, report: DataReport,
                 photometric_probability: float = PHOTOMETRIC_PROBABILITY):
        self.sources, self.eligible = sources, eligible
        self.resolution, self.crop_size = int(resolution), int(crop_size)
        self.augment_on = augment_on
        self.photometric = augment.SkyrimPhotometric(photometric_strength)
        self.photometric_probability = photometric_probability
        self.report = report

    def __len__(self):  # not used by the sampler-driven DataLoader; the size of one "epoch" of sources
        return sum(len(s) for s in self.sources.values())

    def _load(self, source: str, index: int, rng, size) -> dict:
        dataset = self.sources[source]
        for _ in range(MAX_REPLACEMENTS):
            try:
                sample = dataset.load(index, rng, size, self.resolution)
                self.report.ok(source)
                return sample
            except (PBRForgeError, OSError) as exc:
                self.report.skip(f"{source}:{dataset.material_key(index)}", _reason(exc))
                index = int(rng.choice(self.eligible[source]))
        raise DataSourceError(f"{MAX_REPLACEMENTS} {source} files in a row could not be read; run "
                              "`python -m trainer preflight` on the data (the log's 'skipped' warnings name them).")

    def __getitem__(self, item: Item) -> dict:
        rng = np.random.default_rng(item.seed)
        canvas = self.crop_size
        if item.kind == "single":
            sample = self._load(item.source, item.indices[0], rng, (canvas, canvas))
        else:
            layouts = _LAYOUTS[item.kind]
            layout = layouts[int(rng.integers(len(layouts)))]
            size = augment.composite_part_size(item.kind, layout, canvas)
            sample = augment.composite([self._load(item.source, i, rng, size) for i in item.indices], layout)
        if self.augment_on:
            sample = augment.colour_jitter(augment.random_flip_rotate(sample, rng), rng)
        if int(sample["domain"]) == DOMAIN_SKYRIM and rng.random() < self.photometric_probability:
            sample = self.photometric(sample, rng)
        return sample


def _reason(exc: Exception) -> str:
    """The exception's sentence without its leading file name, so equal problems count together."""
    text = str(exc)
    return text.split("': ", 1)[-1] if text.startswith("Cannot read '") else text


def _config(data_cfg) -> dict:
    return dataclasses.asdict(data_cfg) if dataclasses.is_dataclass(data_cfg) else dict(data_cfg)


def eligible_indices(source, material_filter=()) -> np.ndarray:
    """Indices of a source's materials; with a filter, only those labelled with one of its classes."""
    if not material_filter:
        return np.arange(len(source))
    wanted = set(material_filter)
    keep = [i for i in range(len(source)) if wanted & set(source.labels_of(i) or ())]
    return np.asarray(keep, np.int64)


def build_loader(data_cfg, sources: dict, *, batch_size: int, epoch: int, seed: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, report: DataReport | None = None,
                 start_step: int = 0) -> DataLoader:
    """The DataLoader of one epoch of a phase.

    data_cfg (dict or trainer.plan.DataSpec): mix {source: share}, resolution, augment,
    composite_2crop, composite_4crop, photometric_strength, optional material_filter (class names),
    crop_size (default: resolution; see augment.compute_crop_size), samples_per_epoch (default: the
    materials of the mixed sources). `start_step` resumes mid-epoch after that many batches.
    The sampler is `loader.sampler` (a MixSampler) and the report `loader.dataset.report`.
    """
    cfg = _config(data_cfg)
    mix = {k: float(v) for k, v in cfg["mix"].items() if float(v) > 0}
    missing = [k for k in mix if k not in sources]
    if missing:
        raise DataSourceError(f"The phase mixes {', '.join(missing)} but no such data was given; pass its folder.")
    eligible = {k: eligible_indices(sources[k], cfg.get("material_filter") or ()) for k in mix}
    for name, indices in eligible.items():
        if len(indices) == 0:
            wanted = cfg.get("material_filter")
            raise DataSourceError(f"The {name} data has no usable materials" +
                                  (f" labelled {', '.join(wanted)}" if wanted else "") + "; check its folder.")
    samples = int(cfg.get("samples_per_epoch") or sum(len(v) for v in eligible.values()))
    resolution = int(cfg["resolution"])
    crop = int(cfg.get("crop_size") or resolution)
    sampler = MixSampler(eligible, mix, samples, cfg.get("composite_2crop", 0.0), cfg.get("composite_4crop", 0.0),
                         seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    sampler.start = int(start_step) * int(batch_size)
    dataset = MixedDataset({k: sources[k] for k in mix}, eligible, resolution=resolution, crop_size=crop,
                           augment_on=bool(cfg.get("augment", False)),
                           photometric_strength=float(cfg.get("photometric_strength", 0.0)),
                           report=report if report is not None else DataReport(),
                           photometric_probability=float(cfg.get("photometric_probability", PHOTOMETRIC_PROBABILITY)))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


def build_eval_loader(source, name: str, *, resolution: int, batch_size: int, seed: int = 0,
                      num_workers: int = 0, report: DataReport | None = None) -> DataLoader:
    """Every material of `source` once, unaugmented, with crops fixed by the seed (validation)."""
    cfg = {"mix": {name: 1.0}, "resolution": resolution, "augment": False, "composite_2crop": 0.0,
           "composite_4crop": 0.0, "photometric_strength": 0.0, "samples_per_epoch": len(source)}
    return build_loader(cfg, {name: source}, batch_size=batch_size, epoch=0, seed=seed, num_workers=num_workers,
                        report=report)
