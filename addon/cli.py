"""Command line: `python -m addon.cli convert|batch ...` (also run inside `blender -b` by
scripts/pbr_forge_headless.py).

convert: one diffuse (its normal found by name) or every diffuse in a folder -> the Blender PNG
set per texture, plus `<output>/<name>.blend` with one material per set when Blender's Python
(bpy) is importable. Problems a user can cause print one line, `FAILED <path>: <sentence>`;
a summary line follows; the exit code is 1 when anything failed, 2 when nothing could start and
130 when interrupted (Ctrl-C or SIGTERM). docs/cli.md lists what each fault produces.

batch: a whole mod folder with resume and the True PBR output (the job is addon/engine/batch.py's
BatchJob; this module only parses the command line and prints).
"""
from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import threading
import time
from pathlib import Path

from .engine import naming
from .engine.batch import FORMATS, MODEL_SPACE_NORMAL_CHOICES
from .engine.errors import PBRForgeError, user_sentence
from .engine.normalmaps import NORMAL_CONVENTIONS, input_convention
from .engine.sessions import PROVIDER_CHOICES


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
    _add_conversion_options(convert, auto="from the file name, else from the pixels")
    convert.add_argument("--no-blend", action="store_true", help="write only the PNG sets, no .blend file")
    convert.add_argument("--allow-output-inside-input", action="store_true",
                         help="allow the output folder to be the input folder or inside it "
                              "(files the run reads are still never replaced)")

    batch = commands.add_parser("batch", help="convert a whole mod folder (resumable)")
    batch.add_argument("--input", required=True, type=Path, help="mod folder (the one holding textures/)")
    batch.add_argument("--output", required=True, type=Path, help="output mod folder")
    batch.add_argument("--format", choices=FORMATS, default="truepbr",
                       help="True PBR DDS set + patcher JSON, Blender PNG sets, or both")
    batch.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                       help="onnxruntime execution provider (auto: a GPU when available, else the CPU)")
    batch.add_argument("--models", type=Path, help="models folder with manifest.json (default: the shipped models)")
    _add_conversion_options(batch, auto="from the file name: DirectX for Skyrim _n")
    batch.add_argument("--allow-output-inside-input", action="store_true",
                       help="allow the output folder to lie inside the input folder")
    batch.add_argument("--json", type=Path,
                       help="where to write the run summary (JSON; default: OUTPUT.pbr_forge/summary.json)")
    batch.add_argument("--model-space-normals", choices=MODEL_SPACE_NORMAL_CHOICES, default="skip",
                       help="sets with a model-space _msn normal: leave them out (default), or convert them and "
                            "keep their _msn (\"lock_normal\")")
    batch.add_argument("--smooth-angle", type=float,
                       help="write this smooth_angle into every patcher entry (the patchers then recompute and "
                            "weld the normals of every matching shape); default: none")
    batch.add_argument("--name", help="name of the patcher JSON (default: the mod folder's name)")
    return parser


