"""`python -m addon.cli convert` as a user runs it, on generated textures."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import REPO_ROOT, run_cli


@pytest.fixture
def textures(tmp_path):
    folder = tmp_path / "textures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 80, 4), dtype=np.uint8)).save(folder / "wall.png")
    Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(folder / "wall_n.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "rock.tga")
    return folder


def _bit_depth(path):
    with open(path, "rb") as handle:
        return handle.read(25)[24]


def test_convert_one_texture_writes_the_png_set(textures, tmp_path, tiny_models_dir):
    out = tmp_path / "out"
    run = run_cli("convert", "--input", textures / "wall.png", "--output", out, "--models", tiny_models_dir,
               "--provider", "cpu", "--tile", "64", "--overlap", "16", "--no-blend", home=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    sizes = {p.name: Image.open(p).size for p in out.glob("*.png")}
    assert sizes == {f"wall_{m}.png": (80, 48) for m in ("albedo", "roughness", "metallic", "ao", "height", "normal")}
    assert Image.open(out / "wall_albedo.png").mode == "RGBA"  # the diffuse alpha is kept
    assert _bit_depth(out / "wall_height.png") == 16 and _bit_depth(out / "wall_roughness.png") == 8
    assert not list(out.glob("*.blend"))


def test_folder_with_a_corrupt_file_reports_it_converts_the_rest_and_exits_1(textures, tmp_path, tiny_models_dir):
    (textures / "broken.dds").write_bytes(b"DDS " + bytes(60))
    before = {p.name: p.read_bytes() for p in textures.iterdir()}
    out = tmp_path / "out"
    run = run_cli("convert", "--input", textures, "--output", out, "--models", tiny_models_dir,
               "--provider", "cpu", "--tile", "64", "--overlap", "16", home=tmp_path)
    assert run.returncode == 1
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "broken.dds" in failed[0]
    assert "Converted 2 of 3 textures (1 failed)" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert (out / "rock_albedo.png").is_file() and (out / "wall_normal.png").is_file()
    assert {p.name: p.read_bytes() for p in textures.iterdir()} == before  # inputs untouched
    if "bpy" in sys.modules or __import__("importlib").util.find_spec("bpy"):
        assert (out / "textures.blend").is_file()


def test_missing_models_folder_is_one_failure_line(textures, tmp_path):
    run = run_cli("convert", "--input", textures / "rock.tga", "--output", tmp_path / "out",
               "--models", tmp_path / "nowhere", "--no-blend", home=tmp_path)
    assert run.returncode == 2  # nothing could start
    assert run.stdout.splitlines()[0].startswith("FAILED") and "manifest.json" in run.stdout
    assert "Traceback" not in run.stderr


def test_headless_entry_passes_the_arguments_after_the_double_dash():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from pbr_forge_headless import cli_arguments
    finally:
        sys.path.pop(0)
    assert cli_arguments(["blender", "-b", "--python", "x.py", "--", "convert", "--input", "a"]) == \
        ["convert", "--input", "a"]


def test_a_nan_pixel_is_repaired_so_the_maps_equal_those_of_the_repaired_image(tmp_path, tiny_models_dir):
    source = tmp_path / "in"
    source.mkdir()
    values = np.random.default_rng(5).random((64, 64), dtype=np.float32)
    values[10, 20] = 0.0
    Image.fromarray(values, mode="F").save(source / "clean.tif")
    values[10, 20] = np.nan
    Image.fromarray(values, mode="F").save(source / "nan.tif")
    common = ("--models", tiny_models_dir, "--provider", "cpu", "--tile", "64", "--overlap", "16", "--no-blend")
    clean = run_cli("convert", "--input", source / "clean.tif", "--output", tmp_path / "clean", *common, home=tmp_path)
    repaired = run_cli("convert", "--input", source / "nan.tif", "--output", tmp_path / "nan", *common, home=tmp_path)
    assert clean.returncode == repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "warning: The diffuse image has 1 pixel(s) that are not numbers" in repaired.stdout
    for role in ("albedo", "roughness", "metallic", "ao", "height", "normal"):
        made = np.asarray(Image.open(tmp_path / "nan" / f"nan_{role}.png"))
        assert np.array_equal(made, np.asarray(Image.open(tmp_path / "clean" / f"clean_{role}.png"))), role
    assert np.asarray(Image.open(tmp_path / "nan" / "nan_albedo.png")).any()  # not the all-zero maps of old


def test_sigterm_stops_a_folder_conversion_with_its_summary_and_exit_130(tmp_path, tiny_models_dir):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(folder / f"t{i:02d}.png")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "addon.cli", "convert", "--input", str(folder), "--output", str(tmp_path / "out"),
         "--models", str(tiny_models_dir), "--provider", "cpu", "--no-blend"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    assert first.startswith("OK "), first + process.stderr.read()
    process.send_signal(signal.SIGTERM)
    rest, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, first + rest + stderr
    assert "Traceback" not in stderr
    converted = int(re.search(r"Converted (\d+) of 40 textures \(0 failed\)", rest).group(1))
    assert 1 <= converted < 40
    assert rest.strip().splitlines()[-1].startswith("Cancelled;")
    assert not list((tmp_path / "out").glob(".*.tmp"))
    written = sorted((tmp_path / "out").glob("*_normal.png"))  # the last map of each set
    assert len(written) >= converted
    for path in (tmp_path / "out").glob("*.png"):
        Image.open(path).load()  # complete files only
