"""The validation check's cost, and the figures behind docs/validation.md's thresholds.

    python benchmarks/bench_validation.py            # time the check on a 1K set (target <= 0.5 s)
    python benchmarks/bench_validation.py --measure  # score shipped-model conversions and broken ones

--measure converts examples/ and procedural materials (trainer/data/synth.py, their old-game
diffuse and specular mask) with the shipped models, then breaks each conversion three ways
(metallic = 1, albedo black, height inverted) and prints score, verdict and flags for all.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from addon.engine import validation  # noqa: E402

TARGET_SECONDS = 0.5


def _synthetic_result(size: int):
    """A converted set's shape and dtypes (float16 albedo/normal as the pipeline returns)."""
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(size, size, 3)) * 0.2
    normal[..., 2] = 1.0
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    plane = lambda: rng.random((size, size), dtype=np.float32)  # noqa: E731
    return dict(albedo=rng.random((size, size, 3), dtype=np.float32).astype(np.float16),
                normal=normal.astype(np.float16), roughness=plane(), metallic=plane(), height=plane(),
                material_scores={"metal": 0.1}), rng.random((size, size, 3), dtype=np.float32), \
        rng.random((size, size, 4), dtype=np.float32)


def bench(size: int = 1024, repeats: int = 5) -> None:
    fields, diffuse, normal = _synthetic_result(size)
    result = type("Result", (), fields)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        validation.validate(validation.original_preview(diffuse, normal), result)
        times.append(time.perf_counter() - started)
    best = min(times)
    print(f"validation of a {size}x{size} set: best {best:.3f} s, median {np.median(times):.3f} s "
          f"of {repeats} (target <= {TARGET_SECONDS} s): {'OK' if best <= TARGET_SECONDS else 'TOO SLOW'}")


def _cases():
    """(name, diffuse, encoded DirectX normal with the specular mask in alpha, is_metal, the true
    PBR maps or None)."""
    from addon.engine.imageio import read_image
    from trainer.data.synth import generate_set

    for diffuse_path in sorted((ROOT / "examples").glob("*_example.dds")):
        normal_path = diffuse_path.with_name(diffuse_path.stem + "_n.dds")
        yield (diffuse_path.stem, read_image(diffuse_path), read_image(normal_path),
               diffuse_path.stem.startswith("metal"), None)
    for material in generate_set(13, size=512, seed=3):
        directx = material.normal * np.array([1.0, -1.0, 1.0], np.float32)
        encoded = np.concatenate([(directx + 1.0) / 2.0, material.specular[..., None]], axis=-1)
        yield material.name, material.diffuse, encoded.astype(np.float32), material.category == "metal", material


def _library_cases(library: Path, size: int = 512):
    """The held-out materials of a real library (`python -m trainer data import`, read only), each
    given the old-game diffuse and specular mask trainer/data/synth.py renders for its maps."""
    import json

    from PIL import Image

    from addon.engine.imageio import read_image
    from trainer.data.common import decode_normal
    from trainer.data.synth import Material, old_specular_mask, render_old_diffuse

    def plane(folder, name, default):
        path = folder / f"{name}.png"
        if not path.is_file():
            return np.full((size, size), default, np.float32)
        return np.asarray(Image.fromarray(read_image(path)[..., 0]).resize((size, size)), np.float32)

    for material_id in json.loads((library / "index.json").read_text())["heldout"]:
        folder = library / "materials" / material_id
        albedo = np.stack([np.asarray(Image.fromarray(c).resize((size, size)), np.float32)
                           for c in np.moveaxis(read_image(folder / "albedo.png")[..., :3], -1, 0)], -1)
        rgb = np.stack([np.asarray(Image.fromarray(c).resize((size, size)), np.float32)
                        for c in np.moveaxis(read_image(folder / "normal.png")[..., :3], -1, 0)], -1)
        normal = decode_normal(rgb, directx=False)
        material = Material(material_id, "unknown", (), albedo, normal, plane(folder, "roughness", 0.5),
                            plane(folder, "metallic", 0.0), plane(folder, "ao", 1.0), plane(folder, "height", 0.5))
        diffuse = render_old_diffuse(material, np.random.default_rng(0), bc1=False)
        directx = normal * np.array([1.0, -1.0, 1.0], np.float32)
        encoded = np.concatenate([(directx + 1.0) / 2.0, old_specular_mask(material)[..., None]], axis=-1)
        is_metal = float(material.metallic.mean()) > 0.3
        yield material_id, diffuse, encoded.astype(np.float32), is_metal, None


def measure(library: Path | None = None) -> None:
    from addon.engine.pipeline import Converter

    converter = Converter(provider="cpu")
    print(f"{'set':28s} {'variant':16s} {'score':>6s} verdict flags")
    for name, diffuse, normal, is_metal, truth in (_library_cases(library) if library else _cases()):
        original = validation.original_preview(diffuse, normal)
        result = converter.convert(diffuse, normal, normal_convention="directx")
        variants = {"converted": result,
                    "albedo black": dataclasses.replace(result, albedo=np.zeros_like(result.albedo)),
                    "height inverted": dataclasses.replace(result, height=1.0 - result.height)}
        if truth is not None:  # the procedural material's own maps: a perfect conversion
            variants["ground truth"] = dataclasses.replace(
                result, albedo=truth.albedo, normal=truth.normal, roughness=truth.roughness,
                metallic=truth.metallic, height=truth.height)
        if not is_metal:
            variants["metallic = 1"] = dataclasses.replace(result, metallic=np.ones_like(result.metallic))
        for variant, maps in variants.items():
            checked = validation.validate(original, maps)
            print(f"{name:28s} {variant:16s} {checked.score:6.3f} {checked.verdict:7s} "
                  f"{','.join(f.code for f in checked.findings)}"
                  + (f"  [metal score {result.material_scores.get('metal', 0):.2f}]" if variant == "converted" else ""),
                  flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="score shipped-model conversions and broken ones")
    parser.add_argument("--library", type=Path,
                        help="with --measure: score the held-out materials of this real library instead")
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    measure(args.library) if args.measure else bench(args.size)
