"""Judge an exported model set against the two baselines on materials it never saw.

`python -m trainer evaluate --models models/ --data LIB [--split heldout]` runs the add-on's own engine
(addon.engine.pipeline.Converter, the code users run) on the held-out materials of a library
(trainer/data/library.py): each material's old-game input (diffuse + DirectX normal with the old
specular alpha) is rendered from its ground truth by trainer.data.degrade with a seed fixed by the
material, then converted. `--data procedural` judges on procedural materials whose seeds training
never draws instead. In the same run, side by side:
  models    the exported set, through the engine;
  identity  albedo = diffuse, constants elsewhere (trainer/baselines.py);
  classic   delighting, cavity AO and Frankot–Chellappa height from the input normal.
Per map and per material: RMSE (albedo in sRGB, the others linear; height standardised per material
for prediction and truth, since a normal map fixes relief only up to a scale), SSIM, LPIPS when the
AlexNet weights are on disk, metallic IoU (> 0.5), and the BRDF-cosine of the whole set (GGX renders
of truth and prediction, both with the true normal, under fixed light/view pairs). A map the truth
lacks is skipped, never invented; atlases count only their used area. Each map's ratio to the better
baseline is the number to drive down (the product target is <= 0.5, and a BRDF-cosine >= 0.99).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from addon.engine.brdf import cosine_of, render_ggx, render_products
from addon.engine.priors import standardise
from trainer import metrics
from trainer.baselines import classic_baseline, identity_baseline
from trainer.checkpoint import write_json_atomic
from trainer.contract import MAP_CHANNELS
from trainer.data.common import decode_normal, encode_normal, periodic_resize
from trainer.data.mixing import stable_int

MAPS = ("albedo",) + MAP_CHANNELS
METHODS = ("models", "identity", "classic")
BRDF_MAPS = ("albedo", "normal", "roughness", "metallic")
# generate_set(seed=PROCEDURAL_SEED) draws material seeds PROCEDURAL_SEED * 1_000_003 + i; training runs
# use small seeds, so these materials are never seen in training.
PROCEDURAL_SEED = 9_973
TARGETS = {"ratio_to_best_baseline": 0.5, "brdf_cosine": 0.99}
DEFAULT_SIZE = 256


@dataclass
class Case:
    """One material to judge: its truth (maps it has), the old-game inputs and the used-area mask."""

    name: str
    truth: dict            # albedo (sRGB), normal (OpenGL), and any of roughness, metallic, ao, height
    diffuse: np.ndarray    # HxWx3 sRGB
    normal_pixels: np.ndarray  # HxWx3|4 DirectX pixels in [0, 1], alpha = old specular mask
    mask: np.ndarray | None = None


def library_cases(lib, split: str = "heldout", size: int = DEFAULT_SIZE, seed: int = 0):
    """The truth materials of a library split, resized whole to size x size, with their inputs."""
    from trainer.data.degrade import render_old_game
    from trainer.data.library import LibraryDataset

    dataset = LibraryDataset(lib, split=split, role="truth")
    for i in range(len(dataset)):
        stored = dataset.read_material(i)
        not_truth = dataset.not_truth(i, stored)  # judged on the stored material, as training judges it
        maps = {k: periodic_resize(v, size, size) for k, v in stored.items()}
        maps["normal"] = maps["normal"] / np.linalg.norm(maps["normal"], axis=-1, keepdims=True).clip(1e-6)
        mask = maps.pop("mask", None)
        rng = np.random.default_rng(stable_int(seed, dataset.material_key(i)))
        diffuse, normal_pixels = render_old_game(maps, rng)
        for name in not_truth:  # judged as a missing map, exactly as training skips it
            del maps[name]
        yield Case(dataset.material_key(i), maps, diffuse, normal_pixels, None if mask is None else mask > 0.5)


def seeded_cases(lib, split: str, size: int, seeds: range):
    """library_cases for each input seed in turn; with several seeds each case is named "<material> @<seed>"."""
    for seed in seeds:
        for case in library_cases(lib, split, size, seed):
            yield replace(case, name=f"{case.name} @{seed}") if len(seeds) > 1 else case


def procedural_cases(count: int = 26, size: int = DEFAULT_SIZE):
    """Procedural materials training never draws, with the fixed old-game rendering of trainer.data.synth."""
    from trainer.data.synth import generate_set

    for m in generate_set(count, size=size, seed=PROCEDURAL_SEED):
        truth = {"albedo": m.albedo, "normal": m.normal, "roughness": m.roughness, "metallic": m.metallic,
                 "ao": m.ao, "height": m.height}
        pixels = np.concatenate([encode_normal(m.normal, directx=True), m.specular[..., None]], axis=-1)
        yield Case(m.name, truth, m.diffuse, pixels)


def _tensor(image: np.ndarray) -> torch.Tensor:
    image = np.asarray(image, np.float32)
    image = image[..., None] if image.ndim == 2 else image
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def map_scores(prediction: dict, case: Case, lpips=None) -> dict[str, dict[str, float]]:
    """metric -> map -> value for the maps the truth has (RMSE, SSIM, LPIPS if available, IoU)."""
    scores: dict[str, dict[str, float]] = {"rmse": {}, "ssim": {}}
    if lpips is not None:
        scores["lpips"] = {}
    mask = case.mask
    for name in MAPS:
        if case.truth.get(name) is None:
            continue
        p = np.asarray(prediction[name], np.float32)
        t = np.asarray(case.truth[name], np.float32)
        if name == "height":
            p, t = standardise(p, mask), standardise(t, mask)
        if mask is not None:  # unused atlas area: prediction set to the truth, so it adds no error
            where = ~mask if p.ndim == 2 else ~mask[..., None].repeat(p.shape[-1], -1)
            p = np.where(where, t, p)
        squared = (p - t) ** 2
        scores["rmse"][name] = float(np.sqrt(squared.sum() / max(1, (mask.sum() * (p.size // mask.size)))
                                             if mask is not None else squared.mean()))
        pt, tt = _tensor(p), _tensor(t)
        if name == "height":  # SSIM's constants assume values in [0, 1]
            lo, hi = min(p.min(), t.min()), max(p.max(), t.max())
            pt, tt = (pt - lo) / max(hi - lo, 1e-6), (tt - lo) / max(hi - lo, 1e-6)
        scores["ssim"][name] = float(metrics.ssim(pt, tt)[0])
        if lpips is not None and name != "height":
            scores["lpips"][name] = float(lpips(pt.clamp(0, 1), tt.clamp(0, 1))[0])
    if case.truth.get("metallic") is not None:
        truth_metal, pred_metal = case.truth["metallic"] > 0.5, np.asarray(prediction["metallic"]) > 0.5
        if mask is not None:
            truth_metal, pred_metal = truth_metal & mask, pred_metal & mask
        if (truth_metal | pred_metal).any():  # IoU of two empty masks says nothing
            scores["iou"] = {"metallic": float(metrics.iou(torch.from_numpy(pred_metal)[None],
                                                           torch.from_numpy(truth_metal)[None])[0])}
    return scores


def _with_true_normal(case: Case, maps: dict) -> dict:
    """The BRDF maps of a prediction (or the truth), shaded with the true normal."""
    return {name: case.truth["normal"] if name == "normal" else np.asarray(maps[name], np.float32)
            for name in BRDF_MAPS}


def evaluate(models_dir, cases, provider: str = "cpu", lpips_weights=None, sheet=None,
             without_specular: bool = False) -> dict:
    """Run models and baselines on every case (see module doc); the report is plain JSON data.
    without_specular: the models get the normal map without its alpha (the ablation of that input)."""
    from addon.engine.pipeline import Converter

    converter = Converter(models_dir, provider=provider)
    lpips = metrics.Lpips(lpips_weights)
    per_material, brdf_materials, brdf_products = [], 0, {m: np.zeros(3) for m in METHODS}
    sheet_rows = []
    for case in cases:
        normal_pixels = case.normal_pixels[..., :3] if without_specular else case.normal_pixels
        result = converter.convert(case.diffuse, normal_pixels, normal_convention="directx")
        input_normal = decode_normal(case.normal_pixels[..., :3], directx=True)
        predictions = {
            "models": {name: np.asarray(getattr(result, name), np.float32) for name in MAPS},
            "identity": identity_baseline(case.diffuse),
            "classic": classic_baseline(case.diffuse, input_normal),
        }
        per_material.append({"material": case.name, "maps": sorted(k for k in MAPS if case.truth.get(k) is not None),
                             **{m: map_scores(p, case, lpips if lpips.available else None)
                                for m, p in predictions.items()}})
        if all(case.truth.get(k) is not None for k in BRDF_MAPS):
            brdf_materials += 1
            truth = _with_true_normal(case, case.truth)
            per_material[-1]["brdf_cosine"] = {}
            for method, prediction in predictions.items():
                products = render_products(_with_true_normal(case, prediction), truth)
                brdf_products[method] += products  # the set's cosine: all materials side by side
                per_material[-1]["brdf_cosine"][method] = cosine_of(products)
        if sheet is not None:
            sheet_rows.append(_sheet_row(case, predictions["models"]))
    if not per_material:
        raise ValueError("no materials to evaluate")
    report = summarise(per_material)
    report["lpips"] = "computed" if lpips.available else lpips.reason
    if brdf_materials:
        report["brdf_cosine"] = {m: cosine_of(products) for m, products in brdf_products.items()}
        # The set's cosine weighs materials by their rendered energy (glossy highlights dominate);
        # the mean of the per-material cosines weighs each material once, as the RMSE means do.
        report["brdf_cosine_material_mean"] = {
            m: float(np.mean([row["brdf_cosine"][m] for row in per_material if "brdf_cosine" in row]))
            for m in METHODS}
    report["brdf_materials"] = brdf_materials
    if brdf_materials:
        report["meets_targets"] = bool(
            all(r <= TARGETS["ratio_to_best_baseline"] for r in report["ratio_to_best_baseline"].values())
            and report["brdf_cosine"]["models"] >= TARGETS["brdf_cosine"])
    report["targets"] = TARGETS
    if sheet is not None:
        _write_sheet(sheet, sheet_rows)
    return report


def summarise(per_material: list[dict]) -> dict:
    """Means over materials per method/metric/map (each over the materials that have the map), and
    each map's RMSE ratio of the models to the better baseline."""
    means: dict = {}
    for method in METHODS:
        means[method] = {}
        for metric in ("rmse", "ssim", "lpips", "iou"):
            values: dict[str, list[float]] = {}
            for row in per_material:
                for name, value in row[method].get(metric, {}).items():
                    values.setdefault(name, []).append(value)
            if values:
                means[method][metric] = {name: float(np.mean(v)) for name, v in values.items()}
    counts = {name: sum(name in row["maps"] for row in per_material) for name in MAPS}
    ratios = {}
    for name, count in counts.items():
        if count:
            best = min(means["identity"]["rmse"][name], means["classic"]["rmse"][name])
            ratios[name] = means["models"]["rmse"][name] / max(best, 1e-9)
    return {"materials": len(per_material), "map_counts": counts, "means": means,
            "ratio_to_best_baseline": ratios, "per_material": per_material}


