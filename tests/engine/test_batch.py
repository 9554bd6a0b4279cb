"""Batch conversion of a whole mod folder: discovery, outputs, resume after a kill, bad input."""
import errno
import hashlib
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addon import cli
from addon.engine import batch, dds, imageio
from addon.engine.errors import PBRForgeError
from addon.engine.imageio import read_image
from .helpers import DdsLayout

REPO = Path(__file__).resolve().parents[2]
SIZE = 64
# Sets of the mini mod that must convert (relative stems under textures/).
GOOD = [
    "armor/iron/cuirass",          # BC7 DDS pair
    "armor/iron/gauntlets",        # BC1 diffuse + BC5 normal
    "Clutter/Bowl",                # upper-case extensions, `_N` suffix
    "architecture/whiterun/wr wood plank 01",  # spaces, TGA
    "clutter/Ärmel_ñ",             # non-ASCII
    "misc/lonely",                 # no normal map: flat normal
    "misc/..dots..",               # dots, but nothing that escapes
    "misc/wood_diffuse",           # Node Wrangler pair
] + [f"filler/set{i:02d}" for i in range(6)]
BROKEN = ["broken/garbage", "broken/truncated"]


def _pattern(seed, size=SIZE, channels=3):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (x * (c + 1) + y * seed % 3) + seed) for c in range(channels)], -1)
    return np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1)


def _normal_pixels(seed, size=SIZE):
    y, x = np.mgrid[0:size, 0:size] / size
    n = np.dstack([0.3 * np.sin(2 * np.pi * x + seed), 0.3 * np.cos(2 * np.pi * y), np.ones_like(x)])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return (n + 1) / 2


