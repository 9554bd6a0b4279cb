"""Build the installable PBR Forge extension zips into dist/.

    python build.py                 one zip per platform (windows-x64, linux-x64, macos-arm64) with
                                    onnxruntime, etcpak and texture2ddecoder wheels for Python 3.11
                                    (Blender 4.2-5.0) and 3.13 (Blender 5.1+)
    python build.py --gpu cuda      the same with onnxruntime-gpu (Windows, Linux)
    python build.py --gpu directml  the same with onnxruntime-directml (Windows)
    python build.py --no-wheels     one zip without wheels (for a Blender/bpy that already has them)

The zip holds the `addon/` package at its root, blender_manifest.toml (with `platforms` and `wheels`
filled in per zip) and the shipped ONNX set under `models/`. numpy is never bundled: Blender ships it.
Wheels are downloaded once into dist/wheels-cache/ with `pip download` and reused.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "blender_manifest.toml"

# Blender platform -> pip platform tags to accept (pip does not widen manylinux/macOS tags itself).
PLATFORM_TAGS = {
    "windows-x64": ("win_amd64",),
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "macos-arm64": ("macosx_14_0_arm64", "macosx_11_0_arm64"),
}
# Blender 4.2-5.0 run Python 3.11, Blender 5.1+ Python 3.13; Blender installs only the matching wheels.
PYTHON_VERSIONS = ("3.11", "3.13")
# The onnxruntime package per build variant: all three install the same `onnxruntime` module.
RUNTIMES = {
    "cpu": ("onnxruntime==1.32.0", tuple(PLATFORM_TAGS)),
    "cuda": ("onnxruntime-gpu", ("windows-x64", "linux-x64")),
    "directml": ("onnxruntime-directml", ("windows-x64",)),
}
# Decoders/encoders for DDS; onnxruntime's declared dependencies (protobuf, flatbuffers, ...) are only
# used by its tools, not by inference, so every wheel is fetched with --no-deps.
OTHER_WHEELS = ("etcpak==0.9.15", "texture2ddecoder==1.0.6")

VALID_PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}


class BuildError(Exception):
    pass


def validate_manifest(manifest: dict, staging: Path | None = None) -> list[str]:
    """Problems with a parsed blender_manifest.toml, per the extension rules (empty when valid)."""
    problems = []

    def text(key):
        value = manifest.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"'{key}' must be a non-empty string")
            return ""
        return value

    if text("schema_version") != "1.0.0":
        problems.append("'schema_version' must be \"1.0.0\"")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", text("id")):
        problems.append("'id' must start with a letter and use only letters, digits and '_'")
    if not re.fullmatch(r"\d+\.\d+\.\d+", text("version")):
        problems.append("'version' must be semantic (e.g. 1.0.0)")
    text("name"), text("maintainer")
    tagline = text("tagline")
    if len(tagline) > 64 or tagline[-1:] in ".,;:!?":
        problems.append("'tagline' must be at most 64 characters with no trailing punctuation")
    if text("type") != "add-on":
        problems.append("'type' must be \"add-on\"")
    if not re.fullmatch(r"\d+\.\d+\.\d+", text("blender_version_min")):
        problems.append("'blender_version_min' must look like 4.2.0")
    licenses = manifest.get("license")
    if not licenses or not all(isinstance(item, str) and item.startswith("SPDX:") for item in licenses):
        problems.append("'license' must be a list of SPDX: identifiers")
    for key, reason in manifest.get("permissions", {}).items():
        if key not in VALID_PERMISSIONS:
            problems.append(f"unknown permission '{key}'")
        elif not isinstance(reason, str) or not reason or len(reason) > 64 or reason[-1] in ".,;:!?":
            problems.append(f"permission '{key}' needs a reason of at most 64 characters without trailing punctuation")
    for platform in manifest.get("platforms", []):
        if platform not in {"windows-x64", "windows-arm64", "macos-arm64", "macos-x64", "linux-x64"}:
            problems.append(f"unknown platform '{platform}'")
    for wheel in manifest.get("wheels", []):
        if not wheel.startswith("./wheels/") or not wheel.endswith(".whl"):
            problems.append(f"wheel path '{wheel}' must look like ./wheels/NAME.whl")
        elif staging is not None and not (staging / wheel).is_file():
            problems.append(f"wheel '{wheel}' is missing from the package")
    return problems


def stage(staging: Path, models_dir: Path, exclude: list[str]) -> None:
    """Copy the add-on package, the manifest and the models into `staging` (the zip's root)."""
    if staging.exists():
        shutil.rmtree(staging)
    # The manifest's exclude patterns are plain name globs here ("__pycache__/", "*.pyc", ".*").
    ignore = shutil.ignore_patterns(*(pattern.rstrip("/") for pattern in exclude))
    shutil.copytree(ROOT / "addon", staging, ignore=ignore)
    if not (models_dir / "manifest.json").is_file():
        raise BuildError(f"{models_dir} has no manifest.json; export the models first (python -m trainer export)")
    shutil.copytree(models_dir, staging / "models", ignore=ignore)


def download_wheels(variant: str, cache: Path) -> dict[str, list[Path]]:
    """Blender platform -> wheel files for every Python version, fetched with pip into `cache`."""
    runtime, platforms = RUNTIMES[variant]
    wheels = {}
    for platform in platforms:
        folder = cache / variant / platform
        for python in PYTHON_VERSIONS:
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                       "--implementation", "cp", "--python-version", python, "--dest", str(folder)]
            for tag in PLATFORM_TAGS[platform]:
                command += ["--platform", tag]
            command += [runtime, *OTHER_WHEELS]
            if subprocess.run(command).returncode != 0:
                raise BuildError(f"pip could not download the wheels for {platform}, Python {python}")
        wheels[platform] = sorted(folder.glob("*.whl"))
    return wheels


