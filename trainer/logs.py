"""Run logging: TensorBoard (scalars per validation domain, prediction grids, hparams), Weights &
Biases when installed and asked for, tqdm progress with ETA, and the job tags of the plan
(`phase=D,res=2K,model=roughness_head`). Only rank 0 logs; other ranks get a silent logger."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

log = logging.getLogger("trainer")


def resolution_tag(pixels: int) -> str:
    return f"{pixels // 1024}K" if pixels % 1024 == 0 else str(pixels)


def job_tags(phase_label: str, resolution: int, model: str, mix: dict[str, float], augment: bool) -> dict[str, str]:
    return {
        "phase": phase_label,
        "res": resolution_tag(resolution),
        "model": model,
        "mix": "+".join(f"{domain}{round(share * 100)}" for domain, share in mix.items()),
        "aug": "on" if augment else "off",
    }


def tag_string(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in tags.items())


def image_grid(rows: list[torch.Tensor], max_items: int = 4) -> torch.Tensor:
    """One CHW image: a row per entry of `rows` (each N,C,H,W in [0,1], C in {1,3}), `max_items` columns."""
    from torchvision.utils import make_grid
    tiles = []
    for row in rows:
        row = row[:max_items].detach().float().cpu().clamp(0, 1)
        tiles.extend(row.expand(-1, 3, -1, -1) if row.shape[1] == 1 else row)
    return make_grid(tiles, nrow=min(max_items, len(rows[0])), padding=2)


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True, use_wandb: bool = False, run_config: dict | None = None):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.use_wandb = use_wandb and enabled
        self.run_config = run_config or {}
        self.writer = None
        self.wandb_run = None
        self.tags: dict[str, str] = {}

    def start_job(self, name: str, tags: dict[str, str]) -> None:
        """Open the writers of one job (a phase, or one D head); `name` is its folder, e.g. "D/ao_head"."""
        self.tags = tags
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(self.run_dir / "tb" / name))
        self.writer.add_text("job", tag_string(tags))
        log.info("job %s [%s]", name, tag_string(tags))
        if self.use_wandb:
            self.wandb_run = _start_wandb(self.run_dir, name, tags, self.run_config)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(dict(values), step=step)

    def image(self, name: str, grid: torch.Tensor, step: int) -> None:
        if self.writer is None:
            return
        self.writer.add_image(name, grid, step)
        if self.wandb_run is not None:
            import wandb
            self.wandb_run.log({name: wandb.Image(grid.permute(1, 2, 0).numpy())}, step=step)

    def end_job(self, hparams: dict, metrics: dict[str, float]) -> None:
        if self.writer is None:
            return
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        self.writer.close()
        self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.summary.update(metrics)
            self.wandb_run.finish()
            self.wandb_run = None

    def progress(self, total: int, description: str):
        """A tqdm bar with rate and ETA (disabled on non-zero ranks)."""
        return tqdm(total=total, desc=description, disable=not self.enabled, dynamic_ncols=True, leave=False)


def _start_wandb(run_dir: Path, name: str, tags: dict[str, str], config: dict):
    try:
        import wandb
    except ImportError:
        log.warning("Weights & Biases is not installed (pip install wandb); logging to TensorBoard only.")
        return None
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "pbr-forge"), dir=str(run_dir),
                      name=f"{run_dir.name}/{name}", group=run_dir.name, tags=[f"{k}={v}" for k, v in tags.items()],
                      config=dict(config, **tags), mode=os.environ.get("WANDB_MODE", "offline"), reinit=True)
