"""Training data loader throughput: samples/s of one phase's DataLoader on procedural data.

    python benchmarks/bench_loader.py [--res 1024] [--workers 2] [--batch 4] [--batches 8]
        [--source-size 1024] [--mix 0.75] [--materials 8] [--data DIR]

Writes `--materials` procedural materials (MatSynth shards + Skyrim pairs at --source-size) to a
temporary folder unless --data points at an earlier run's output, then times full batches of the
phase-B configuration (mix, composites, augmentations, SkyrimPhotometric) after one warm-up batch.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from trainer.data import synth
from trainer.data.matsynth import MatSynthDataset
from trainer.data.mixing import build_loader
from trainer.data.skyrim import SkyrimDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--res", type=int, default=1024, help="phase resolution and crop size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=8, help="timed batches")
    parser.add_argument("--source-size", type=int, default=1024, help="size of the stored materials")
    parser.add_argument("--materials", type=int, default=8)
    parser.add_argument("--mix", type=float, default=0.75, help="MatSynth share (the rest is Skyrim)")
    parser.add_argument("--data", type=Path, help="reuse a folder written by an earlier run")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        if not (root / "matsynth").is_dir():
            start = time.perf_counter()
            materials = list(synth.generate_set(args.materials, args.source_size, seed=0))
            synth.write_matsynth_shards(materials, root / "matsynth", rows_per_group=1)
            synth.write_skyrim_set(materials, root / "skyrim")
            print(f"wrote {args.materials} materials at {args.source_size} px in {time.perf_counter() - start:.1f} s")
        sources = {"matsynth": MatSynthDataset(root / "matsynth", resolution=args.res),
                   "skyrim": SkyrimDataset.from_root(root / "skyrim", resolution=args.res)}
        cfg = {"mix": {"matsynth": args.mix, "skyrim": 1 - args.mix}, "resolution": args.res, "augment": True,
               "composite_2crop": 0.30, "composite_4crop": 0.15, "photometric_strength": 1.0,
               "samples_per_epoch": (args.batches + 1) * args.batch}
        loader = build_loader(cfg, sources, batch_size=args.batch, epoch=0, seed=0, num_workers=args.workers)
        iterator = iter(loader)
        next(iterator)  # warm-up: worker start and first decodes
        start = time.perf_counter()
        count = 0
        for batch in iterator:
            count += len(batch["domain"])
        elapsed = time.perf_counter() - start
        print(f"res {args.res} px, {args.workers} worker(s), batch {args.batch}: {count} samples in {elapsed:.2f} s "
              f"= {count / max(elapsed, 1e-9):.2f} samples/s")


if __name__ == "__main__":
    main()
