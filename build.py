"""Build the installable PBR Forge extension zips into dist/.

    python build.py                 one zip per platform (windows-x64, linux-x64, macos-arm64) and Blender
                                    line: Blender 4.2-5.0 (Python 3.11) and Blender 5.1+ (Python 3.13)
    python build.py --platform linux-x64 --python 3.11
                                    only the zips for that platform / Python (repeatable)
    python build.py --gpu cuda      the same with onnxruntime-gpu (Windows, Linux)
    python build.py --gpu directml  the same with onnxruntime-directml (Windows)
    python build.py --no-wheels     one zip without wheels (for a Blender/bpy that already has them)

Every zip holds the `addon/` package at its root, blender_manifest.toml (with `platforms`, `wheels`
and the Blender version range filled in) and the shipped ONNX set under `models/`. The wheels are the
whole dependency closure of the engine's requirements (pyproject.toml `[project] dependencies`),
resolved by pip from package metadata for the zip's platform and Python; numpy is never bundled
because Blender ships it. One zip per Python version because Blender 4.2.0 installs every wheel of
the platform whatever its Python tag (its wheel filter has "TODO: Match Python & ABI tags"); later
4.2.x releases filter by tag, but a zip that carries only matching wheels works in all of them.

Each zip is checked by Blender's own validator (`blender --command extension validate`, or the
`blender_ext.py` script inside the bpy module) and the build fails on its errors.
Wheels are downloaded once into the cache folder ($PBR_FORGE_CACHE, default ~/.cache/pbr-forge).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "blender_manifest.toml"
CACHE = Path(os.environ.get("PBR_FORGE_CACHE", Path.home() / ".cache" / "pbr-forge"))

# Blender platform -> pip platform tags to accept (pip does not widen manylinux/macOS tags itself).
PLATFORM_TAGS = {
    "windows-x64": ("win_amd64",),
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                  "manylinux2014_x86_64"),
    "macos-arm64": ("macosx_14_0_arm64", "macosx_13_0_arm64", "macosx_12_0_arm64", "macosx_11_0_arm64"),
}


@dataclass(frozen=True)
class BlenderLine:
    """Blender releases sharing one Python: a zip per line carries only that Python's wheels."""
    python: str
    version_min: str
    version_max: str | None  # exclusive, as blender_manifest.toml's blender_version_max
    label: str  # in the zip's file name, so users pick by their Blender version


BLENDER_LINES = (
    BlenderLine("3.11", "4.2.0", "5.1.0", "blender4.2-5.0"),
    BlenderLine("3.13", "5.1.0", None, "blender5.1+"),
)
# onnxruntime package per build variant (all install the `onnxruntime` module) and its platforms.
RUNTIMES = {
    "cpu": (None, tuple(PLATFORM_TAGS)),
    "cuda": ("onnxruntime-gpu", ("windows-x64", "linux-x64")),
    "directml": ("onnxruntime-directml", ("windows-x64",)),
}
# Distributions Blender's own Python provides; an extension must not ship another copy.
PROVIDED_BY_BLENDER = {"numpy"}


class BuildError(Exception):
    pass


def engine_requirements(variant: str) -> list[str]:
    """The engine's runtime requirements from pyproject.toml, with the variant's onnxruntime."""
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    runtime, _platforms = RUNTIMES[variant]
    chosen = []
    for requirement in requirements:
        name = canonicalize_name(Requirement(requirement).name)
        if name in PROVIDED_BY_BLENDER:
            continue
        if name == "onnxruntime" and runtime:
            # GPU builds are released for fewer versions than the CPU one: the newest that exists for
            # the platform (the models use opset 17, which every onnxruntime since 1.12 runs).
            requirement = runtime
        chosen.append(requirement)
    return chosen


def _pip(command: str, platform: str, python: str, *arguments: str) -> subprocess.CompletedProcess:
    """`pip COMMAND` for wheels of that Blender platform and Python version, not this machine's."""
    tags = [argument for tag in PLATFORM_TAGS[platform] for argument in ("--platform", tag)]
    return subprocess.run([sys.executable, "-m", "pip", command, "--quiet", "--only-binary=:all:", "--implementation",
                           "cp", "--python-version", python, *tags, *arguments], capture_output=True, text=True)


