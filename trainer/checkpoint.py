"""Checkpoints: safetensors weights + a tensor-only state file + a JSON meta, written atomically.

Layout of one job's folder (RUNDIR/<phase>/<job>/):

    checkpoints/step-000120-1a2b3c/   weights.safetensors   every model's state_dict, "<model>.<name>" keys
                                      state.pt               optimiser, scheduler, RNG tensors
                                                             (read back with torch.load(weights_only=True))
                                      meta.json              run config, models config, LoRA rank,
                                                             phase/job/epoch/step, histories, sampler state
    start.json, last.json, best.json  pointers {"dir": "checkpoints/..."} replaced with os.replace

A checkpoint folder is complete before its name appears (written under a temporary name, then
renamed) and a pointer moves only after that, so a kill at any moment leaves the previous
checkpoint intact. Folders no pointer names are pruned. Nothing here unpickles arbitrary objects.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file

from addon.engine.errors import PBRForgeError
from addon.engine.imageio import write_atomically

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
META = "meta.json"
FORMAT_VERSION = 1
# "start": the weights a job began from (kept to merge independent jobs); "last"; "best".
POINTERS = ("start", "last", "best")
# An exported models folder keeps the trainable checkpoint of its ONNX set here.
TRAINABLE_DIR = "trainable"


class CheckpointError(PBRForgeError):
    """A checkpoint or run folder that is missing or unreadable."""


def write_json_atomic(path: Path, data) -> None:
    """`data` as indented JSON, through the engine's one atomic writer (temporary file, fsync, rename)."""
    write_atomically(Path(path), json.dumps(data, indent=2).encode("utf-8"))


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); point at an intact run folder.") from exc


def model_state(models: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights with "<model>.<parameter>" keys, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in models.state_dict().items()}


@dataclass
class Checkpoint:
    path: Path

    @property
    def meta(self) -> dict:
        return read_json(self.path / META)

    def weights(self) -> dict[str, torch.Tensor]:
        return load_file(self.path / WEIGHTS)

    def state(self, map_location="cpu") -> dict:
        return torch.load(self.path / STATE, map_location=map_location, weights_only=True)


@dataclass
class PartlyNew(Checkpoint):
    """A checkpoint whose parameters in `new` (a freshly built model's) replace its own: --reset."""
    new: dict = field(default_factory=dict)

    def weights(self) -> dict[str, torch.Tensor]:
        return {**super().weights(), **self.new}


def with_new_parts(checkpoint: Checkpoint, models: torch.nn.Module, prefixes) -> PartlyNew:
    """`checkpoint` with the parameters named by `prefixes` (a whole name or a dotted prefix) taken
    from `models`, new models built from the plan's seed."""
    def named(key: str, prefix: str) -> bool:
        return key == prefix or key.startswith(prefix.rstrip(".") + ".")
    new = {k: v for k, v in model_state(models).items() if any(named(k, p) for p in prefixes)}
    for prefix in prefixes:
        if not any(named(k, prefix) for k in new):
            raise CheckpointError(f"--reset {prefix}: the models have no parameter named so (e.g. maps.heads.height)")
    return PartlyNew(checkpoint.path, new)


def save_checkpoint(job_dir: Path, pointers: tuple[str, ...], weights: dict[str, torch.Tensor],
                    meta: dict, state: dict) -> Checkpoint:
    """Write one checkpoint and point `pointers` (e.g. ("last",) or ("last", "best")) at it."""
    job_dir = Path(job_dir)
    folder = job_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{meta.get('global_step', 0):08d}-{uuid.uuid4().hex[:6]}"
    tmp = folder / f".{name}.tmp"
    tmp.mkdir()
    save_file(weights, str(tmp / WEIGHTS))
    torch.save(state, tmp / STATE)
    with open(tmp / META, "w", encoding="utf-8") as f:
        json.dump(dict(meta, format_version=FORMAT_VERSION), f, indent=2)
    for file in tmp.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(tmp, folder / name)
    for pointer in pointers:
        write_json_atomic(job_dir / f"{pointer}.json", {"dir": f"checkpoints/{name}"})
    _prune(job_dir)
    return Checkpoint(folder / name)


