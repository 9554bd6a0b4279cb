"""How much height error block compression of the normal map causes (the "Height" notes of docs/quality.md).

    python scripts/data/height_headroom.py LIB [--split train] [--size 256]

For every ground-truth material of a library split, the normal map is encoded as an old game ships it
(DirectX pixels, 8 bits), then block-compressed in each format trainer.data.degrade uses for normals. Each version is
integrated (Frankot-Chellappa, as the height prior and the classic baseline do) and compared with the
integral of the clean normal, the height target of training (trainer.data.sample.consistent_height):
RMSE of the standardised heights, mean and median over the materials. Where the material has a height
that agrees with its normal (the truth rules), the same for the true height.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addon.engine.priors import integrate_normals, standardise  # noqa: E402
from trainer.data.common import decode_normal, encode_normal, periodic_resize  # noqa: E402
from trainer.data.degrade import bc_roundtrip  # noqa: E402
from trainer.data.library import LibraryDataset  # noqa: E402


def height_rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((standardise(a) - standardise(b)) ** 2).mean()))


def shipped_normals(normal: np.ndarray) -> dict[str, np.ndarray]:
    """The clean OpenGL normal as 8-bit DirectX pixels, and those block-compressed, decoded back (BC5's
    Z rebuilt by the decoder, as conversion does)."""
    pixels = np.round(encode_normal(normal, directx=True) * 255) / 255
    versions = {"8-bit": decode_normal(pixels, directx=True)}
    for block_format in ("bc1", "bc7", "bc5"):
        versions[block_format.upper()] = decode_normal(bc_roundtrip(pixels, block_format), directx=True)
    return versions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lib", type=Path)
    parser.add_argument("--split", default="train", choices=("train", "heldout"))
    parser.add_argument("--size", type=int, default=256, help="materials resized whole to this (evaluate's 256)")
    args = parser.parse_args()
    dataset = LibraryDataset(args.lib, split=args.split, role="truth")
    to_target: dict[str, list[float]] = {}
    to_truth: dict[str, list[float]] = {}
    for i in range(len(dataset)):
        stored = dataset.read_material(i)
        not_truth = dataset.not_truth(i, stored)
        maps = {k: periodic_resize(v, args.size, args.size) for k, v in stored.items() if k != "mask"}
        normal = maps["normal"] / np.linalg.norm(maps["normal"], axis=-1, keepdims=True).clip(1e-6)
        target = integrate_normals(normal)
        if target.std() < 1e-6:  # a flat normal: no height to compare
            continue
        versions = {"clean": normal, **shipped_normals(normal)}
        for name, version in versions.items():
            integrated = integrate_normals(version)
            to_target.setdefault(name, []).append(height_rmse(integrated, target))
            if maps.get("height") is not None and "height" not in not_truth:
                to_truth.setdefault(name, []).append(height_rmse(integrated, maps["height"]))
    print(f"{args.split} split of {args.lib}, {args.size} px: RMSE of standardised heights, "
          "integrated normal -> reference")
    for label, table in (("integral of the clean normal", to_target), ("true height", to_truth)):
        for name, values in table.items():
            print(f"  {label:<29} {name:<12} n={len(values):<4} mean {np.mean(values):.4f}  "
                  f"median {np.median(values):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
