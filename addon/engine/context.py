"""What the whole-image context models see of a texture: the one implementation both the add-on's
conversion (pipeline.py, NumPy arrays, ONNX sessions) and training (trainer/objective.py, torch
tensors on the GPU) use, so the networks are trained on the pixels they are later given.

The classifier sees the whole albedo squashed to its fixed square input: one call of the resize
below, which each caller makes itself. The metallic segmenter sees the albedo shrunk so its long
side is at most max_side (never enlarged), each side a multiple of the UNet stride; its
convolutions pad with zeros, so it is fed the image wrap-padded by one stride on every side and its
logits are cropped back: they continue across the texture's edges like the texture does.

Images are N,C,H,W NumPy arrays or torch tensors; the caller gives the resize, `resize(image,
height, width)` -> N,C,height,width with an antialiased bilinear filter (Pillow's in the add-on,
torch's `antialias=True` in training: they agree to about 1e-5). Nothing here imports torch.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Resize = Callable[[object, int, int], object]


def context_hw(height: int, width: int, max_side: int, multiple: int) -> tuple[int, int]:
    """The whole texture shrunk so its long side is at most max_side (never enlarged), each side
    a multiple of `multiple`."""
    scale = min(1.0, max_side / max(height, width))
    return tuple(max(multiple, int(side * scale) // multiple * multiple) for side in (height, width))


def segmenter_input(albedo, max_side: int, multiple: int, resize: Resize):
    """The segmenter's input: the albedo at context_hw, wrap-padded by `multiple` on every side
    (crop the logits with crop_margin(logits, multiple))."""
    size = context_hw(*albedo.shape[-2:], max_side, multiple)
    small = albedo if tuple(albedo.shape[-2:]) == size else resize(albedo, *size)
    return wrap_pad(small, multiple)


def crop_margin(image, margin: int):
    """Undo wrap_pad's `margin` on the last two axes."""
    return image[..., margin:image.shape[-2] - margin, margin:image.shape[-1] - margin]


def segment(run: Callable, albedo, max_side: int, multiple: int, resize: Resize):
    """Metallic logits at the segmenter's input size (context_hw): `run` (image -> logits at the
    image's size) on the wrap-padded input, cropped back."""
    return crop_margin(run(segmenter_input(albedo, max_side, multiple, resize)), multiple)


def wrap_pad(image, margin: int):
    """The image (N,C,H,W array or tensor) padded by `margin` on every side with the pixels of the
    opposite edge (NumPy's mode="wrap")."""
    height, width = image.shape[-2:]
    rows = np.arange(-margin, height + margin) % height
    cols = np.arange(-margin, width + margin) % width
    return image[..., rows[:, None], cols]