def material_means(cases: list[dict]) -> list[dict]:
    """One row per material from its seeded cases ("<material> @<seed>"): each RMSE and the
    BRDF-cosine averaged over the material's seeds, in the rows' order."""
    groups: dict[str, list[dict]] = {}
    for row in cases:
        groups.setdefault(row["material"].rsplit(" @", 1)[0], []).append(row)
    rows = []
    for material, group in groups.items():
        row = {"material": material, "maps": group[0]["maps"]}
        for method in METHODS:
            row[method] = {"rmse": {n: float(np.mean([g[method]["rmse"][n] for g in group]))
                                    for n in group[0][method]["rmse"]}}
        if "brdf_cosine" in group[0]:
            row["brdf_cosine"] = {m: float(np.mean([g["brdf_cosine"][m] for g in group])) for m in METHODS}
        rows.append(row)
    return rows


def format_report(report: dict, per_material: bool = False) -> str:
    means = report["means"]
    unit = "materials" if report.get("input_seeds", 1) == 1 else f"cases ({report['input_seeds']} input seeds each)"
    lines = [f"{report['materials']} {unit} ({report.get('data', '')})",
             f"{'map':9s} {'n':>3s} | {'RMSE models':>11s} {'identity':>8s} {'classic':>8s} {'ratio':>6s} | "
             f"{'SSIM models':>11s} {'identity':>8s} {'classic':>8s}"]
    for name in MAPS:
        if name not in report["ratio_to_best_baseline"]:
            lines.append(f"{name:9s} {0:3d} | (no truth)")
            continue
        rmse = [means[m]["rmse"][name] for m in METHODS]
        ssim = [means[m]["ssim"][name] for m in METHODS]
        lines.append(f"{name:9s} {report['map_counts'][name]:3d} | {rmse[0]:11.4f} {rmse[1]:8.4f} {rmse[2]:8.4f} "
                     f"{report['ratio_to_best_baseline'][name]:6.2f} | {ssim[0]:11.4f} {ssim[1]:8.4f} {ssim[2]:8.4f}")
    if "iou" in means["models"]:
        iou = [means[m].get("iou", {}).get("metallic", float("nan")) for m in METHODS]
        lines.append(f"metallic IoU  models {iou[0]:.4f}  identity {iou[1]:.4f}  classic {iou[2]:.4f}")
    if "brdf_cosine" in report:
        c = report["brdf_cosine"]
        lines.append(f"BRDF-cosine ({report['brdf_materials']} materials with albedo, normal, roughness, metallic)"
                     f"  models {c['models']:.4f}  identity {c['identity']:.4f}  classic {c['classic']:.4f}")
        c = report["brdf_cosine_material_mean"]
        lines.append(f"BRDF-cosine, mean of the materials' own"
                     f"  models {c['models']:.4f}  identity {c['identity']:.4f}  classic {c['classic']:.4f}")
    lines.append(f"LPIPS: {report['lpips']}")
    if "meets_targets" in report:
        lines.append("meets targets (ratio <= 0.5 on every map, BRDF-cosine >= 0.99): "
                     + ("yes" if report["meets_targets"] else "no"))
    if per_material:
        seeds = report.get("input_seeds", 1)
        lines.append("per material RMSE (models / identity / classic; ! = models worse than the better baseline"
                     + (f"; means over the {seeds} input seeds):" if seeds > 1 else "):"))
        for row in (material_means(report["per_material"]) if seeds > 1 else report["per_material"]):
            rmse = {m: row[m]["rmse"] for m in METHODS}
            cells = [f"{n} {rmse['models'][n]:.3f}/{rmse['identity'][n]:.3f}/{rmse['classic'][n]:.3f}"
                     + ("!" if rmse["models"][n] > min(rmse["identity"][n], rmse["classic"][n]) else "")
                     for n in MAPS if n in rmse["models"]]
            if "brdf_cosine" in row:
                c = row["brdf_cosine"]
                cells.append(f"brdf-cos {c['models']:.3f}/{c['identity']:.3f}/{c['classic']:.3f}"
                             + ("!" if c["models"] < max(c["identity"], c["classic"]) else ""))
            lines.append(f"  {row['material']}: " + "  ".join(cells))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ contact sheet

