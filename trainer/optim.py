"""Optimiser and LR-scheduler factories: a plan's OptimizerSpec / SchedulerSpec -> torch objects.

The loop calls `scheduler.step()` after every optimiser step for per-batch schedulers (OneCycle,
warm restarts) and after every epoch for the others (`SchedulerSpec.per_batch` says which).
"""
from __future__ import annotations

import dataclasses

import torch
from torch.optim import lr_scheduler

from trainer.plan import OptimizerSpec, SchedulerSpec

# Lion takes larger steps than AdamW for the same LR (sign updates); its authors advise an LR
# 3-10x smaller and a weight decay 3-10x larger. We take the gentle end of both.
LION_LR_FACTOR = 1 / 3
LION_WD_FACTOR = 3.0
LION_BETAS = (0.9, 0.99)


def create_optimizer(params, spec: OptimizerSpec, *, use_alternative: bool = False,
                     fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser of a plan job over `params` (trainable parameters only).

    use_alternative switches to the plan's named alternative (Lion in C and C′) where it has one.
    fused: use the fused CUDA kernels of Adam/AdamW (all params must be on a CUDA device).
    """
    params = list(params)
    name = spec.alternative if use_alternative and spec.alternative else spec.name
    if name == "lion":
        from timm.optim import Lion
        return Lion(params, lr=spec.lr * LION_LR_FACTOR, betas=LION_BETAS,
                    weight_decay=spec.weight_decay * LION_WD_FACTOR)
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[name]
    kwargs = {"fused": True} if fused else {}
    return cls(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **kwargs)


def create_scheduler(optimizer: torch.optim.Optimizer, spec: SchedulerSpec, *, epochs: int,
                     steps_per_epoch: int, epochs_scale: float = 1.0) -> lr_scheduler.LRScheduler:
    """The plan's scheduler for a job of `epochs` epochs of `steps_per_epoch` optimiser steps.

    epochs_scale shrinks epoch-counted lengths (T_max, step_size) together with the epochs of a
    miniature run, so the schedule keeps its shape.
    """
    p = dict(spec.params)

    def epochs_of(value):
        return max(1, round(value * epochs_scale))

    if spec.name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs_of(p["T_max"]), eta_min=p.get("eta_min", 0.0))
    if spec.name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=epochs_of(p["step_size"]), gamma=p["gamma"])
    if spec.name == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=p["gamma"])
    if spec.name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, total_steps=max(2, epochs * steps_per_epoch), **p)
    if spec.name == "cosine_restarts":
        # T_0 is counted in epochs in the plan; the scheduler steps per batch.
        return lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, p["T_0"] * steps_per_epoch), T_mult=p.get("T_mult", 1), eta_min=p.get("eta_min", 0.0))
    raise ValueError(f"unknown scheduler {spec.name}")


def scale_lr(optimizer: OptimizerSpec, scheduler: SchedulerSpec, factor: float) -> tuple[OptimizerSpec, SchedulerSpec]:
    """Every learning rate of a job (base LR, OneCycle's max_lr, eta_min floors) times `factor`, so a
    miniature run with a hundredth of the steps can still travel as far (--lr-scale)."""
    if factor == 1.0:
        return optimizer, scheduler
    params = {k: v * factor if k in ("max_lr", "eta_min") else v for k, v in scheduler.params.items()}
    return dataclasses.replace(optimizer, lr=optimizer.lr * factor), dataclasses.replace(scheduler, params=params)