def staged_manifest(source_text: str, platforms: list[str], wheels: list[str]) -> str:
    """The manifest text with `platforms` and `wheels` added (top-level keys go before the first table)."""
    def toml_list(items):
        return "[\n" + "".join(f'  "{item}",\n' for item in items) + "]"

    extra = ""
    if platforms:
        extra += f"platforms = {toml_list(platforms)}\n"
    if wheels:
        extra += f"wheels = {toml_list(wheels)}\n"
    first_table = re.search(r"^\[", source_text, flags=re.MULTILINE)
    return source_text[:first_table.start()] + extra + "\n" + source_text[first_table.start():]


def write_zip(staging: Path, target: Path, manifest_text: str, wheels: list[Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(staging).as_posix())
        archive.writestr("blender_manifest.toml", manifest_text)
        for wheel in wheels:
            archive.write(wheel, f"wheels/{wheel.name}", compress_type=zipfile.ZIP_STORED)


def blender_validate(zip_path: Path) -> str | None:
    """Run Blender's own validator when Blender (or the bpy module) is available; None when neither is."""
    blender = shutil.which("blender")
    if blender:
        command = [blender, "--factory-startup", "--command", "extension", "validate", str(zip_path)]
    else:
        spec = importlib.util.find_spec("bpy")  # locates the bpy module without importing it
        if spec is None or spec.origin is None:
            return None
        tools = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if not tools:
            return None
        command = [sys.executable, str(tools[-1]), "validate", str(zip_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"Blender's validator rejected {zip_path.name}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def build(*, out_dir: Path, models_dir: Path, with_wheels: bool, variant: str = "cpu") -> list[Path]:
    source_text = MANIFEST.read_text(encoding="utf-8")
    manifest = tomllib.loads(source_text)
    problems = validate_manifest(manifest)
    if problems:
        raise BuildError("blender_manifest.toml: " + "; ".join(problems))

    staging = out_dir / "staging" / manifest["id"]
    stage(staging, models_dir, manifest.get("build", {}).get("paths_exclude_pattern", []))
    stem = f"{manifest['id']}-{manifest['version']}" + ("" if variant == "cpu" else f"-{variant}")

    if with_wheels:
        jobs = [(f"{stem}-{platform}.zip", [platform], wheels)
                for platform, wheels in download_wheels(variant, out_dir / "wheels-cache").items()]
    else:
        jobs = [(f"{stem}.zip", [], [])]

    zips = []
    for file_name, platforms, wheels in jobs:
        text = staged_manifest(source_text, platforms, [f"./wheels/{w.name}" for w in wheels])
        problems = validate_manifest(tomllib.loads(text))
        if problems:
            raise BuildError(f"{file_name}: " + "; ".join(problems))
        target = out_dir / file_name
        write_zip(staging, target, text, wheels)
        report = blender_validate(target)
        print(f"built {target} ({target.stat().st_size / 1e6:.1f} MB)"
              + ("; Blender's validator: " + report if report else "; Blender not found, fields checked in Python"))
        zips.append(target)
    shutil.rmtree(out_dir / "staging")
    return zips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="ONNX set to ship (default: models/)")
    parser.add_argument("--no-wheels", action="store_true", help="one zip without wheels")
    parser.add_argument("--gpu", choices=("cuda", "directml"), help="ship a GPU build of onnxruntime")
    args = parser.parse_args(argv)
    if args.no_wheels and args.gpu:
        parser.error("--gpu needs wheels; drop --no-wheels")
    try:
        build(out_dir=args.out, models_dir=args.models, with_wheels=not args.no_wheels, variant=args.gpu or "cpu")
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
