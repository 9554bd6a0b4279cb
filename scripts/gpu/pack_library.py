"""Pack a material library's TRAINING split into a compact shard that fits a device machine's upload.

    python scripts/gpu/pack_library.py LIB OUT [--max-side 192] [--old-game-max-side 128]
                                               [--old-game-limit 120] [--budget-mib 24]

OUT is a library of its own (`LibraryDataset(OUT, split="train")` and `python -m trainer run --library
OUT` read it): `index.json` holds only the training split's materials (no held-out material is listed
or copied, so its `heldout` list is empty and `packed` says how many were left out), and each
`materials/<source>/<name>/` folder keeps its `material.json` (licence, licence file, source files with
their sha256, normal convention) with `size` set to the packed size and `packed_from` recording the
stored one. Maps are shrunk with the trainer's wrap-safe resize (`trainer.data.common.periodic_resize`;
normals as unit vectors, renormalised) so the longer side is at most --max-side (ground truth) or
--old-game-max-side (old-game sets); nothing is enlarged. Every ground-truth material of the training
split is kept; of the old-game sets (700 Red Eclipse sets, most of the library's bytes) at most
--old-game-limit are kept (0: all): those with a height map first (their only training target), each
group in a fixed hash order of the id (`trainer.data.mixing.stable_int`), so the choice is repeatable. PNGs are
written at the highest zlib level: 8-bit where the stored map is 8-bit, height always 16-bit; colour maps
lose an alpha channel training never reads. With --two-channel-normals (the default) normal maps are
stored with blue 0, the BC5 layout the engine's decoder recognises and rebuilds Z for (unit vectors,
facing out), which saves about a third of their bytes.

Prints per-source counts and the total size, and exits with status 1 (and removes OUT) when the shard
would exceed --budget-mib.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from addon.engine.imageio import encode_png, read_image  # noqa: E402
from trainer.data.common import as_gray, as_rgb, decode_normal, encode_normal, periodic_resize  # noqa: E402
from trainer.data.library import INDEX_FILE, MATERIAL_FILE  # noqa: E402
from trainer.data.mixing import stable_int  # noqa: E402

MIB = 1 << 20
DEFAULT_MAX_SIDE = 192
DEFAULT_OLD_GAME_MAX_SIDE = 128
DEFAULT_OLD_GAME_LIMIT = 120
DEFAULT_BUDGET_MIB = 24.0


class OverBudget(Exception):
    pass


def packed_shape(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The stored (h, w) with its longer side at most max_side (never enlarged, at least 1 px)."""
    scale = min(1.0, max_side / max(shape))
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _png_8(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG", optimize=True)  # zlib level 9, best filter
    return buffer.getvalue()


def _source_bits(path: Path) -> int:
    with Image.open(path) as image:
        return 16 if image.mode in ("I;16", "I;16B", "I;16L", "I") else 8


def encode_map(name: str, image: np.ndarray, bits: int) -> bytes:
    """One map as compact PNG bytes (values in [0, 1])."""
    if bits == 16:
        return encode_png(image, bits=16)
    return _png_8(np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def pack_material(src: Path, dst: Path, entry: dict, max_side: int, two_channel_normals: bool) -> tuple[int, list[int]]:
    """Write one material's maps (and mask) shrunk into dst; returns (bytes written, packed [h, w])."""
    names = list(entry["maps"]) + (["mask"] if (src / "mask.png").is_file() else [])
    dst.mkdir(parents=True, exist_ok=True)
    written, shape = 0, None
    for name in names:
        path = src / f"{name}.png"
        image = read_image(path)
        if name == "normal":
            pixels = as_rgb(image)
            vectors = decode_normal(pixels, directx=False)
            target = packed_shape(vectors.shape[:2], max_side)
            if target != vectors.shape[:2]:
                vectors = periodic_resize(vectors, *target)
                vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True).clip(1e-6)
            pixels = encode_normal(vectors, directx=False)
            if two_channel_normals:
                pixels = pixels.copy()
                pixels[..., 2] = 0.0  # BC5 layout: the decoder rebuilds Z (addon.engine.normalmaps)
            data = encode_map(name, pixels, 8)
        else:
            values = as_rgb(image) if name in ("albedo", "diffuse") else as_gray(image)
            target = packed_shape(values.shape[:2], max_side)
            if target != values.shape[:2]:
                values = periodic_resize(values, *target)
            data = encode_map(name, values, 16 if name == "height" else _source_bits(path))
        shape = shape or list(target)
        (dst / f"{name}.png").write_bytes(data)
        written += len(data)
    return written, shape


def choose_old_game(entries: dict, limit: int) -> set[str]:
    """The old-game ids kept: with a height map first, each group in stable hash order; limit 0 keeps all."""
    ids = sorted(entries, key=lambda mid: ("height" not in entries[mid]["maps"], stable_int("pack", mid), mid))
    return set(ids if limit <= 0 else ids[:limit])


def pack(lib: Path, out: Path, *, max_side: int = DEFAULT_MAX_SIDE, old_game_max_side: int = DEFAULT_OLD_GAME_MAX_SIDE,
         old_game_limit: int = DEFAULT_OLD_GAME_LIMIT, budget_mib: float = DEFAULT_BUDGET_MIB, two_channel_normals: bool = True, log=print) -> dict:
    """Pack LIB's training split into OUT; returns the summary. Raises OverBudget (OUT removed) when the
    shard would exceed budget_mib, ValueError for a bad LIB or a non-empty OUT."""
    lib, out = Path(lib), Path(out)
    index_path = lib / INDEX_FILE
    if not index_path.is_file():
        raise ValueError(f"'{lib}' is not a material library (no {INDEX_FILE}).")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"'{out}' exists and is not empty; give a new folder (or remove it first).")
    if out.resolve() == lib.resolve() or lib.resolve() in out.resolve().parents:
        raise ValueError("OUT must not be LIB or inside it (the library is read, never written).")
    index = json.loads(index_path.read_text())
    heldout = set(index.get("heldout", ()))
    train = {mid: m for mid, m in sorted(index["materials"].items())
             if m.get("split") == "train" and mid not in heldout}
    left_out = len(index["materials"]) - len(train)
    old_game = {mid: m for mid, m in train.items() if m["role"] == "old_game"}
    kept = choose_old_game(old_game, old_game_limit)
    old_game_left_out = len(old_game) - len(kept)
    train = {mid: m for mid, m in train.items() if m["role"] != "old_game" or mid in kept}
    budget = int(budget_mib * MIB)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    total, per_source, per_source_bytes = 0, Counter(), Counter()
    materials = {}
    try:
        for n, (mid, entry) in enumerate(train.items(), 1):
            side = old_game_max_side if entry["role"] == "old_game" else max_side
            written, shape = pack_material(lib / "materials" / mid, out / "materials" / mid, entry, side,
                                           two_channel_normals)
            packed = dict(entry, size=shape, packed_from={"size": entry.get("size"), "max_side": side,
                                                           "two_channel_normal": two_channel_normals and "normal" in entry["maps"]})
            record = {k: v for k, v in packed.items() if k != "split"}  # material.json carries no split
            data = json.dumps(record, indent=1, sort_keys=True).encode()
            (out / "materials" / mid / MATERIAL_FILE).write_bytes(data)
            materials[mid] = packed
            total += written + len(data)
            per_source[entry["source"]] += 1
            per_source_bytes[entry["source"]] += written + len(data)
            if total > budget:
                raise OverBudget(
                    f"the shard passed its budget of {budget_mib:g} MiB after {n} of {len(train)} materials "
                    f"({total / MIB:.1f} MiB); pass a smaller --max-side ({max_side}), --old-game-max-side "
                    f"({old_game_max_side}) or --old-game-limit ({old_game_limit}), or a larger --budget-mib if the upload allows it.")
            if n % 100 == 0:
                log(f"  {n}/{len(train)} materials, {total / MIB:.1f} MiB, {time.time() - started:.0f} s")
        new_index = {k: v for k, v in index.items() if k not in ("materials", "heldout")}
        new_index.update(materials=materials, heldout=[], packed={
            "from": str(lib), "heldout_left_out": left_out, "max_side": max_side,
            "old_game_max_side": old_game_max_side, "old_game_limit": old_game_limit,
            "old_game_left_out": old_game_left_out, "two_channel_normals": two_channel_normals,
            "resize": "trainer.data.common.periodic_resize",
            "packed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        data = json.dumps(new_index, indent=1, sort_keys=True).encode()
        total += len(data)
        if total > budget:
            raise OverBudget(f"the shard is {total / MIB:.1f} MiB, over its budget of {budget_mib:g} MiB; pass a "
                             f"smaller --max-side, --old-game-max-side or --old-game-limit, or a larger --budget-mib.")
        (out / INDEX_FILE).write_bytes(data)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    summary = {"materials": len(materials), "heldout_left_out": left_out, "old_game_left_out": old_game_left_out,
               "bytes": total,
               "mib": round(total / MIB, 2), "seconds": round(time.time() - started, 1),
               "per_source": {s: {"materials": per_source[s], "mib": round(per_source_bytes[s] / MIB, 2)}
                              for s in sorted(per_source)}}
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lib", type=Path, help="material library (index.json + materials/); only read")
    parser.add_argument("out", type=Path, help="new folder for the shard")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"longest side of ground-truth materials (default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--old-game-max-side", type=int, default=DEFAULT_OLD_GAME_MAX_SIDE,
                        help=f"longest side of old-game sets (default {DEFAULT_OLD_GAME_MAX_SIDE})")
    parser.add_argument("--old-game-limit", type=int, default=DEFAULT_OLD_GAME_LIMIT,
                        help=f"keep at most this many old-game sets, height first (default {DEFAULT_OLD_GAME_LIMIT}; 0: all)")
    parser.add_argument("--budget-mib", type=float, default=DEFAULT_BUDGET_MIB,
                        help=f"fail when the shard would exceed this (default {DEFAULT_BUDGET_MIB:g})")
    parser.add_argument("--three-channel-normals", dest="two_channel_normals", action="store_false",
                        help="store the normals' blue channel too (default: BC5 layout, Z rebuilt on reading)")
    args = parser.parse_args(argv)
    if args.max_side < 16 or args.old_game_max_side < 16:
        parser.error("--max-side and --old-game-max-side must be at least 16")
    try:
        summary = pack(args.lib, args.out, max_side=args.max_side, old_game_max_side=args.old_game_max_side,
                       old_game_limit=args.old_game_limit, budget_mib=args.budget_mib, two_channel_normals=args.two_channel_normals)
    except OverBudget as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for source, row in summary["per_source"].items():
        print(f"{source:28s} {row['materials']:4d} materials {row['mib']:7.2f} MiB")
    print(f"{'total':28s} {summary['materials']:4d} materials {summary['mib']:7.2f} MiB "
          f"(budget {args.budget_mib:g} MiB; left out: {summary['heldout_left_out']} held-out materials, "
          f"{summary['old_game_left_out']} old-game sets over --old-game-limit; "
          f"{summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
