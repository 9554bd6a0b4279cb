"""Judge an exported model set against the two baselines on held-out materials.

`python -m trainer quality --models models/` runs the add-on's own engine (the exact code users run)
on procedural materials whose seeds the trainer never draws, and prints, per map, the error of the
models, of the identity baseline and of the classic-filters baseline, the ratio to the better baseline
(the product target is ≤ 0.5), and the BRDF-cosine of the whole set (target ≥ 0.99).

Errors: mean absolute error per map (albedo in sRGB, the others linear). Height has no absolute scale
(normal maps fix slopes only up to the artist's depth), so every height — predicted or baseline — is
first fitted to the truth by least squares (scale and offset) before its error is taken.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from trainer.baselines import classic_baseline, identity_baseline
from trainer.contract import MAP_CHANNELS
from trainer.data.common import encode_normal
from trainer.data.synth import generate_set

MAPS = ("albedo",) + MAP_CHANNELS
# generate_set(seed=HELD_OUT_SEED) draws material seeds HELD_OUT_SEED * 1_000_003 + i; training runs use
# small seeds, so these materials are never seen in training.
HELD_OUT_SEED = 9_973
TARGETS = {"ratio_to_best_baseline": 0.5, "brdf_cosine": 0.99}


def _fit_height(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    a = np.stack([prediction.ravel(), np.ones(prediction.size)], axis=1)
    coef, *_ = np.linalg.lstsq(a, truth.ravel(), rcond=None)
    return (a @ coef).reshape(truth.shape)


def map_errors(prediction: dict, truth: dict) -> dict[str, float]:
    errors = {}
    for name in MAPS:
        p = prediction[name].astype(np.float64)
        t = truth[name].astype(np.float64)
        if name == "height":
            p = _fit_height(p, t)
        errors[name] = float(np.abs(p - t).mean())
    return errors


def _truth_of(material) -> dict:
    return {"albedo": material.albedo, "roughness": material.roughness, "metallic": material.metallic,
            "ao": material.ao, "height": material.height, "normal": material.normal}


def evaluate_models(models_dir, count: int = 26, size: int = 256, provider: str = "cpu") -> dict:
    from addon.engine.brdf import brdf_cosine
    from addon.engine.pipeline import Converter

    converter = Converter(models_dir, provider=provider)
    totals = {method: {name: 0.0 for name in MAPS} for method in ("models", "identity", "classic")}
    cosines = {method: 0.0 for method in totals}
    for material in generate_set(count, size=size, seed=HELD_OUT_SEED):
        truth = _truth_of(material)
        # The inputs as a Skyrim set would give them: the old-game diffuse and a DirectX normal map.
        normal_pixels = encode_normal(material.normal, directx=True)
        result = converter.convert(material.diffuse, normal_pixels, normal_convention="directx")
        predictions = {
            "models": {name: np.asarray(getattr(result, name), np.float32) for name in MAPS},
            "identity": identity_baseline(material.diffuse),
            "classic": classic_baseline(material.diffuse, material.normal),
        }
        for method, prediction in predictions.items():
            for name, error in map_errors(prediction, truth).items():
                totals[method][name] += error / count
            cosines[method] += brdf_cosine({**prediction, "normal": material.normal}, truth) / count
    ratios = {name: totals["models"][name] / max(min(totals["identity"][name], totals["classic"][name]), 1e-9)
              for name in MAPS}
    return {"materials": count, "size": size, "l1": totals, "brdf_cosine": cosines,
            "ratio_to_best_baseline": ratios, "targets": TARGETS,
            "meets_targets": all(r <= TARGETS["ratio_to_best_baseline"] for r in ratios.values())
            and cosines["models"] >= TARGETS["brdf_cosine"]}


def format_report(report: dict) -> str:
    lines = [f"{report['materials']} held-out procedural materials at {report['size']} px",
             f"{'map':10s} {'models':>8s} {'identity':>9s} {'classic':>8s} {'ratio':>6s}  (target ratio <= 0.5)"]
    for name in MAPS:
        l1 = report["l1"]
        lines.append(f"{name:10s} {l1['models'][name]:8.4f} {l1['identity'][name]:9.4f} {l1['classic'][name]:8.4f}"
                     f" {report['ratio_to_best_baseline'][name]:6.2f}")
    c = report["brdf_cosine"]
    lines.append(f"BRDF-cosine  models {c['models']:.4f}  identity {c['identity']:.4f}  classic {c['classic']:.4f}"
                 "  (target >= 0.99)")
    lines.append("meets targets: " + ("yes" if report["meets_targets"] else "no"))
    return "\n".join(lines)


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser("quality", help="judge an exported model set against the baselines")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--count", type=int, default=26)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--record", action="store_true",
                        help="store the report in the set's manifest.json (provenance.quality)")
    parser.set_defaults(func=run_cli)


def record_in_manifest(models_dir: Path, report: dict) -> None:
    """provenance.quality of the manifest; the model files and their checksums stay as they are."""
    path = Path(models_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["provenance"]["quality"] = report
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


def run_cli(args) -> int:
    report = evaluate_models(args.models, count=args.count, size=args.size, provider=args.provider)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.record:
        record_in_manifest(args.models, report)
    return 0