def _save(path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgba8 = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    if fmt:  # DDS through the project's writer
        if rgba8.shape[2] == 3:
            rgba8 = np.dstack([rgba8, np.full(rgba8.shape[:2], 255, np.uint8)])
        is_colour = not path.stem.lower().endswith("_n")
        path.write_bytes(dds.encode_dds(rgba8, fmt, srgb=is_colour and fmt != "BC5"))
    else:
        Image.fromarray(rgba8).save(path, format={".png": "PNG", ".tga": "TGA"}[path.suffix.lower()])


def build_mini_mod(root: Path) -> Path:
    t = root / "textures"
    _save(t / "armor/iron/cuirass.dds", _pattern(1), "BC7")
    _save(t / "armor/iron/cuirass_n.dds", _normal_pixels(1), "BC7")
    _save(t / "armor/iron/gauntlets.dds", _pattern(2), "BC1")
    _save(t / "armor/iron/gauntlets_n.dds", _normal_pixels(2), "BC5")
    _save(root / "Textures/Clutter/Bowl.PNG", _pattern(3, channels=4))
    _save(root / "Textures/Clutter/Bowl_N.PNG", _normal_pixels(3))
    _save(t / "architecture/whiterun/wr wood plank 01.tga", _pattern(4))
    _save(t / "architecture/whiterun/wr wood plank 01_n.tga", _normal_pixels(4))
    _save(t / "clutter/Ärmel_ñ.png", _pattern(5, size=128))
    _save(t / "clutter/Ärmel_ñ_n.png", _normal_pixels(5, size=128))
    _save(t / "misc/lonely.png", _pattern(6))
    _save(t / "misc/lonely_g.png", _pattern(7))                 # its glow map: carried into the set
    _save(t / "misc/..dots...png", _pattern(8))
    _save(t / "misc/..dots.._n.png", _normal_pixels(8))
    _save(t / "misc/wood_diffuse.png", _pattern(9))
    _save(t / "misc/wood_normal.png", _normal_pixels(9))
    _save(t / "misc/wood_rough.png", _pattern(10))
    _save(t / "pbr/already/done.dds", _pattern(11), "BC7")        # True PBR already: never an input
    for i in range(6):
        _save(t / f"filler/set{i:02d}.png", _pattern(20 + i))
        _save(t / f"filler/set{i:02d}_n.png", _normal_pixels(20 + i))
    (t / "broken").mkdir(parents=True)
    (t / "broken/garbage.dds").write_bytes(b"DDS " + os.urandom(300))
    good_dds = dds.encode_dds(np.full((SIZE, SIZE, 4), 128, np.uint8), "BC7", True)
    (t / "broken/truncated.dds").write_bytes(good_dds[: len(good_dds) // 3])
    (root / "readme.txt").write_text("not a texture")
    return root


def _tree_digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _truepbr_files(out: Path, stem: str) -> list[Path]:
    return [out / "textures" / "pbr" / f"{stem}{suffix}.dds" for suffix in ("", "_n", "_rmaos", "_p")]


@pytest.fixture
def mini_mod(tmp_path):
    return build_mini_mod(tmp_path / "My Mod")


@pytest.fixture
def converter(tiny_models_dir):
    from addon.engine.pipeline import Converter

    return Converter(models_dir=tiny_models_dir, provider="cpu", tile=64, overlap=8)  # small tiles: fast


def _run(mod, out, converter, **options):
    return batch.run_batch(mod, out, progress=False, converter=converter, **options)


def test_a_mini_mod_converts_to_truepbr_sets_and_reports_each_bad_file(mini_mod, tmp_path, converter):
    originals = _tree_digest(mini_mod)
    out = tmp_path / "out"
    summary = _run(mini_mod, out, converter)

    assert summary["converted"] == len(GOOD)
    assert summary["failed"] == len(BROKEN)
    assert sorted(f["texture"] for f in summary["failures"]) == [f"textures/{s}.dds" for s in BROKEN]
    for failure in summary["failures"]:
        assert "Traceback" not in failure["reason"] and failure["reason"].endswith(".")
    assert summary["flat_normal"] == ["textures/misc/lonely.png"]
    ignored = {i["texture"] for i in summary["ignored"]}
    assert "textures/misc/wood_rough.png" in ignored
    assert "textures/misc/lonely_g.png" not in ignored and (out / "textures/pbr/misc/lonely_g.dds").is_file()
    for stem in GOOD:
        for path in _truepbr_files(out, stem):
            assert path.is_file(), path
    assert not (out / "textures" / "pbr" / "pbr").exists()  # textures/pbr/ was not an input
    assert _tree_digest(mini_mod) == originals             # originals untouched
    # nothing written elsewhere; the run's own files beside the output, not in what gets installed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["My Mod", "out", "out.pbr_forge"]
    assert sorted(p.name for p in out.iterdir()) == ["PBRNifPatcher", "textures"]
    assert json.loads(batch.default_summary_path(out).read_text(encoding="utf-8")) == summary

    entries = json.loads(Path(summary["patcher_json"]).read_text(encoding="utf-8"))
    assert Path(summary["patcher_json"]) == out / "PBRNifPatcher" / "My Mod.json"
    assert sorted(e["texture"] for e in entries) == sorted(s.replace("/", "\\") for s in GOOD)


def test_outputs_hold_the_converted_maps_in_the_right_block_formats(mini_mod, tmp_path, converter):
    out = tmp_path / "out"
    _run(mini_mod, out, converter)
    diffuse = read_image(mini_mod / "textures/armor/iron/cuirass.dds")
    normal = read_image(mini_mod / "textures/armor/iron/cuirass_n.dds")
    result = converter.convert(diffuse, normal, normal_convention="directx")  # Skyrim `_n` maps are DirectX
    albedo, n, rmaos, height = (DdsLayout(p.read_bytes()) for p in _truepbr_files(out, "armor/iron/cuirass"))

    assert (albedo.dxgi, n.dxgi, rmaos.dxgi, height.dxgi) == (99, 98, 98, 80)
    assert all(layout.mip_count == dds.mip_count(SIZE, SIZE) for layout in (albedo, n, rmaos, height))
    packed = rmaos.decode(0).astype(float) / 255
    for channel, values in enumerate((result.roughness, result.metallic, result.ao)):
        assert np.abs(packed[..., channel] - values).mean() < 0.02, channel
    assert packed[..., 3].min() > 0.99
    stored_normal = n.decode(0).astype(float) / 255 * 2 - 1
    assert np.abs(stored_normal[..., 1] + result.normal[..., 1]).mean() < 0.03  # DirectX green = -OpenGL
    assert np.abs(height.decode(0)[..., 0] / 255 - result.height).mean() < 0.02


def test_a_rerun_skips_finished_sets_and_redoes_changed_ones(mini_mod, tmp_path, converter):
    out = tmp_path / "out"
    _run(mini_mod, out, converter)
    again = _run(mini_mod, out, converter)
    assert (again["converted"], again["skipped"], again["failed"]) == (0, len(GOOD), len(BROKEN))

    _save(mini_mod / "textures/filler/set03.png", _pattern(99))
    (out / "textures/pbr/filler/set05_rmaos.dds").unlink()  # a lost output is redone too
    third = _run(mini_mod, out, converter)
    assert third["converted"] == 2 and third["skipped"] == len(GOOD) - 2


def test_sigkill_mid_run_then_rerun_finishes_without_duplicates_or_corrupt_files(mini_mod, tmp_path,
                                                                                  tiny_models_dir, converter):
    out = tmp_path / "out"
    journal = batch.run_files_dir(out) / batch.JOURNAL_NAME
    script = (
        "import sys; from addon.engine.batch import run_batch; "
        "run_batch(sys.argv[1], sys.argv[2], progress=False, models_dir=sys.argv[3], provider='cpu')"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(mini_mod), str(out), str(tiny_models_dir)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.is_file() and journal.read_text(encoding="utf-8").count('"done"') >= 3:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = journal.read_text(encoding="utf-8").count('"done"')
    assert 3 <= done_before < len(GOOD)

    summary = _run(mini_mod, out, converter)
    assert summary["skipped"] >= done_before
    assert summary["converted"] + summary["skipped"] == len(GOOD)
    assert list(out.rglob("*.tmp")) == []
    written = sorted(p.relative_to(out).as_posix() for p in (out / "textures").rglob("*.dds"))
    expected = [p for s in GOOD for p in _truepbr_files(out, s)] + [out / "textures/pbr/misc/lonely_g.dds"]
    assert written == sorted(p.relative_to(out).as_posix() for p in expected)
    for path in (out / "textures").rglob("*.dds"):
        DdsLayout(path.read_bytes())  # complete: every level's bytes present
    entries = json.loads(Path(summary["patcher_json"]).read_text(encoding="utf-8"))
    assert len(entries) == len({e["texture"] for e in entries}) == len(GOOD)


def test_a_full_disk_in_one_set_fails_only_that_set(mini_mod, tmp_path, converter, monkeypatch):
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(source, target):
        if "set04" in str(target):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    summary = _run(mini_mod, out, converter)
    failure = next(f for f in summary["failures"] if "set04" in f["texture"])
    assert "No space left on device" in failure["reason"]
    assert summary["converted"] == len(GOOD) - 1
    assert not list(out.rglob("set04*"))  # no partial file under a final name

    monkeypatch.setattr(os, "replace", real_replace)
    retry = _run(mini_mod, out, converter)
    assert (retry["converted"], retry["skipped"]) == (1, len(GOOD) - 1)


def test_a_target_path_that_is_a_folder_fails_only_that_set(mini_mod, tmp_path, converter):
    out = tmp_path / "out"
    (out / "textures/pbr/misc/lonely_n.dds").mkdir(parents=True)
    summary = _run(mini_mod, out, converter)
    assert [f["texture"] for f in summary["failures"] if "lonely" in f["texture"]] == ["textures/misc/lonely.png"]
    assert summary["converted"] == len(GOOD) - 1


def test_a_read_only_output_subfolder_fails_only_its_sets(mini_mod, tmp_path, converter, monkeypatch):
    out = tmp_path / "out"
    locked = out / "textures" / "pbr" / "armor"
    real_create_temporary = imageio.create_temporary

    def create_temporary(folder):  # what the OS answers in a read-only folder (even for root)
        if locked in (Path(folder), *Path(folder).parents):
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real_create_temporary(folder)

    monkeypatch.setattr(imageio, "create_temporary", create_temporary)
    summary = _run(mini_mod, out, converter)
    failed = sorted(f["texture"] for f in summary["failures"] if "armor" in f["texture"])
    assert failed == ["textures/armor/iron/cuirass.dds", "textures/armor/iron/gauntlets.dds"]
    assert all("Permission denied" in f["reason"] for f in summary["failures"] if "armor" in f["texture"])
    assert summary["converted"] == len(GOOD) - 2


def test_an_output_folder_that_cannot_be_created_stops_before_any_work(mini_mod, tmp_path, converter):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PBRForgeError, match="choose"):
        batch.BatchJob(mini_mod, blocker / "out", converter=converter)


def test_output_inside_the_input_is_refused_unless_allowed(mini_mod, tmp_path, converter):
    inside = mini_mod / "pbr_out"
    with pytest.raises(PBRForgeError, match="is the input folder or inside it"):
        batch.BatchJob(mini_mod, inside, converter=converter)
    with pytest.raises(PBRForgeError, match="is the input folder or inside it"):  # allowed or not
        batch.BatchJob(mini_mod, mini_mod, converter=converter, allow_output_inside_input=True)
    with pytest.raises(PBRForgeError, match="inside the output folder"):
        batch.BatchJob(mini_mod, tmp_path, converter=converter)
    assert not inside.exists()
    summary = _run(mini_mod, inside, converter, allow_output_inside_input=True)
    assert summary["converted"] == len(GOOD)
    again = _run(mini_mod, inside, converter, allow_output_inside_input=True)
    assert again["sets"] == len(GOOD) + len(BROKEN)  # its own outputs were not picked up as inputs


def test_one_by_one_and_mismatched_inputs_convert_with_a_warning_each(tmp_path, converter):
    mod = tmp_path / "mod"
    _save(mod / "textures/tiny.png", np.full((1, 1, 3), 0.5))
    _save(mod / "textures/mismatch.png", _pattern(1))
    _save(mod / "textures/mismatch_n.png", _normal_pixels(1, size=32))
    _save(mod / "textures/fine.png", _pattern(2))
    summary = _run(mod, tmp_path / "out", converter)
    assert summary["converted"] == 3 and summary["failures"] == []
    warnings = "\n".join(summary["warnings"])
    assert "textures/tiny.png: the diffuse is 1x1" in warnings and "resampled to 4x4" in warnings
    assert "textures/mismatch.png: The normal map is 32x32 but the diffuse is 64x64" in warnings
    for stem in ("tiny", "mismatch", "fine"):
        assert all(path.is_file() for path in _truepbr_files(tmp_path / "out", stem))


def test_cancel_stops_after_the_current_set_and_a_rerun_resumes(mini_mod, tmp_path, converter):
    out = tmp_path / "out"
    job = batch.BatchJob(mini_mod, out, converter=converter)
    for _ in range(4):
        job.step()
    job.cancel()
    assert job.done and job.summary["cancelled"]
    handled = job.summary["converted"] + job.summary["failed"]
    assert handled == 4
    rest = _run(mini_mod, out, converter)
    assert rest["skipped"] == job.summary["converted"]
    assert rest["converted"] + rest["skipped"] == len(GOOD)


def test_cli_prints_one_line_per_failure_and_exits_1(mini_mod, tmp_path, tiny_models_dir, capsys):
    summary_path = tmp_path / "summary.json"
    args = cli.build_parser().parse_args(["batch", "--input", str(mini_mod), "--output", str(tmp_path / "out"),
                                          "--provider", "cpu", "--models", str(tiny_models_dir),
                                          "--json", str(summary_path)])
    assert cli.batch(args) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines[:-1]) == [f"FAILED textures/{s}.dds" for s in BROKEN]
    assert f"{len(GOOD)} converted" in lines[-1]
    assert json.loads(summary_path.read_text(encoding="utf-8"))["failed"] == len(BROKEN)


def test_cli_batch_tile_overlap_and_normal_convention_reach_the_converter(tmp_path, tiny_models_dir, monkeypatch,
                                                                         capsys):
    from addon.engine import pipeline

    seen = {"tiling": [], "conventions": set()}

    class RecordingConverter(pipeline.Converter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["tiling"].append((self.tile, self.overlap))

        def convert(self, diffuse, normal=None, normal_convention="directx"):
            seen["conventions"].add(normal_convention)
            return super().convert(diffuse, normal, normal_convention)

    monkeypatch.setattr(pipeline, "Converter", RecordingConverter)
    mod = tmp_path / "mod" / "textures"
    mod.mkdir(parents=True)
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(mod / "wall.png")
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(mod / "wall_n.png")  # _n: DirectX
    out = tmp_path / "out"

    def run(*extra):
        args = cli.build_parser().parse_args(["batch", "--input", str(mod.parent), "--output", str(out),
                                              "--format", "blender", "--provider", "cpu",
                                              "--models", str(tiny_models_dir), *extra])
        assert cli.batch(args) == 0, capsys.readouterr()
        return json.loads(batch.default_summary_path(out).read_text(encoding="utf-8"))

    manifest_tiling = (pipeline.Converter(tiny_models_dir, provider="cpu").tile,
                       pipeline.Converter(tiny_models_dir, provider="cpu").overlap)
    assert manifest_tiling != (64, 8)
    seen["tiling"].clear()
    assert run("--tile", "64", "--overlap", "8", "--normal-convention", "opengl")["converted"] == 1
    assert seen == {"tiling": [(64, 8)], "conventions": {"opengl"}}
    # The settings are part of the journal's inputs: the same ones skip the set, others convert it again.
    assert run("--tile", "64", "--overlap", "8", "--normal-convention", "opengl")["skipped"] == 1
    seen["conventions"].clear()
    assert run()["converted"] == 1
    assert seen["tiling"][-1] == manifest_tiling and seen["conventions"] == {"directx"}


def test_without_overwrite_a_set_whose_outputs_exist_fails_but_its_own_earlier_outputs_are_redone(tmp_path,
                                                                                                    converter):
    mod = tmp_path / "mod" / "textures"
    for name in ("wall", "floor"):
        _save(mod / f"{name}.png", _pattern(len(name)))
        _save(mod / f"{name}_n.png", _normal_pixels(len(name)))
    out = tmp_path / "out"
    stranger = out / "blender" / "wall_albedo.png"  # a file of someone else's where an output goes
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"not ours")

    summary = _run(mod.parent, out, converter, fmt="blender", overwrite=False)
    assert (summary["converted"], summary["failed"]) == (1, 1)
    assert summary["failures"][0]["texture"] == "textures/wall.png"
    assert "already exists" in summary["failures"][0]["reason"]
    assert stranger.read_bytes() == b"not ours"

    # The batch's own outputs are replaced when their set must run again (here: its diffuse changed).
    _save(mod / "floor.png", _pattern(9))
    summary = _run(mod.parent, out, converter, fmt="blender", overwrite=False)
    assert (summary["converted"], summary["failed"]) == (1, 1)
    # With overwrite (the CLI's behaviour) the stranger's file is replaced.
    assert _run(mod.parent, out, converter, fmt="blender")["converted"] == 1
    assert stranger.read_bytes() != b"not ours"


def test_without_overwrite_a_patcher_json_that_was_there_first_is_left_alone(tmp_path, converter):
    mod = tmp_path / "mod" / "textures"
    _save(mod / "wall.png", _pattern(1))
    out = tmp_path / "out"
    theirs = out / "PBRNifPatcher" / "mod.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("[]")

    summary = _run(mod.parent, out, converter, overwrite=False)
    assert summary["converted"] == 1 and theirs.read_text() == "[]"
    assert [f["texture"] for f in summary["failures"]] == ["PBRNifPatcher/mod.json"]
    assert "already exists" in summary["failures"][0]["reason"]
    # Once the batch has journalled sets into this output, a re-run keeps its JSON up to date.
    theirs.unlink()
    _run(mod.parent, out, converter, overwrite=False)
    _save(mod / "floor.png", _pattern(2))
    summary = _run(mod.parent, out, converter, overwrite=False)
    assert summary["failures"] == [] and len(json.loads(theirs.read_text())) == 2


def test_cli_reports_a_bad_input_folder_in_one_sentence(tmp_path, tiny_models_dir, capsys):
    args = cli.build_parser().parse_args(["batch", "--input", str(tmp_path / "missing"), "--output",
                                          str(tmp_path / "out"), "--provider", "cpu", "--models", str(tiny_models_dir)])
    assert cli.batch(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err


def test_blender_format_writes_png_sets_beside_nothing_else(mini_mod, tmp_path, converter):
    out = tmp_path / "out"
    summary = _run(mini_mod, out, converter, fmt="blender")
    assert summary["converted"] == len(GOOD) and summary["patcher_json"] is None
    assert not (out / "textures").exists()
    suffixes = converter.manifest.png_suffixes
    for suffix in suffixes.values():
        assert (out / "blender" / "armor" / "iron" / f"cuirass{suffix}.png").is_file()


def test_both_format_writes_the_png_set_and_the_truepbr_set_of_every_material(tmp_path, converter):
    mod = tmp_path / "Both"
    _save(mod / "textures/armor/iron/cuirass.dds", _pattern(1), "BC7")
    _save(mod / "textures/armor/iron/cuirass_n.dds", _normal_pixels(1), "BC7")
    _save(mod / "textures/misc/lonely.png", _pattern(6))
    _save(mod / "textures/misc/lonely_g.png", _pattern(7))  # glow: a True PBR extra, not in the PNG set
    out = tmp_path / "out"
    summary = _run(mod, out, converter, fmt="both")

    assert (summary["converted"], summary["failed"]) == (2, 0)
    suffixes = converter.manifest.png_suffixes
    expected = {"PBRNifPatcher/Both.json", "textures/pbr/misc/lonely_g.dds"}
    for stem in ("armor/iron/cuirass", "misc/lonely"):
        folder, name = stem.rsplit("/", 1)
        expected |= {p.relative_to(out).as_posix() for p in _truepbr_files(out, stem)}
        expected |= {f"blender/{folder}/{name}{suffix}.png" for suffix in suffixes.values()}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == expected
    entries = json.loads((out / "PBRNifPatcher/Both.json").read_text(encoding="utf-8"))
    assert sorted(e["texture"] for e in entries) == ["armor\\iron\\cuirass", "misc\\lonely"]
    # Both sets are views of one conversion: the PNG albedo is the DDS albedo.
    png = read_image(out / f"blender/armor/iron/cuirass{suffixes['albedo']}.png")[..., :3]
    dds_albedo = DdsLayout((out / "textures/pbr/armor/iron/cuirass.dds").read_bytes()).decode(0)[..., :3] / 255
    assert png.shape == dds_albedo.shape and np.abs(png - dds_albedo).mean() < 0.02

    rerun = _run(mod, out, converter, fmt="both")  # the journal holds both sets: nothing to redo
    assert (rerun["converted"], rerun["skipped"]) == (0, 2)


def test_discovery_pairs_names_and_explains_every_file_left_out(mini_mod):
    _save(mini_mod / "textures/misc/lonely.tga", _pattern(6))  # same set name as lonely.png
    sets, ignored = batch.discover(mini_mod)
    by_stem = {s.relative_stem: s for s in sets}
    assert sorted(by_stem) == sorted(GOOD + BROKEN)
    assert by_stem["Clutter/Bowl"].normal.name == "Bowl_N.PNG"
    assert by_stem["misc/wood_diffuse"].normal.name == "wood_normal.png"
    assert by_stem["misc/lonely"].normal is None
    assert by_stem["misc/lonely"].diffuse.suffix == ".tga"  # .tga ranks before .png
    reasons = {i["texture"]: i["reason"] for i in ignored}
    assert by_stem["misc/lonely"].glow.name == "lonely_g.png"
    assert "textures/misc/lonely_g.png" not in reasons  # used as the set's glow: not "ignored"
    assert reasons["textures/misc/lonely.png"] == "same name as textures/misc/lonely.tga, which was used"
    assert not any("pbr/" in name for name in reasons)  # textures/pbr/ is not even looked at
    assert "textures/armor/iron/cuirass_n.dds" not in reasons  # used as a normal map: not "ignored"


def test_a_journal_line_cut_by_a_kill_is_ignored_and_the_next_record_starts_clean(tmp_path):
    path = tmp_path / batch.JOURNAL_NAME
    path.write_text('{"key": "a", "status": "done"}\n{"key": "b", "sta', encoding="utf-8")
    journal = batch.Journal(path)
    assert set(journal.records) == {"a"}
    journal.append({"key": "c", "status": "done"})
    journal.close()
    assert set(batch.Journal(path).records) == {"a", "c"}


class _SavesAfterReading:
    """A file object that, once closed, lets `on_close` run: a modder saving the texture right
    after PBR Forge read it."""

    def __init__(self, stream, on_close):
        self._stream, self._on_close = stream, on_close

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def close(self):
        self._stream.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


def test_a_texture_saved_during_the_run_is_recorded_with_the_version_that_was_converted(
        tmp_path, converter, monkeypatch):
    import builtins

    mod, out = tmp_path / "mod", tmp_path / "out"
    diffuse = mod / "textures" / "saved.png"
    _save(diffuse, _pattern(1))                       # version 1: 64 px
    version_1 = diffuse.read_bytes()
    _save(tmp_path / "v2.png", _pattern(2, size=32))  # version 2: 32 px
    version_2 = (tmp_path / "v2.png").read_bytes()
    real_open = builtins.open
    pending = [True]

    def open_then_save(file, mode="r", *args, **kwargs):
        stream = real_open(file, mode, *args, **kwargs)
        if pending and "r" in mode and os.fspath(file) == os.fspath(diffuse):
            pending.clear()
            return _SavesAfterReading(stream, lambda: diffuse.write_bytes(version_2))
        return stream

    monkeypatch.setattr(builtins, "open", open_then_save)
    first = _run(mod, out, converter)
    monkeypatch.setattr(builtins, "open", real_open)
    assert not pending, "the texture was never opened"
    assert first["converted"] == 1

    recorded = batch.Journal(batch.run_files_dir(out) / batch.JOURNAL_NAME).records["saved"]["inputs"]["diffuse"]
    width = DdsLayout(_truepbr_files(out, "saved")[0].read_bytes()).width
    made_from = {hashlib.sha256(version_1).hexdigest(): 64, hashlib.sha256(version_2).hexdigest(): 32}
    assert made_from[recorded] == width  # the journal names the version the output was made from

    again = _run(mod, out, converter)  # the saved version is converted, not skipped as done
    assert (again["converted"], again["skipped"]) == (1, 0)
    assert DdsLayout(_truepbr_files(out, "saved")[0].read_bytes()).width == 32


def _start_batch_and_wait_for_done_sets(mod, out, models, count):
    """A CLI batch in a child process, returned once its journal records `count` finished sets."""
    process = subprocess.Popen(
        [sys.executable, "-m", "addon.cli", "batch", "--input", str(mod), "--output", str(out),
         "--models", str(models), "--provider", "cpu"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = batch.run_files_dir(out) / batch.JOURNAL_NAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.is_file() and journal.read_text(encoding="utf-8").count('"done"') >= count:
            return process
        time.sleep(0.005)
    process.kill()
    pytest.fail("the batch ended or stalled before it could be interrupted")


def _many_sets_mod(root: Path, count=40) -> Path:
    for i in range(count):
        _save(root / f"textures/many/set{i:02d}.png", _pattern(i, size=128))
    return root


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT, signal.SIGINT)],
                         ids=["sigterm", "ctrl-c-three-times"])
def test_an_interrupted_batch_prints_its_summary_and_exits_130(tmp_path, tiny_models_dir, signals):
    mod, out = _many_sets_mod(tmp_path / "mod"), tmp_path / "out"
    process = _start_batch_and_wait_for_done_sets(mod, out, tiny_models_dir, 2)
    for signum in signals:  # repeated Ctrl-C lands while the run is cancelling
        process.send_signal(signum)
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    lines = stdout.strip().splitlines()
    assert re.match(r"\d+ converted, 0 already done, 0 failed", lines[-2]), stdout
    assert lines[-1].startswith("Cancelled; run the same command again to resume")
    summary = json.loads(batch.default_summary_path(out).read_text(encoding="utf-8"))
    assert summary["cancelled"] and 2 <= summary["converted"] < 40
    rest = batch.run_batch(mod, out, progress=False, models_dir=tiny_models_dir, provider="cpu")
    assert rest["skipped"] == summary["converted"] and rest["converted"] + rest["skipped"] == 40


def test_a_second_run_into_a_busy_output_folder_is_refused_and_the_first_unaffected(tmp_path, tiny_models_dir,
                                                                                     capsys):

    mod, out = _many_sets_mod(tmp_path / "mod", count=30), tmp_path / "out"
    first = _start_batch_and_wait_for_done_sets(mod, out, tiny_models_dir, 1)
    other = build_mini_mod(tmp_path / "other mod")
    code = cli.main(["batch", "--input", str(other), "--output", str(out), "--models", str(tiny_models_dir),
                     "--provider", "cpu"])
    err = capsys.readouterr().err
    first.communicate(timeout=120)
    assert code == 2 and re.search(r"Another PBR Forge run \(process \d+\) is writing into the output folder", err)
    assert first.returncode == 0
    summary = json.loads(batch.default_summary_path(out).read_text(encoding="utf-8"))
    assert summary["converted"] == 30 and summary["input"] == str(mod)
    assert sorted(p.name for p in (out / "textures/pbr").iterdir()) == ["many"]  # nothing of the other mod


def test_run_files_an_earlier_version_left_in_the_output_are_moved_out_of_the_mod(mini_mod, tmp_path, converter):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".pbr_forge_journal.jsonl").write_text('{"key": "clutter/bowl", "status": "done"}\n')
    (tmp_path / "notes.txt").write_text("the modder's notes")
    (out / "pbr_forge_summary.json").symlink_to(tmp_path / "notes.txt")  # a link is removed, never followed
    summary = _run(mini_mod, out, converter)
    assert sorted(p.name for p in out.iterdir()) == ["PBRNifPatcher", "textures"]
    assert (tmp_path / "notes.txt").read_text() == "the modder's notes"
    assert any("Removed .pbr_forge_journal.jsonl, pbr_forge_summary.json" in w for w in summary["warnings"])
    assert summary["converted"] == len(GOOD)  # the old journal did not mark anything done
