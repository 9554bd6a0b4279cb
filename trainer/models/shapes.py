"""The input check every network runs first: a tensor of the wrong shape is refused with a sentence
naming the shape it must have (the classifier, SegFormer and both UNets share it)."""
from __future__ import annotations

import torch


def check_image(name: str, x: torch.Tensor, channels: int, multiple: int = 1,
                fixed_size: int | None = None) -> None:
    """Raise a ValueError naming the expected shape when x is not N x channels x H x W as required."""
    if fixed_size:
        expected = f"N x {channels} x {fixed_size} x {fixed_size}"
    elif multiple > 1:
        expected = f"N x {channels} x H x W with H and W multiples of {multiple}"
    else:
        expected = f"N x {channels} x H x W"
    bad = x.dim() != 4 or x.shape[1] != channels
    if not bad and fixed_size:
        bad = x.shape[2] != fixed_size or x.shape[3] != fixed_size
    if not bad and multiple > 1:
        bad = x.shape[2] % multiple != 0 or x.shape[3] % multiple != 0
    if bad:
        raise ValueError(f"{name} must be {expected}, got {tuple(x.shape)}")