_LIGHT, _VIEW = (0.4, 0.3, 0.87), (0.0, 0.0, 1.0)
SHEET_TILE = 128


def _sheet_row(case: Case, prediction: dict) -> list[np.ndarray]:
    """Input diffuse, then truth and prediction of albedo, roughness, metallic, AO and height (black
    where the truth lacks the map; heights standardised), then the GGX renders of truth and prediction."""
    def rgb(image):
        image = np.asarray(image, np.float32)
        return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]

    def shown(name, maps):
        if case.truth.get(name) is None:
            return np.zeros(case.diffuse.shape[:2], np.float32)
        if name == "height":
            return np.clip(0.5 + 0.2 * standardise(np.asarray(maps[name], np.float32), case.mask), 0, 1)
        return maps[name]

    def render(maps):
        rough = maps.get("roughness") if maps.get("roughness") is not None else np.full(case.diffuse.shape[:2], 0.7)
        metal = maps.get("metallic") if maps.get("metallic") is not None else np.zeros(case.diffuse.shape[:2])
        return np.clip(render_ggx(maps["albedo"], case.truth["normal"], rough, metal, _LIGHT, _VIEW) * 2.5, 0, 1) ** (1 / 2.2)

    tiles = [case.diffuse]
    for name in MAPS:
        tiles += [shown(name, case.truth), shown(name, prediction)]
    tiles += [render(case.truth), render({**prediction, "normal": case.truth["normal"]})]
    return [periodic_resize(rgb(t), SHEET_TILE, SHEET_TILE) for t in tiles]