def _prune(job_dir: Path) -> None:
    keep = set()
    for pointer in job_dir.glob("*.json"):
        target = read_json(pointer).get("dir") if pointer.stem in POINTERS else None
        if target:
            keep.add(Path(target).name)
    for entry in (job_dir / "checkpoints").iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


def find_checkpoint(job_dir: Path, pointer: str) -> Checkpoint | None:
    """The checkpoint `pointer` ("last" or "best") names in job_dir, or None when there is none yet."""
    file = Path(job_dir) / f"{pointer}.json"
    if not file.is_file():
        return None
    path = Path(job_dir) / read_json(file)["dir"]
    if not (path / META).is_file():
        raise CheckpointError(f"The checkpoint {path} named by {file} is missing; the run folder was altered.")
    return Checkpoint(path)


def rng_state() -> dict:
    """Every RNG the loop touches, as tensors (weights_only-safe)."""
    import random

    import numpy as np
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype("int64")),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    torch.set_rng_state(state["torch"])
    pos, has_gauss = (int(v) for v in state["numpy_pos"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype("uint32"), pos, has_gauss,
                         float(state["numpy_gauss"][0])))
    random.setstate((3, tuple(int(v) for v in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def build_models(models_config: dict, lora_rank: int):
    """Empty models of the saved architecture (LoRA adapters included when the run had added them)."""
    from trainer.models import ModelsConfig, add_lora, create_models
    models = create_models(ModelsConfig(**models_config))
    if lora_rank:
        add_lora(models, rank=lora_rank)
    return models


def write_trainable(ckpt: Checkpoint, models_dir: Path) -> Path:
    """Save a checkpoint's weights (floating-point tensors in half precision) and meta (models config,
    LoRA rank, run config) beside an exported ONNX set as `<models_dir>/trainable/`, so training can
    continue from the shipped models (`python -m trainer run --init-from models/`).

    Half precision halves what the repository carries (the whole tree must stay small enough to travel
    to a GPU machine); loading casts back to float32, and fine-tuning does not need the last bits."""
    out = Path(models_dir) / TRAINABLE_DIR
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in ckpt.weights().items()}
    write_atomically(out / WEIGHTS, save(weights))
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("sampler", "histories")}
    write_json_atomic(out / META, meta)
    return out


def resolve_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint from a run folder (its final assembled models, else its latest finished phase),
    a job folder (its best, else last checkpoint), a checkpoint folder, its weights file, or an
    exported models folder that carries its trainable checkpoint (`trainable/`)."""
    path = Path(path)
    if path.is_file() and path.name == WEIGHTS:
        path = path.parent
    if (path / META).is_file():
        return Checkpoint(path)
    if (path / TRAINABLE_DIR / META).is_file():
        return Checkpoint(path / TRAINABLE_DIR)
    if (path / "final" / META).is_file():
        return Checkpoint(path / "final")
    for pointer in ("best", "last"):
        found = find_checkpoint(path, pointer) if path.is_dir() else None
        if found:
            return found
    state_file = path / "run_state.json"
    if state_file.is_file():
        done = [job for job in read_json(state_file).get("jobs", {}).values() if job.get("status") == "done"]
        best = find_checkpoint(path / done[-1]["dir"], "best") if done else None
        if best:
            return best
    raise CheckpointError(f"No checkpoint found at {path}; pass a run folder (--out of `python -m trainer run`), "
                          f"a phase/job folder, a checkpoint folder or a models folder with {TRAINABLE_DIR}/.")


def load_models(run_dir_or_ckpt: str | Path, map_location="cpu"):
    """(models, run_config) from a run, job or checkpoint folder; models are in eval mode."""
    ckpt = resolve_checkpoint(run_dir_or_ckpt)
    meta = ckpt.meta
    models = build_models(meta["models"], meta.get("lora_rank", 0))
    models.load_state_dict(ckpt.weights())
    models.to(map_location).eval()
    return models, meta.get("run_config", {})
