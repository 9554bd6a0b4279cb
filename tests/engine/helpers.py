"""Helpers several engine test modules share (test modules never import one another)."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from addon.engine import dds

REPO_ROOT = Path(__file__).resolve().parents[2]


def dx10_dds(payload: bytes, width: int, height: int, dxgi_format: int) -> bytes:
    """A minimal DDS with a DX10 header around one mip level (what the game and our writer emit)."""
    flags = 0x1 | 0x2 | 0x4 | 0x1000  # CAPS | HEIGHT | WIDTH | PIXELFORMAT
    pixel_format = struct.pack("<II4s5I", 32, 0x4, b"DX10", 0, 0, 0, 0, 0)
    header = struct.pack("<7I", 124, flags, height, width, len(payload), 0, 1) + b"\0" * 44 \
        + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    dx10 = struct.pack("<5I", dxgi_format, 3, 0, 1, 0)  # TEXTURE2D, one array slice
    return b"DDS " + header + dx10 + payload


def signed_bc5_dds(block_xy: np.ndarray) -> bytes:
    """A BC5_SNORM DDS (DXGI 84) whose every 4x4 block holds one normal's X, Y (from (rows, cols, 2)
    values in [-1, 1]): each BC4 half stores that signed byte as both endpoints, indices 0."""
    rows, cols = block_xy.shape[:2]
    signed = np.rint(np.clip(block_xy, -1, 1) * 127).astype(np.int8)
    payload = b"".join(struct.pack("<bb6xbb6x", x, x, y, y) for x, y in signed.reshape(-1, 2))
    return dx10_dds(payload, cols * 4, rows * 4, 84)


def run_cli(*args, home):
    """`python -m addon.cli ARGS` from the checkout, with HOME at `home`."""
    env = {**os.environ, "HOME": str(home)}  # bpy must not touch the user's Blender config
    return subprocess.run([sys.executable, "-m", "addon.cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def run_tiled(sources, model, out_channels: int, tile: int, overlap: int, multiple: int = 1, batch: int = 4):
    """Run `model` over arrays (or TileSources) of one size with the engine's TiledRun; (H, W, C_out)."""
    from addon.engine.tiling import TiledRun, plan_grid, wrap_source

    shape = next(s.shape[:2] for s in sources if isinstance(s, np.ndarray))
    cutters = [wrap_source(s) if isinstance(s, np.ndarray) else s for s in sources]
    grid = plan_grid(shape[0], shape[1], tile, overlap, multiple)
    out = np.empty((shape[0], shape[1], out_channels), dtype=np.float32)
    run = TiledRun(grid, cutters, model, out, batch)
    while not run.step():
        pass
    return out


DXGI_TO_FORMAT = {dxgi: fmt for (fmt, _srgb), dxgi in dds.DXGI_FORMATS.items()}


class DdsLayout:
    """The tests' reader of what dds.encode_dds writes: where each mip level of a block-compressed DX10
    .dds file lies, sizes checked against the data; anything else raises ValueError."""

    def __init__(self, data: bytes):
        try:
            header = dds.read_header(data)
        except dds.ImageReadError as exc:
            raise ValueError(str(exc)) from None
        if header.dxgi is None:
            raise ValueError("not a DX10 DDS file")
        self.height, self.width, self.dxgi = header.height, header.width, header.dxgi
        if self.dxgi not in DXGI_TO_FORMAT:
            raise ValueError(f"DXGI format {self.dxgi} is not one this writer emits")
        self.format = DXGI_TO_FORMAT[self.dxgi]
        self.srgb = (self.format, True) in dds.DXGI_FORMATS and dds.DXGI_FORMATS[(self.format, True)] == self.dxgi
        self.mip_count = max(1, header.mip_field)
        self.levels = []  # (offset, width, height) per level
        offset, w, h = header.data_offset, self.width, self.height
        for _ in range(self.mip_count):
            self.levels.append((offset, w, h))
            offset += dds.level_size(w, h, self.format)
            w, h = max(1, w // 2), max(1, h // 2)
        if offset != len(data):
            raise ValueError(f"the file holds {len(data)} bytes, its header describes {offset}")
        self._data = data

    def decode(self, level: int = 0) -> np.ndarray:
        """RGBA uint8 pixels of one level (texture2ddecoder; BC4 puts its channel in R, BC5 in R and G)."""
        import texture2ddecoder

        offset, w, h = self.levels[level]
        payload = self._data[offset:offset + dds.level_size(w, h, self.format)]
        bgra = getattr(texture2ddecoder, f"decode_{self.format.lower()}")(payload, w, h)
        return np.frombuffer(bgra, dtype=np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]]
