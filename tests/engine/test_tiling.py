"""Wrap-around tiling with blended overlaps, using plain numpy functions as the "model"."""
import numpy as np
import pytest

from addon.engine.tiling import TiledRun, blend_window, plan_grid, resize_wrap, ring_segments, sample_wrap, wrap_source

from .helpers import run_tiled


def identity(inputs):
    return inputs[0]


def test_constant_input_gives_exactly_the_constant_back():
    image = np.full((300, 517, 3), 0.3137, dtype=np.float32)
    out = run_tiled([image], identity, 3, tile=128, overlap=32, multiple=32, batch=3)
    assert np.array_equal(out, image)


@pytest.mark.parametrize("height, width", [(37, 53), (129, 95), (257, 511), (64, 64)])
def test_identity_model_reproduces_odd_sizes_exactly(height, width):
    image = np.random.default_rng(height).random((height, width, 2), dtype=np.float32)
    out = run_tiled([image], identity, 2, tile=64, overlap=16, multiple=32, batch=4)
    assert out.shape == image.shape
    assert np.array_equal(out, image)


def test_tiles_respect_the_size_multiple_and_cover_every_pixel_with_overlap():
    grid = plan_grid(1000, 70, tile=256, overlap=48, multiple=32)
    assert grid.tile_h == 256 and grid.tile_h % 32 == 0
    assert grid.tile_w == 128  # short side: one tile of 70 + 48, rounded up to 32
    covered = np.zeros(1000, dtype=int)
    for start in grid.starts_y:
        for _, position, length in ring_segments(start, grid.tile_h, 1000):
            covered[position:position + length] += 1
    assert covered.min() >= 1
    starts = sorted(grid.starts_y) + [grid.starts_y[0] + 1000]
    assert all(b - a <= grid.tile_h - 48 for a, b in zip(starts, starts[1:]))  # neighbours overlap


def test_blend_window_ignores_the_tile_margin_and_is_symmetric_and_flat_in_the_middle():
    window = blend_window(64, 96, 16)
    assert window[:4].max() == 0 and window[:, -4:].max() == 0 and window[4:-4, 4:-4].min() > 0
    assert window.max() == 1.0
    assert np.allclose(window, window[::-1, ::-1])
    assert np.all(window[16:48, 16:80] == 1.0)


def test_tiles_wrap_around_the_edges():
    image = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    tile = wrap_source(image)(-1, 5, 3, 4)[..., 0]
    assert tile.tolist() == [[image[4, c] for c in (5, 6, 0, 1)],
                             [image[0, c] for c in (5, 6, 0, 1)],
                             [image[1, c] for c in (5, 6, 0, 1)]]


def test_a_local_filter_tiled_equals_the_filter_on_the_whole_torus():
    """A 3x3 box blur with zero padding is wrong at tile borders; overlap + wrap must hide that."""
    def blur(inputs):
        x = inputs[0]
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        return sum(padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]] for dy in range(3) for dx in range(3)) / 9

    image = np.random.default_rng(0).random((90, 130, 1), dtype=np.float32)
    expected = sum(np.roll(image, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    out = run_tiled([image], blur, 1, tile=64, overlap=16, multiple=32, batch=2)
    assert np.abs(out - expected).max() < 1e-5


def test_several_tiles_go_through_each_model_call():
    calls = []

    def counting(inputs):
        calls.append(inputs[0].shape[0])
        return inputs[0]

    run_tiled([np.zeros((200, 200, 1), np.float32)], counting, 1, tile=64, overlap=16, batch=5)
    grid = plan_grid(200, 200, 64, 16)
    assert sum(calls) == grid.count and max(calls) == 5 and len(calls) == -(-grid.count // 5)


def test_step_reports_progress_until_done():
    image = np.ones((100, 100, 1), np.float32)
    grid = plan_grid(100, 100, 64, 16, 32)
    run = TiledRun(grid, [wrap_source(image)], identity, np.empty((100, 100, 1), np.float32), batch=2)
    seen = []
    while not run.step():
        seen.append(run.progress)
    assert seen == sorted(seen) and 0 < seen[0] < 1 and run.progress == 1.0


def test_sample_wrap_is_continuous_across_the_edge():
    small = np.random.default_rng(1).random((6, 5, 2), dtype=np.float32)
    big = resize_wrap(small, 60, 50)
    tile = sample_wrap(small, 60, 50, -3, 47, 10, 10)  # straddles both edges
    rows = np.arange(-3, 7) % 60
    cols = np.arange(47, 57) % 50
    assert np.allclose(tile, big[np.ix_(rows, cols)])
    # bilinear upsampling of a periodic map: the step across the wrap edge is like any other step
    seam = np.abs(big[:, 0] - big[:, -1]).max()
    inside = np.abs(np.diff(big, axis=1)).max()
    assert seam <= inside + 1e-6