def _add_conversion_options(command: argparse.ArgumentParser, *, auto: str) -> None:
    """The options of convert and batch that change how each texture is converted."""
    command.add_argument("--normal-convention", choices=NORMAL_CONVENTIONS, default="auto",
                         help=f"green channel of the normal maps (auto: {auto})")
    command.add_argument("--tile", type=int, help="tile size in pixels (default: from the manifest)")
    command.add_argument("--overlap", type=int, help="tile overlap in pixels (default: from the manifest)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _StopOnSignal():
        if args.command == "batch":
            return batch(args)
        return convert(args)


class _StopOnSignal:
    """Ctrl-C (SIGINT) and SIGTERM stop a run the same way: the first one raises KeyboardInterrupt
    where the run is, which then finishes cleanly and prints its summary. Later ones only ask for
    patience, so a second Ctrl-C cannot cut the summary short."""

    def __init__(self):
        self._previous = {}
        self._stopping = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._stop)
        return self

    def __exit__(self, *_exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _stop(self, _signum, _frame):
        if self._stopping:
            print("Stopping: finishing the textures in progress, then the summary.", file=sys.stderr, flush=True)
            return
        self._stopping = True
        raise KeyboardInterrupt


def convert(args) -> int:
    """Exit code 0: everything converted; 1: some textures failed; 2: nothing could start (bad
    input path, refused output folder, models); 130: interrupted."""
    from .engine.batch import OutputFolderLock, check_output_folder

    started = time.perf_counter()
    try:
        jobs, left_out = _collect_inputs(args.input, args.normal)
    except PBRForgeError as exc:
        return _could_not_start(args.input, exc, 0)
    try:
        check_output_folder(args.input if args.input.is_dir() else args.input.parent, args.output,
                            args.allow_output_inside_input, walks_subfolders=False)
    except PBRForgeError as exc:
        return _could_not_start(args.output, exc, len(jobs))
    try:
        converter = _make_converter(args)
    except PBRForgeError as exc:
        return _could_not_start(args.models or "models", exc, len(jobs))
    try:
        lock = OutputFolderLock(args.output)
    except PBRForgeError as exc:
        return _could_not_start(args.output, exc, len(jobs))
    for entry in left_out:
        print(f"  note: left out {entry['texture']}: {entry['reason']}")
    # Every file this run reads is protected from every set's outputs, not only its own set's.
    read_files = [path for pair in jobs for path in pair if path is not None]
    written_sets: dict[str, dict] = {}
    failures = 0
    cancelled = False
    try:
        for diffuse_path, normal_path in jobs:
            name = naming.split_suffix(diffuse_path.stem)[0]
            if name in written_sets:
                failures += 1
                print(f"FAILED {diffuse_path}: another input already wrote the '{name}' set to the output "
                      "folder; rename one of them.")
                continue
            outcome = _convert_one(converter, diffuse_path, normal_path, args, name, read_files)
            if outcome is None:
                failures += 1
                continue
            paths, report = outcome
            # Counted before it is reported: a stop right after its OK line still counts the set.
            written_sets[name] = paths
            print(report)
        if written_sets and not args.no_blend:
            failures += not _write_blend(args, written_sets, converter.manifest.height_midlevel)
    except KeyboardInterrupt:
        cancelled = True
    finally:
        lock.release()
    print(f"Converted {len(written_sets)} of {len(jobs)} textures ({failures} failed) "
          f"in {time.perf_counter() - started:.1f} s.")
    if cancelled:
        print("Cancelled; the textures converted so far are complete. Run the same command again for the rest.")
        return 130
    return 1 if failures else 0


def batch(args) -> int:
    """Exit code 0: every set converted or was already done; 1: any set failed; 2: the batch could
    not start; 130: interrupted. One line per failure, then a summary line (also after an interruption)."""
    from .engine.batch import default_summary_path, run_batch

    try:
        summary = run_batch(
            args.input, args.output, fmt=args.format, provider=args.provider, models_dir=args.models,
            allow_output_inside_input=args.allow_output_inside_input, summary_path=args.json,
            model_space_normals=args.model_space_normals, smooth_angle=args.smooth_angle, patcher_name=args.name,
            tile=args.tile, overlap=args.overlap, normal_convention=args.normal_convention,
        )
    except PBRForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for failure in summary["failures"]:
        print(f"FAILED {failure['texture']}: {failure['reason']}")
    print(
        f"{summary['converted']} converted, {summary['skipped']} already done, {summary['failed']} failed, "
        f"{len(summary['flat_normal'])} without a normal map (flat normal used), "
        f"{len(summary['ignored'])} files ignored, in {summary['seconds']:.1f} s. "
        + (f"{len(summary['flagged'])} to check: {summary['contact_sheet']['html']}. "
           if summary["contact_sheet"] else "") +
        f"Summary: {args.json or default_summary_path(args.output)}"
    )
    if summary["cancelled"]:
        print("Cancelled; run the same command again to resume.")
        return 130
    return 1 if summary["failures"] else 0


def _could_not_start(what, exc: PBRForgeError, count: int) -> int:
    print(f"FAILED {what}: {exc}")
    print(f"Converted 0 of {count} textures.")
    return 2


def _collect_inputs(path: Path, normal: Path | None) -> tuple[list[tuple[Path, Path | None]], list[dict]]:
    """(diffuse, normal or None) pairs to convert, and the texture files of a folder left out."""
    from .engine.batch import discover

    if path.is_dir():
        if normal is not None:
            raise PBRForgeError("--normal names the normal of one texture; give a file as --input or leave --normal out.")
        sets, left_out = discover(path, recursive=False)
        if not sets:
            raise PBRForgeError("the folder holds no diffuse textures (.dds, .tga or .png); choose another folder.")
        return [(s.diffuse, s.normal) for s in sets], left_out
    if path.exists() and not path.is_file():
        raise PBRForgeError("it is not a regular file (a pipe or device); give an image file or a folder.")
    if not path.is_file():
        raise PBRForgeError("there is no such file or folder; check the path.")
    return [(path, normal if normal is not None else naming.find_normal_for(path))], []


def _make_converter(args):
    from .engine.pipeline import Converter

    converter = Converter(models_dir=args.models, provider=args.provider, tile=args.tile, overlap=args.overlap)
    converter.load_models()  # a model onnxruntime cannot load is reported once, not per texture
    return converter


def _convert_one(converter, diffuse_path: Path, normal_path: Path | None, args, name: str,
                 read_files: list[Path]) -> tuple[dict, str] | None:
    """Convert and write one set: its written paths and its report (the OK line and any warnings),
    or None after printing its FAILED line."""
    from .engine.imageio import read_image
    from .engine.outputs import write_png_set
    from .engine import validation

    convention = input_convention(args.normal_convention, normal_path)
    try:
        inputs = [read_image(diffuse_path), read_image(normal_path) if normal_path is not None else None]
        original = validation.original_preview_or_none(*inputs)
        # The arrays are popped into the job so it holds the only reference (an 8K set is large).
        result = converter.convert(inputs.pop(0), inputs.pop(0), normal_convention=convention)
    except Exception as exc:  # one sentence per texture, whatever went wrong; the run goes on
        print(f"FAILED {diffuse_path}: {user_sentence(exc, 'convert the texture')}")
        return None
    try:
        paths = write_png_set(result, args.output, name, converter.manifest.png_suffixes, inputs=read_files)
    except Exception as exc:
        print(f"FAILED {diffuse_path}: {user_sentence(exc, 'write the outputs')}")
        return None
    verdict = validation.verdict_text(validation.validate_or_none(original, result))
    report = [f"OK {diffuse_path} -> {paths['albedo'].parent} ({result.albedo.shape[1]}x{result.albedo.shape[0]}, "
              f"{result.provider}, {result.seconds:.1f} s); {verdict}"]
    report += [f"  warning: {warning}" for warning in result.warnings]
    return paths, "\n".join(report)


def _write_blend(args, written_sets: dict, height_midlevel: float) -> bool:
    """Save the .blend of the converted sets (when bpy is available); False after a FAILED line.
    `height_midlevel`: the models' flat height level (their manifest's)."""
    blend_path = args.output / f"{_blend_name(args.input, written_sets)}.blend"
    try:
        if _save_blend(blend_path, written_sets, height_midlevel):
            print(f"Blender file: {blend_path}")
    except (PBRForgeError, OSError, RuntimeError) as exc:
        print(f"FAILED {blend_path}: {user_sentence(exc, 'save the Blender file')}")
        return False
    return True


def _blend_name(input_path: Path, written_sets: dict) -> str:
    return next(iter(written_sets)) if input_path.is_file() else (input_path.resolve().name or "pbr_forge")


def _save_blend(blend_path: Path, written_sets: dict, height_midlevel: float) -> bool:
    """One material per converted set in a new .blend; False when bpy is not available."""
    if importlib.util.find_spec("bpy") is None:
        print("  note: Blender's Python (bpy) is not available here, so no .blend was written "
              "(run under `blender -b` or pass --no-blend).")
        return False
    import bpy

    from .blender.material import build_material

    # Written with libraries.write, so the running Blender's file, preferences and enabled extensions
    # are left as they were (factory settings would disable an installed PBR Forge).
    materials = {build_material(name, {role: path.resolve() for role, path in paths.items()},
                                height_midlevel=height_midlevel)
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


def run_and_exit(argv: list[str] | None = None) -> None:
    """main() as a program: after an interrupted run has printed its summary, a late Ctrl-C or
    SIGTERM (the user pressing again while Python shuts down) must not kill it with a traceback."""
    code = main(argv)
    if code == 130:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    run_and_exit()
