"""Command line: `python -m addon.cli convert|batch ...` (also run inside `blender -b` by
scripts/pbr_forge_headless.py).

convert: one diffuse (its normal found by name) or every diffuse in a folder -> the Blender PNG
set per texture, plus `<output>/<name>.blend` with one material per set when Blender's Python
(bpy) is importable. Problems a user can cause print one line, `FAILED <path>: <sentence>`;
a summary line follows; the exit code is 1 when anything failed.

batch: a whole mod folder with resume and the True PBR output; see addon/engine/batch.py.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from .engine.errors import PBRForgeError
from .engine.sessions import PROVIDER_CHOICES

NORMAL_CONVENTION_CHOICES = ("auto", "directx", "opengl")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m addon.cli",
        description="PBR Forge: convert Skyrim diffuse + normal textures into PBR maps.")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert one texture or the textures in one folder")
    convert.add_argument("--input", required=True, type=Path,
                         help="a diffuse texture, or a folder: every diffuse in it is converted")
    convert.add_argument("--output", required=True, type=Path, help="folder for the PNG sets and the .blend")
    convert.add_argument("--normal", type=Path,
                         help="normal map of a single --input texture (default: found by name, e.g. <name>_n.dds)")
    convert.add_argument("--models", type=Path, help="models folder with manifest.json (default: the shipped models)")
    convert.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                         help="onnxruntime execution provider (auto: a GPU when available, else the CPU)")
    convert.add_argument("--normal-convention", choices=NORMAL_CONVENTION_CHOICES, default="auto",
                         help="green channel of the normal maps (auto: from the file name, else from the pixels)")
    convert.add_argument("--tile", type=int, help="tile size in pixels (default: from the manifest)")
    convert.add_argument("--overlap", type=int, help="tile overlap in pixels (default: from the manifest)")
    convert.add_argument("--no-blend", action="store_true", help="write only the PNG sets, no .blend file")

    batch = commands.add_parser("batch", help="convert a whole mod folder (resumable)")
    batch.add_argument("--input", required=True, type=Path, help="mod folder (the one holding textures/)")
    batch.add_argument("--output", required=True, type=Path, help="output mod folder")
    batch.add_argument("--format", choices=("truepbr", "blender", "both"), default="truepbr",
                       help="True PBR DDS set + patcher JSON, Blender PNG sets, or both")
    batch.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto")
    batch.add_argument("--models", type=Path)
    batch.add_argument("--allow-output-inside-input", action="store_true",
                       help="allow the output folder to lie inside the input folder")
    batch.add_argument("--json", type=Path, help="where to write the run summary (JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "batch":
        from .engine.batch import cli_batch

        return cli_batch(args)
    return convert(args)


def convert(args) -> int:
    from .engine import naming

    started = time.perf_counter()
    try:
        jobs = _collect_inputs(args.input, args.normal)
    except PBRForgeError as exc:
        print(f"FAILED {args.input}: {exc}")
        print("Converted 0 of 0 textures.")
        return 1
    converter = None
    try:
        converter = _make_converter(args)
    except PBRForgeError as exc:
        print(f"FAILED {args.models or 'models'}: {exc}")
    written_sets: dict[str, dict] = {}
    failures = 0
    for diffuse_path, normal_path in jobs:
        if converter is None:
            failures += 1
            continue
        name = naming.split_suffix(diffuse_path.stem)[0]
        try:
            if name in written_sets:
                raise PBRForgeError(
                    f"another input already wrote the '{name}' set to the output folder; rename one of them."
                )
            written_sets[name] = _convert_one(converter, diffuse_path, normal_path, args, name)
        except (PBRForgeError, MemoryError) as exc:
            failures += 1
            print(f"FAILED {diffuse_path}: {_sentence(exc)}")

    if written_sets and not args.no_blend:
        blend_path = args.output / f"{_blend_name(args.input, written_sets)}.blend"
        try:
            if _save_blend(blend_path, written_sets):
                print(f"Blender file: {blend_path}")
        except (PBRForgeError, OSError, RuntimeError) as exc:
            failures += 1
            print(f"FAILED {blend_path}: {_sentence(exc)}")
    print(f"Converted {len(written_sets)} of {len(jobs)} textures ({failures} failed) "
          f"in {time.perf_counter() - started:.1f} s.")
    return 1 if failures else 0


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "there was not enough memory; close other programs or use a smaller --tile."
    return str(exc)


def _collect_inputs(path: Path, normal: Path | None) -> list[tuple[Path, Path | None]]:
    """(diffuse, normal or None) pairs to convert."""
    from .engine import naming

    if path.is_dir():
        if normal is not None:
            raise PBRForgeError("--normal names the normal of one texture; give a file as --input or leave --normal out.")
        diffuses = sorted(
            (p for p in path.iterdir()
             if p.is_file() and naming.is_conversion_input(p) and not naming.is_node_wrangler_map(p)),
            key=lambda p: p.name.lower(),
        )
        if not diffuses:
            raise PBRForgeError("the folder holds no diffuse textures (.dds, .tga or .png); choose another folder.")
        return [(p, naming.find_normal_for(p)) for p in diffuses]
    if not path.is_file():
        raise PBRForgeError("there is no such file or folder; check the path.")
    return [(path, normal if normal is not None else naming.find_normal_for(path))]


def _make_converter(args):
    from .engine.pipeline import Converter

    return Converter(models_dir=args.models, provider=args.provider, tile=args.tile, overlap=args.overlap)


def _convert_one(converter, diffuse_path: Path, normal_path: Path | None, args, name: str) -> dict:
    from .engine import naming
    from .engine.imageio import read_image
    from .engine.outputs import write_png_set

    convention = args.normal_convention
    if convention == "auto" and normal_path is not None:
        convention = naming.normal_convention_of(normal_path)
    # The arrays go straight into the job so it holds the only reference (an 8K set is large).
    result = converter.convert(
        read_image(diffuse_path),
        read_image(normal_path) if normal_path is not None else None,
        normal_convention=convention,
    )
    inputs = [diffuse_path] + ([normal_path] if normal_path is not None else [])
    paths = write_png_set(result, args.output, name, converter.manifest.png_suffixes, inputs=inputs)
    print(f"OK {diffuse_path} -> {paths['albedo'].parent} ({result.albedo.shape[1]}x{result.albedo.shape[0]}, "
          f"{result.provider}, {result.seconds:.1f} s)")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return paths


def _blend_name(input_path: Path, written_sets: dict) -> str:
    return next(iter(written_sets)) if input_path.is_file() else (input_path.resolve().name or "pbr_forge")


def _save_blend(blend_path: Path, written_sets: dict) -> bool:
    """One material per converted set in a new .blend; False when bpy is not available."""
    if importlib.util.find_spec("bpy") is None:
        print("  note: Blender's Python (bpy) is not available here, so no .blend was written "
              "(run under `blender -b` or pass --no-blend).")
        return False
    import bpy

    from .blender.material import build_material

    # Written with libraries.write, so the running Blender's file, preferences and enabled extensions
    # are left as they were (factory settings would disable an installed PBR Forge).
    materials = {build_material(name, {role: path.resolve() for role, path in paths.items()})
                 for name, paths in written_sets.items()}
    blend_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        bpy.data.libraries.write(str(blend_path.resolve()), materials, fake_user=True, path_remap='RELATIVE_ALL')
    except (OSError, RuntimeError) as error:
        raise PBRForgeError(f"Blender could not save '{blend_path.name}' ({error}); check the output folder's "
                            "permissions.") from None
    finally:
        for material in materials:
            bpy.data.materials.remove(material)
    return True


if __name__ == "__main__":
    sys.exit(main())