def _write_sheet(path, rows: list[list[np.ndarray]]) -> None:
    from addon.engine.imageio import write_png
    if rows:
        write_png(path, np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0))


# ------------------------------------------------------------------------------------------ command line

def register_cli(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="judge an exported model set against both baselines")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data", required=True,
                        help="a material library (python -m trainer data import), or 'procedural'")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"))
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="materials are judged at SIZE x SIZE")
    parser.add_argument("--count", type=int, default=26, help="procedural materials (with --data procedural)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the old-game inputs rendered per material")
    parser.add_argument("--seeds", type=int, default=1,
                        help="judge each material on this many input renderings (seeds SEED, SEED+1, ...): one "
                             "draw of the degradation can flatter or sink a glossy or metal material")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--lpips-weights", type=Path, help="AlexNet weights for LPIPS (default: torch hub cache)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG (input, truth, prediction, renders)")
    parser.add_argument("--without-specular", action="store_true",
                        help="ablation: convert with the normal map's alpha (the old specular mask) removed")
    parser.add_argument("--per-material", action="store_true", help="also print each material's errors")
    parser.add_argument("--record", action="store_true",
                        help="store the report in the set's manifest.json (provenance.quality)")
    parser.set_defaults(func=run_cli)


def record_in_manifest(models_dir: Path, report: dict) -> None:
    """provenance.quality of the manifest; the model files and their checksums stay as they are."""
    path = Path(models_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["provenance"]["quality"] = report
    write_json_atomic(path, manifest)


def run_cli(args) -> int:
    if args.data == "procedural":
        cases, described = procedural_cases(args.count, args.size), f"procedural, seed {PROCEDURAL_SEED}"
    else:
        seeds = range(args.seed, args.seed + max(1, args.seeds))
        cases = seeded_cases(args.data, args.split, args.size, seeds)
        described = f"library {args.data}, split {args.split}, " + (
            f"input seeds {seeds.start}-{seeds.stop - 1}" if len(seeds) > 1 else f"input seed {args.seed}")
    report = evaluate(args.models, cases, provider=args.provider, lpips_weights=args.lpips_weights, sheet=args.sheet,
                      without_specular=args.without_specular)
    if args.data != "procedural":
        report["input_seeds"] = len(seeds)
    report["data"] = f"{described}, {args.size} px" + (", models without the specular alpha" if args.without_specular
                                                       else "")
    print(format_report(report, per_material=args.per_material))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.record:
        summary = {k: v for k, v in report.items() if k != "per_material"}
        record_in_manifest(args.models, summary)
    return 0
