"""The run configuration: what `python -m trainer run` was asked to do, saved in RUNDIR/run_config.json
and inside every checkpoint, so a checkpoint says how it was made and `--resume` repeats it exactly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainer.contract import UNET_MULTIPLE

MODEL_PRESETS = ("tiny", "cpu_default", "full")

# Named bundles of overrides. cpu_default trains the shipped default models on procedural data:
# every phase and every D job, in miniature, in about 15-20 minutes on 2 CPU cores.
PROFILES = {
    "cpu_default": {
        "models_preset": "cpu_default",
        "synthetic": 128,
        "res_scale": 0.125,   # 1K -> 128 px, 2K -> 256 px
        "epochs_scale": 0.5,  # A0 5-8, A 15-20, B/C 4-6, C' 1 epochs; D jobs 2-5 epochs
        "max_steps": 24,
        "batch_size": 4,
        "grad_accum": 1,
        "lr_scale": 10.0,     # a miniature has ~1 % of the plan's steps: larger steps to travel as far
        "val_batches": 2,
    },
}


@dataclass
class RunConfig:
    plan: str = "skyrim"               # plan name (trainer/plans) or TOML path
    out: str = "runs/default"
    matsynth: str | None = None        # MatSynth parquet folder
    skyrim: str | None = None          # Skyrim pairs root (docs/data.md)
    library: str | None = None         # material library (trainer data import): its training split only
    synthetic: int | None = None       # procedural materials per domain instead of real data
    models_preset: str = "full"
    res_scale: float = 1.0             # multiplies every phase resolution (rounded to the UNet multiple)
    epochs_scale: float = 1.0          # multiplies every epoch count and epoch-counted schedule length
    max_steps: int | None = None       # at most this many optimiser steps per epoch
    batch_size: int | None = None      # overrides every phase's batch size
    grad_accum: int | None = None      # overrides every phase's gradient accumulation
    lr_scale: float = 1.0              # multiplies every learning rate of the plan
    val_batches: int | None = None     # at most this many batches per validation domain
    device: str = "auto"
    compile: bool = False
    lion: bool = False                 # Lion instead of AdamW where the plan allows it (C, C')
    wandb: bool = False
    num_workers: int | None = None     # data-loading processes; None: 0 on the CPU, several per GPU
    checkpoint_every: int = 0          # also save "last" every N optimiser steps within an epoch
    log_every: int = 10                # read the training loss on the host (log, NaN check) every N steps
    grad_clip: float = 0.0             # clip the gradients' global norm to this before each step; 0: off
    export_to: str | None = None       # also copy the exported ONNX set here (e.g. models/)
    init_from: str | None = None       # start the plan's new models from these weights (e.g. models/)
    reset: list = field(default_factory=list)  # parameter prefixes (maps.heads.height) started new, not from init_from
    profile: str | None = None
    models: dict = field(default_factory=dict)   # ModelsConfig as a dict, filled at start
    plan_data: dict = field(default_factory=dict)  # the merged plan TOML, filled at start

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def resolution(self, plan_resolution: int) -> int:
        """A phase's resolution after res_scale, a multiple of the UNet stride, at least one stride."""
        return max(UNET_MULTIPLE, round(plan_resolution * self.res_scale / UNET_MULTIPLE) * UNET_MULTIPLE)

    def epochs(self, plan_epochs: tuple[int, int]) -> tuple[int, int]:
        low, high = (max(1, round(e * self.epochs_scale)) for e in plan_epochs)
        return low, high
