"""Run a fully convolutional model over a large texture in overlapping, wrap-around tiles.

Textures tile in the game, so the image is treated as a torus: a tile that runs past the right or
bottom edge continues at the left or top, and every output pixel near an edge was computed with
its real neighbours from the opposite side. The output therefore tiles without a seam.

Overlapping tiles are blended with a smooth window that ignores each tile's outer margin. The blend is a running weighted mean,
`out += (tile - out) * w / (sum of w so far)`, so the weights of every pixel sum to 1 and a model
that returns its input (or a constant) gives exactly its input (or that constant) back.

Memory stays bounded: tiles are cut from the source arrays on demand (no padded copy of the
image), `batch` tiles go through the model per call, and the only full-size buffers are the
output and one float32 weight plane.

Array layout: sources and outputs are (H, W, C) float32; the model callable receives one
(N, C, h, w) array per source and returns (N, C_out, h, w).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# (y0, x0, tile_h, tile_w) -> (tile_h, tile_w, C) float32, cut with wrap-around.
TileSource = Callable[[int, int, int, int], np.ndarray]
Model = Callable[[list], np.ndarray]


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie; starts may be negative (they wrap around)."""
    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int
    starts_y: tuple
    starts_x: tuple

    @property
    def count(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    def tiles(self) -> list:
        return [(y, x) for y in self.starts_y for x in self.starts_x]


def plan_grid(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> TileGrid:
    """Tiles of at most `tile` pixels (rounded up to `multiple`) overlapping by at least `overlap`.

    A side shorter than a tile gets one tile of (side + overlap) rounded up to `multiple`: the
    model sees the texture wrapped around itself, so even a 40-pixel texture comes out seamless.
    """
    if tile <= 0 or overlap < 0 or height <= 0 or width <= 0:
        raise ValueError(f"bad tiling request: {height}x{width}, tile {tile}, overlap {overlap}")
    tile_h, starts_y = _plan_axis(height, tile, overlap, multiple)
    tile_w, starts_x = _plan_axis(width, tile, overlap, multiple)
    return TileGrid(height, width, tile_h, tile_w, overlap, starts_y, starts_x)


def _plan_axis(length: int, tile: int, overlap: int, multiple: int):
    tile_len = min(round_up(tile, multiple), round_up(length + overlap, multiple))
    if tile_len - overlap <= 0:
        raise ValueError(f"overlap {overlap} leaves no room in a {tile_len}-pixel tile")
    count = math.ceil(length / (tile_len - overlap))
    # Shrink the tiles to the smallest that still cover the ring with `count` of them: fewer
    # pixels are computed twice (2048 px with tile 640, overlap 64: 4 tiles of 576, not 4 of 640).
    tile_len = min(tile_len, round_up(math.ceil(length / count) + overlap, multiple))
    # Even spacing around the ring; shifting by half an overlap centres the first seam on pixel 0.
    return tile_len, tuple((i * length) // count - overlap // 2 for i in range(count))


def blend_window(tile_h: int, tile_w: int, overlap: int) -> np.ndarray:
    """(tile_h, tile_w) weights: 1 in the middle, a smoothstep ramp inside the overlap, and 0 on the
    outer quarter of the overlap, where the model's zero padding spoils its output. Neighbouring
    tiles overlap by at least `overlap`, so every pixel still has a tile that weighs it."""
    return np.outer(_ramp(tile_h, overlap), _ramp(tile_w, overlap)).astype(np.float32)


def _ramp(length: int, overlap: int) -> np.ndarray:
    if overlap == 0:
        return np.ones(length, dtype=np.float64)
    margin = overlap // 4
    position = np.arange(length, dtype=np.float64) + 0.5
    distance = np.minimum(position, length - position)
    linear = np.clip((distance - margin) / (overlap - margin), 0.0, 1.0)
    return linear * linear * (3.0 - 2.0 * linear)


def ring_segments(start: int, count: int, size: int) -> list:
    """Split `count` pixels from `start` on a ring of `size` into contiguous pieces:
    (offset in the tile, offset in the image, length)."""
    pieces, done = [], 0
    while done < count:
        position = (start + done) % size
        length = min(count - done, size - position)
        pieces.append((done, position, length))
        done += length
    return pieces


def wrap_source(array: np.ndarray) -> TileSource:
    """A TileSource cutting wrap-around tiles from an (H, W) or (H, W, C) array (any float dtype)."""
    height, width = array.shape[:2]

    def cut(y0: int, x0: int, tile_h: int, tile_w: int) -> np.ndarray:
        # Contiguous block copies around the ring (much faster than fancy indexing).
        tile = np.empty((tile_h, tile_w) + array.shape[2:], dtype=np.float32)
        for tile_y, image_y, rows in ring_segments(y0, tile_h, height):
            for tile_x, image_x, cols in ring_segments(x0, tile_w, width):
                tile[tile_y:tile_y + rows, tile_x:tile_x + cols] = array[image_y:image_y + rows,
                                                                         image_x:image_x + cols]
        return tile if tile.ndim == 3 else tile[..., None]

    return cut


def sample_wrap(source: np.ndarray, full_h: int, full_w: int,
                y0: int, x0: int, tile_h: int, tile_w: int) -> np.ndarray:
    """Bilinear, wrap-around resampling of a small (h, w, C) map that covers a (full_h, full_w)
    texture, evaluated only on the tile's pixels -> (tile_h, tile_w, C) float32.

    Pixel centres line up (`align_corners=False`), and the map wraps, so the result is as
    seamless as the texture."""
    rows_low, rows_high, row_frac = _wrap_coordinates(y0, tile_h, full_h, source.shape[0])
    cols_low, cols_high, col_frac = _wrap_coordinates(x0, tile_w, full_w, source.shape[1])
    source = source.astype(np.float32, copy=False)
    rows = source[rows_low] * (1 - row_frac)[:, None, None] + source[rows_high] * row_frac[:, None, None]
    return rows[:, cols_low] * (1 - col_frac)[None, :, None] + rows[:, cols_high] * col_frac[None, :, None]


def _wrap_coordinates(start: int, count: int, full: int, small: int):
    position = ((np.arange(start, start + count) % full) + 0.5) * (small / full) - 0.5
    low = np.floor(position)
    fraction = (position - low).astype(np.float32)
    low = low.astype(np.int64)
    return low % small, (low + 1) % small, fraction


def resize_antialiased(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) -> (height, width, C) float32, plane by plane with Pillow's bilinear filter, which
    widens its support when shrinking, so an 8K image averages down instead of aliasing."""
    from PIL import Image  # Pillow is needed only by whole-image shrinking, not by tiling

    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                         .resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
              for c in range(image.shape[2])]
    return np.stack(planes, axis=-1)


def resize_wrap(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear wrap-around resize of a whole (h, w, C) array."""
    return sample_wrap(array, height, width, 0, 0, height, width)


class TiledRun:
    """One model over all tiles of a grid, `batch` tiles per model call, one call per step().

    `out` is the (H, W, C_out) float32 array the blended result is written into.
    """

    def __init__(self, grid: TileGrid, sources: Sequence[TileSource], model: Model,
                 out: np.ndarray, batch: int = 4):
        if out.shape[:2] != (grid.height, grid.width) or out.dtype != np.float32:
            raise ValueError(f"output must be float32 {grid.height}x{grid.width}xC, got {out.dtype} {out.shape}")
        self.grid = grid
        self.out = out
        self._sources = list(sources)
        self._model = model
        self._batch = max(1, int(batch))
        self._pending = grid.tiles()
        self._window = blend_window(grid.tile_h, grid.tile_w, grid.overlap)
        self._weights = np.zeros((grid.height, grid.width), dtype=np.float32)
        self.out[...] = 0.0

    @property
    def done(self) -> bool:
        return not self._pending

    @property
    def progress(self) -> float:
        return 1.0 - len(self._pending) / self.grid.count

    def step(self) -> bool:
        """Run the next batch of tiles; True once every tile is blended in."""
        if self.done:
            return True
        batch, self._pending = self._pending[:self._batch], self._pending[self._batch:]
        grid = self.grid
        inputs = [
            np.stack([source(y0, x0, grid.tile_h, grid.tile_w) for y0, x0 in batch]).transpose(0, 3, 1, 2)
            for source in self._sources
        ]
        outputs = np.asarray(self._model([np.ascontiguousarray(x) for x in inputs]), dtype=np.float32)
        expected = (len(batch), self.out.shape[2], grid.tile_h, grid.tile_w)
        if outputs.shape != expected:
            raise ValueError(f"model returned {outputs.shape}, expected {expected}")
        for (y0, x0), tile in zip(batch, outputs.transpose(0, 2, 3, 1)):
            self._blend(y0, x0, tile)
        if self.done:
            self._weights = None  # free the weight plane as soon as possible
        return self.done

    def _blend(self, y0: int, x0: int, tile: np.ndarray) -> None:
        grid = self.grid
        for tile_y, image_y, rows in ring_segments(y0, grid.tile_h, grid.height):
            for tile_x, image_x, cols in ring_segments(x0, grid.tile_w, grid.width):
                weight = self._window[tile_y:tile_y + rows, tile_x:tile_x + cols]
                total = self._weights[image_y:image_y + rows, image_x:image_x + cols]
                total += weight
                # A pixel only this tile's zero margin has reached keeps share 0 until a tile weighs it.
                share = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)[..., None]
                target = self.out[image_y:image_y + rows, image_x:image_x + cols]
                target += (tile[tile_y:tile_y + rows, tile_x:tile_x + cols] - target) * share