def resolve_closure(requirements: list[str], platform: str, python: str) -> list[str]:
    """`name==version` of every distribution the requirements pull in on that platform/Python, from
    package metadata (pip's resolver), minus what Blender provides."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        done = _pip("install", platform, python, "--dry-run", "--ignore-installed", "--report", str(report),
                    "--target", str(Path(scratch) / "target"), *requirements)
        if done.returncode != 0:
            raise BuildError(f"pip could not resolve {requirements} for {platform}, Python {python}:\n{done.stderr}")
        resolved = json.loads(report.read_text())["install"]
    pins = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in resolved]
    return sorted(pin for pin in pins if canonicalize_name(pin.split("==")[0]) not in PROVIDED_BY_BLENDER)


def download_wheels(pins: list[str], platform: str, python: str, cache: Path) -> list[Path]:
    """The wheel files of exactly `pins` for that platform/Python, downloaded into `cache` once."""
    folder = cache / "wheels" / platform / f"py{python}"
    done = _pip("download", platform, python, "--no-deps", "--dest", str(folder), *pins)
    if done.returncode != 0:
        raise BuildError(f"pip could not download {pins} for {platform}, Python {python}:\n{done.stderr}")
    wanted = {canonicalize_name(pin.split("==")[0]): pin.split("==")[1] for pin in pins}
    wheels = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if wanted.get(canonicalize_name(name)) == version:
            wheels.append(wheel)
    missing = set(wanted) - {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    if missing:
        raise BuildError(f"no wheel of {sorted(missing)} for {platform}, Python {python}")
    return wheels


def stage(staging: Path, models_dir: Path, exclude: list[str]) -> None:
    """Copy the add-on package and the models into `staging` (the zip's root)."""
    if staging.exists():
        shutil.rmtree(staging)
    # The manifest's exclude patterns are plain name globs here ("__pycache__/", "*.pyc", ".*").
    ignore = shutil.ignore_patterns(*(pattern.rstrip("/") for pattern in exclude))
    shutil.copytree(ROOT / "addon", staging, ignore=ignore)
    manifest_path = models_dir / "manifest.json"
    if not manifest_path.is_file():
        raise BuildError(f"{models_dir} has no manifest.json; export the models first (python -m trainer export)")
    # Only what the manifest lists: the trainable checkpoint beside the ONNX set (trainable/) is for
    # the trainer, not for Blender.
    (staging / "models").mkdir()
    shutil.copy2(manifest_path, staging / "models" / "manifest.json")
    for entry in json.loads(manifest_path.read_text(encoding="utf-8"))["models"].values():
        for key in ("file", "fp16_file"):
            if key in entry:
                shutil.copy2(models_dir / entry[key], staging / "models" / entry[key])


def staged_manifest(source_text: str, *, platforms: list[str], wheels: list[str],
                    line: BlenderLine | None) -> str:
    """The manifest text with `platforms`, `wheels` and the Blender range added (top-level keys go
    before the first table)."""
    def toml_list(items):
        return "[\n" + "".join(f'  "{item}",\n' for item in items) + "]"

    if line is not None:
        source_text = re.sub(r'^blender_version_min = ".*"$', f'blender_version_min = "{line.version_min}"',
                             source_text, count=1, flags=re.MULTILINE)
    extra = ""
    if line is not None and line.version_max:
        extra += f'blender_version_max = "{line.version_max}"\n'
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


def validator_command() -> list[str]:
    """Blender's extension validator: the blender binary, else blender_ext.py inside the bpy module."""
    blender = shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension", "validate"]
    spec = importlib.util.find_spec("bpy")  # locates the bpy module without importing it
    tools = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")) if spec else []
    if not tools:
        raise BuildError("Blender's validator was not found: put `blender` on PATH or run build.py with a Python "
                         "that has the bpy module (the project's .venv: `.venv/bin/python build.py`).")
    return [sys.executable, str(tools[-1]), "validate"]


def blender_validate(zip_path: Path) -> str:
    """Blender's verdict on a zip; raises BuildError when it reports an error."""
    done = subprocess.run([*validator_command(), str(zip_path)], capture_output=True, text=True)
    if done.returncode != 0 or "error" in done.stdout.lower():
        raise BuildError(f"Blender's validator rejected {zip_path.name}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def build(*, out_dir: Path, models_dir: Path, with_wheels: bool, variant: str = "cpu",
          platforms: list[str] | None = None, pythons: list[str] | None = None,
          cache: Path = CACHE) -> list[Path]:
    source_text = MANIFEST.read_text(encoding="utf-8")
    manifest = tomllib.loads(source_text)
    staging = out_dir / "staging" / manifest["id"]
    stage(staging, models_dir, manifest.get("build", {}).get("paths_exclude_pattern", []))
    stem = f"{manifest['id']}-{manifest['version']}" + ("" if variant == "cpu" else f"-{variant}")

    jobs = [(f"{stem}.zip", [], [], None)]
    if with_wheels:
        requirements = engine_requirements(variant)
        jobs = []
        for platform in RUNTIMES[variant][1]:
            if platforms and platform not in platforms:
                continue
            for line in BLENDER_LINES:
                if pythons and line.python not in pythons:
                    continue
                pins = resolve_closure(requirements, platform, line.python)
                wheels = download_wheels(pins, platform, line.python, cache)
                jobs.append((f"{stem}-{platform}-{line.label}.zip", [platform], wheels, line))
        if not jobs:
            raise BuildError(f"no zip matches --platform {platforms} --python {pythons} for the {variant} build")

    zips = []
    for file_name, zip_platforms, wheels, line in jobs:
        text = staged_manifest(source_text, platforms=zip_platforms, wheels=[f"./wheels/{w.name}" for w in wheels],
                               line=line)
        target = out_dir / file_name
        write_zip(staging, target, text, wheels)
        report = blender_validate(target)
        print(f"built {target} ({target.stat().st_size / 1e6:.1f} MB, {len(wheels)} wheels); "
              f"Blender's validator: {report}")
        zips.append(target)
    shutil.rmtree(out_dir / "staging")
    return zips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="ONNX set to ship (default: models/)")
    parser.add_argument("--no-wheels", action="store_true", help="one zip without wheels")
    parser.add_argument("--gpu", choices=("cuda", "directml"), help="ship a GPU build of onnxruntime")
    parser.add_argument("--platform", action="append", choices=tuple(PLATFORM_TAGS), help="only this platform")
    parser.add_argument("--python", action="append", choices=[line.python for line in BLENDER_LINES],
                        help="only the zip for this Blender Python (3.11: Blender 4.2-5.0, 3.13: 5.1+)")
    args = parser.parse_args(argv)
    if args.no_wheels and (args.gpu or args.platform or args.python):
        parser.error("--gpu, --platform and --python choose wheels; drop --no-wheels")
    try:
        build(out_dir=args.out, models_dir=args.models, with_wheels=not args.no_wheels, variant=args.gpu or "cpu",
              platforms=args.platform, pythons=args.python)
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
