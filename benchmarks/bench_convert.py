"""Conversion speed and memory on this machine's CPU (prints figures; not a test).

    python benchmarks/bench_convert.py --models models/ [--sizes 1024 2048 4096] [--peak-8k]

For each size: seconds per full set (4 models, tiles batched) and with one tile per model call.
--peak-8k runs one 8192x8192 conversion in a child process and prints its peak RSS.
--end-to-end 2048 4096 8192 times the whole user job instead (DDS pair -> CLI -> PNG set + .blend).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from addon.engine.pipeline import Converter  # noqa: E402


def _texture(size: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((size // 64 + 1, size // 64 + 1, channels), dtype=np.float32)
    return np.repeat(np.repeat(small, 64, 0), 64, 1)[:size, :size]


def seconds_per_set(models: Path, size: int, batch_tiles: int) -> float:
    converter = Converter(models, provider="cpu", batch_tiles=batch_tiles)
    converter.convert(_texture(64, 3, 0))  # create the sessions outside the timing
    diffuse, normal = _texture(size, 3, 1), _texture(size, 3, 2)
    started = time.perf_counter()
    converter.convert(diffuse, normal, "opengl")
    return time.perf_counter() - started


def peak_rss_8k(models: Path) -> None:
    """Runs in a child: read-side arrays as the CLI makes them, one 8K conversion, peak RSS."""
    converter = Converter(models, provider="cpu")
    result = converter.convert(_texture(8192, 4, 1), _texture(8192, 3, 2), "opengl")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"8192x8192: peak RSS {peak_mib:.0f} MiB ({result.seconds:.0f} s, {result.provider})")


def end_to_end(models: Path, size: int, workdir: Path) -> None:
    """The user's whole job: a BC1 diffuse + BC3 DirectX normal DDS pair on disk -> `python -m
    addon.cli convert` (read, convert, write the six PNGs and the .blend) in a child process; prints
    its wall time and peak RSS."""
    from PIL import Image

    folder = workdir / f"set{size}"
    folder.mkdir(parents=True, exist_ok=True)
    diffuse_path = folder / "bench.dds"
    if not diffuse_path.exists():
        rgb = np.round(_texture(size, 3, 1) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(diffuse_path, format="DDS", pixel_format="DXT1")
        normal = np.dstack([_texture(size, 2, 2) * 0.4 + 0.3, np.ones((size, size, 2), np.float32)])
        Image.fromarray(np.round(normal * 255).astype(np.uint8)).save(folder / "bench_n.dds", format="DDS",
                                                                       pixel_format="DXT5")
    command = [sys.executable, "-m", "addon.cli", "convert", "--input", str(diffuse_path),
               "--output", str(workdir / f"out{size}"), "--models", str(models), "--provider", "cpu"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{size}x{size} end to end (DDS in, PNG set + .blend out, new process): {seconds:.1f} s, "
          f"peak RSS {peak_mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--peak-8k", action="store_true")
    parser.add_argument("--child-8k", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--end-to-end", type=int, nargs="+", metavar="SIZE",
                        help="instead: time the CLI on a DDS pair of each SIZE (one size per call measures its peak RSS)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pbr_forge_bench"))
    args = parser.parse_args()
    if args.child_8k:
        peak_rss_8k(args.models)
        return
    if args.end_to_end:
        for size in args.end_to_end:
            end_to_end(args.models, size, args.workdir)
        return
    for size in args.sizes:
        batched = seconds_per_set(args.models, size, batch_tiles=4)
        single = seconds_per_set(args.models, size, batch_tiles=1)
        print(f"{size}x{size}: {batched:.2f} s per set with 4 tiles per call, {single:.2f} s with 1 tile per call")
    if args.peak_8k:
        subprocess.run([sys.executable, __file__, "--models", str(args.models), "--child-8k"], check=True)


if __name__ == "__main__":
    main()
