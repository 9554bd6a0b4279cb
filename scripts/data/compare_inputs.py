"""Compare synthesised old-game inputs with real old-game diffuses (the table in docs/data.md).

    python scripts/data/compare_inputs.py LIB [--sheet docs/images/inputs_vs_real.png] [--size 128]

Real: the diffuses of the library's old-game sets (e.g. Red Eclipse). Synthesised: every ground-truth
material of the library's training split rendered by trainer.data.degrade (one seeded recipe each), and
the procedural materials rendered by trainer.data.synth.render_old_diffuse (the older fixed recipe).
Prints mean ± std of saturation, RMS contrast and low-frequency shading energy per group.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addon.engine.imageio import write_png  # noqa: E402
from trainer.data.common import periodic_resize  # noqa: E402
from trainer.data.degrade import input_statistics, render_old_game  # noqa: E402
from trainer.data.library import LibraryDataset  # noqa: E402
from trainer.data.synth import generate_set  # noqa: E402


def groups(lib: Path, size: int, limit: int) -> dict[str, list[np.ndarray]]:
    real = LibraryDataset(lib, split="train", role="old_game")
    truth = LibraryDataset(lib, split="train", role="truth")
    rng = np.random.default_rng(0)
    out = {"real old-game diffuses": [], "degrade.py on real truth": [], "synth.py procedural": []}
    for i in rng.permutation(len(real))[:limit]:
        out["real old-game diffuses"].append(periodic_resize(real.read_material(int(i))["diffuse"], size, size))
    for i in rng.permutation(len(truth))[:limit]:
        maps = {k: periodic_resize(v, size, size) for k, v in truth.read_material(int(i)).items() if k != "mask"}
        out["degrade.py on real truth"].append(render_old_game(maps, np.random.default_rng(int(i)))[0])
    out["synth.py procedural"] = [m.diffuse for m in generate_set(min(limit, 39), size=size, seed=5)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lib", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=200, help="at most this many images per group")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet: one row of 8 per group")
    args = parser.parse_args()
    images = groups(args.lib, args.size, args.limit)
    print(f"| group | n | saturation | contrast | low-frequency energy |\n|---|---|---|---|---|")
    for name, group in images.items():
        stats = [input_statistics(image) for image in group]
        cells = [f"{np.mean([s[k] for s in stats]):.3f} ± {np.std([s[k] for s in stats]):.3f}"
                 for k in ("saturation", "contrast", "low_frequency_energy")]
        print(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    if args.sheet:
        tile = 64
        rows = [np.concatenate([periodic_resize(g[i % len(g)], tile, tile) for i in range(8)], axis=1)
                for g in images.values() if g]
        write_png(args.sheet, np.concatenate(rows, axis=0))
        print(f"contact sheet: {args.sheet} (rows: {', '.join(images)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
