"""Size and speed of the four networks: parameters, MACs, CPU latency in torch and onnxruntime.

    python benchmarks/bench_models.py [--config cpu_default|tiny|full] [--threads 2] [--repeats 3]

Per network it prints parameters, GMACs for its working input (UNets: one 1024 x 1024 tile;
SegFormer: its 512 x 512 context image; ViT: 224 x 224), MACs per pixel for the UNets, and median
latency of torch (eval, no_grad, float32) and of onnxruntime (CPU provider, the exported graph).
Last line: an estimate of one 2K set through the add-on's chain = UNet-Albedo + UNet-Maps over 2048^2
pixels plus the tile overlap (tile 512, overlap 64 per side), ViT once and SegFormer once at 512^2.
Product target: <= 10 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.contract import DEFAULT_OVERLAP, DEFAULT_TILE, MODEL_SIGNATURES  # noqa: E402
from trainer.export import _export_one, random_inputs  # noqa: E402
from trainer.models import ModelsConfig, create_models  # noqa: E402

WORK_SIZE = {"albedo": 1024, "maps": 1024, "metallic_seg": 512, "classifier": 224}


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu_default", choices=["cpu_default", "tiny", "full"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime as ort
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(args.threads)
    models = create_models(getattr(ModelsConfig, args.config)(), seed=0).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    tile = DEFAULT_TILE + 2 * DEFAULT_OVERLAP
    tiles_2k = (2048 // DEFAULT_TILE) ** 2
    ort_seconds = {}
    print(f"config {args.config}, {args.threads} threads, torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"{'model':13s} {'params':>9s} {'size':>6s} {'GMACs':>8s} {'MACs/px':>8s} {'torch s':>8s} {'ort s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODEL_SIGNATURES:
            model = models[name]
            size = WORK_SIZE[name]
            inputs = random_inputs(name, 1, size, size, seed=0)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(*inputs)
            macs = counter.get_total_flops() / 2
            with torch.no_grad():
                torch_s = _median_seconds(lambda: model(*inputs), args.repeats)
            path = Path(tmp) / MODEL_SIGNATURES[name]["file"]
            _export_one(model, name, path, 17)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
            ort_s = _median_seconds(lambda: session.run(None, feeds), args.repeats)
            if name in ("albedo", "maps"):   # time of one overlapped tile, as the add-on runs it
                tile_inputs = random_inputs(name, 1, tile, tile, seed=0)
                tile_feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), tile_inputs)}
                ort_seconds[name] = tiles_2k * _median_seconds(lambda: session.run(None, tile_feeds), args.repeats)
            else:
                ort_seconds[name] = ort_s
            params = sum(p.numel() for p in model.parameters())
            per_pixel = f"{macs / size ** 2:8.0f}" if name in ("albedo", "maps") else f"{'-':>8s}"
            print(f"{name:13s} {params / 1e6:8.2f}M {size:6d} {macs / 1e9:8.2f} {per_pixel} {torch_s:8.3f} {ort_s:8.3f}")
    total = sum(ort_seconds.values())
    parts = ", ".join(f"{k} {v:.2f}" for k, v in ort_seconds.items())
    print(f"2K set estimate (onnxruntime, {tiles_2k} tiles of {tile}^2): {total:.2f} s  ({parts})")


if __name__ == "__main__":
    main()
