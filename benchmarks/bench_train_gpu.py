"""Training-step throughput on a GPU (prints figures and writes them as JSON; not a test).

    python benchmarks/bench_train_gpu.py --out results.json [--res 1024] [--seconds 240]

1. Phase A0 step (all four networks training, the `full` preset, bf16 autocast, channels_last, fused
   AdamW) on random batches at --res: images/s, peak GPU memory, FLOPs per step (torch's
   FlopCounterMode) and the share of the GPU's peak dense bf16 FLOP/s.
2. The product target: UNet-Maps as we train it (BatchNorm, channels_last, bf16, torch.compile)
   against a plain GroupNorm twin of equal FLOPs (the same network with every BatchNorm replaced by
   GroupNorm, eager) — the ratio of their step throughputs (target >= 3.5x on an H100 at 1K).
Each part writes its figures as soon as it has them, so a time limit keeps what was measured.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.contract import CONDITION_CHANNELS, MAP_CHANNELS, MATERIAL_CLASSES  # noqa: E402
from trainer.models import ModelsConfig, create_models  # noqa: E402
from trainer.objective import compute_losses  # noqa: E402

# Dense bf16 peak of the Hopper cards this project is lent (H100 SXM and H200 share the compute die).
PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12}


def random_batch(n: int, res: int, device) -> dict:
    def image(c):
        return torch.rand(n, c, res, res, device=device).contiguous(memory_format=torch.channels_last)

    normal = torch.nn.functional.normalize(torch.randn(n, 3, res, res, device=device) * 0.3
                                           + torch.tensor([0, 0, 1.0], device=device)[:, None, None], dim=1)
    return {
        "diffuse": image(3), "normal": normal.contiguous(memory_format=torch.channels_last), "albedo": image(3),
        "maps": image(len(MAP_CHANNELS)), "metallic_mask": (image(1) > 0.5).float(),
        "labels": (torch.rand(n, len(MATERIAL_CLASSES), device=device) > 0.8).float(),
        "valid": torch.ones(n, 7, device=device), "domain": torch.zeros(n, dtype=torch.long, device=device),
        "photometric": torch.zeros(n, device=device),
    }


def timed_steps(step, warmup: int, steps: int, deadline: float) -> tuple[float, int]:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    started, done = time.perf_counter(), 0
    while done < steps and time.perf_counter() < deadline:
        step()
        done += 1
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / max(done, 1), done


def step_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def phase_a0(res: int, batch: int, peak: float, deadline: float) -> dict:
    models = create_models(ModelsConfig.full(), seed=0).cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(models.parameters(), lr=1e-4, weight_decay=1e-2, fused=True)
    data = random_batch(batch, res, "cuda")
    active = set(models.keys())

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compute_losses(models, data, active)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    torch.cuda.reset_peak_memory_stats()
    seconds, steps = timed_steps(step, warmup=3, steps=15, deadline=deadline)
    flops = step_flops(step)
    return {"res": res, "batch": batch, "steps_timed": steps, "images_per_s": batch / seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "tflops_per_step": flops / 1e12,
            "share_of_peak_bf16": flops / seconds / peak}


def group_norm_twin(model: nn.Module) -> nn.Module:
    """The same network with every BatchNorm2d replaced by GroupNorm (8 groups where they divide)."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(model, name, nn.GroupNorm(8 if c % 8 == 0 else 1, c))
        else:
            group_norm_twin(child)
    return model


def unet_maps_step(model: nn.Module, res: int, batch: int):
    model = model.cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    data = random_batch(batch, res, "cuda")
    condition = torch.randn(batch, len(CONDITION_CHANNELS), res, res, device="cuda").contiguous(
        memory_format=torch.channels_last)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = (model(data["albedo"], data["normal"], condition) - data["maps"]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def unet_comparison(res: int, batch: int, deadline: float) -> dict:
    def build():
        return create_models(ModelsConfig.full(), seed=0)["maps"]

    result = {"res": res, "batch": batch}
    plain = unet_maps_step(group_norm_twin(build()), res, batch)
    seconds, _ = timed_steps(plain, warmup=3, steps=15, deadline=deadline)
    result["groupnorm_eager_images_per_s"] = batch / seconds
    ours = build()
    ours_step = unet_maps_step(torch.compile(ours), res, batch)
    seconds, _ = timed_steps(ours_step, warmup=5, steps=15, deadline=deadline)
    result["batchnorm_compiled_images_per_s"] = batch / seconds
    result["speedup"] = result["batchnorm_compiled_images_per_s"] / result["groupnorm_eager_images_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--res", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--unet-batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=240, help="stop timing after this long in all")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures GPU training throughput")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), PEAK_BF16_FLOPS["H100"])
    results = {"device": name, "torch": torch.__version__, "peak_bf16_tflops": peak / 1e12}
    deadline = time.perf_counter() + args.seconds
    for part, run in (("phase_a0", lambda: phase_a0(args.res, args.batch, peak, deadline)),
                      ("unet_maps_bn_vs_gn", lambda: unet_comparison(args.res, args.unet_batch, deadline))):
        try:
            results[part] = run()
        except Exception as exc:  # keep the other part's figures
            results[part] = {"error": f"{type(exc).__name__}: {exc}"}
        torch.cuda.empty_cache()
        print(json.dumps({part: results[part]}, indent=1), flush=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
