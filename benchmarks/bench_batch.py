"""Batch throughput: sets per minute for 1K and 2K textures on this machine.

    python benchmarks/bench_batch.py --models models/ [--sizes 1024 2048] [--sets 3] [--provider auto]

Builds a throw-away mod folder of procedural diffuse + normal pairs per size, runs the real batch
(True PBR output: four BC7/BC4 DDS files with full mips per set) and prints, per size:
- sets/minute of the whole batch (decode, inference, DDS encode, journal),
- seconds per set of inference alone and of DDS encoding alone, measured separately on one set;
  the batch overlaps the two, so its time per set should sit below their sum.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addon.engine import truepbr  # noqa: E402
from addon.engine.batch import run_batch  # noqa: E402
from addon.engine.imageio import read_image  # noqa: E402
from addon.engine.pipeline import Converter  # noqa: E402


def _procedural_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    height = sum(np.sin(2 * np.pi * (k * x + rng.integers(1, 4) * y) + rng.random() * 6) / k for k in (1, 3, 7))
    height += rng.normal(0, 0.05, height.shape)
    colour = 0.45 + 0.15 * height[..., None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 0.03, (size, size, 3))
    dy, dx = np.gradient(height)
    normal = np.dstack([-dx * size / 8, dy * size / 8, np.ones_like(height)])  # DirectX: green down
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    to8 = lambda a: np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return to8(colour), to8((normal + 1) / 2)


def _build_mod(root: Path, size: int, count: int) -> Path:
    folder = root / f"mod_{size}" / "textures" / "bench"
    folder.mkdir(parents=True)
    for i in range(count):
        diffuse, normal = _procedural_pair(size, i)
        Image.fromarray(diffuse).save(folder / f"set{i:02d}.png")
        Image.fromarray(normal).save(folder / f"set{i:02d}_n.png")
    return root / f"mod_{size}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="models folder (default: the shipped models/)")
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--sets", type=int, default=3, help="sets per size")
    args = parser.parse_args()

    converter = Converter(models_dir=args.models, provider=args.provider)
    print(f"models: {converter.manifest.models_dir}  provider choice: {args.provider}")
    with tempfile.TemporaryDirectory(prefix="pbr_forge_bench_") as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            mod = _build_mod(tmp, size, args.sets)
            first = next((mod / "textures" / "bench").glob("set00.png"))
            diffuse, normal = read_image(first), read_image(first.with_name("set00_n.png"))

            started = time.perf_counter()
            result = converter.convert(diffuse, normal)  # also warms the sessions up
            infer = time.perf_counter() - started
            started = time.perf_counter()
            truepbr.write_truepbr_set(result, tmp / f"encode_{size}", "bench/one")
            encode = time.perf_counter() - started

            started = time.perf_counter()
            summary = run_batch(mod, tmp / f"out_{size}", progress=False, converter=converter)
            seconds = time.perf_counter() - started
            if summary["failed"]:
                raise SystemExit(f"{summary['failed']} sets failed: {summary['failures']}")
            per_set = seconds / args.sets
            print(f"{size}x{size}: {60 / per_set:6.1f} sets/min  ({per_set:.2f} s/set in the batch; "
                  f"alone: inference {infer:.2f} s [{result.provider}], DDS encode {encode:.2f} s)")


if __name__ == "__main__":
    main()
