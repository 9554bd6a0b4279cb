"""A generated mini mod holding every kind of Skyrim texture the True PBR batch meets, converted
headless through the real CLI (`python -m addon.cli batch`), every output file decoded back and
every patcher entry checked against the rules of docs/batch.md (issue #15)."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addon.engine import batch, dds
from addon.engine.imageio import read_image
from .helpers import DdsLayout, signed_bc5_dds

REPO = Path(__file__).resolve().parents[2]
SIZE = 32
SIGNED_NORMAL = (0.3, -0.2)  # the normal, stored in signed and unsigned BC5 (DirectX, _n)

# Sets converted by default: relative stem -> (level-0 width, height).
CONVERTED = {
    "clutter/plain": (SIZE, SIZE),
    "armor/steel/cuirass_d": (SIZE, SIZE),     # `_d` diffuse, `cuirass_n` normal
    "dungeons/lamp": (SIZE, SIZE),             # with a `_g` glow
    "clutter/odd": (300, 204),                 # a 301x203 TGA, resampled to whole blocks
    "clutter/snorm": (SIZE, SIZE),             # signed BC5 normal
    "clutter/unorm": (SIZE, SIZE),             # unsigned BC5 normal
    "clutter/Ärmel": (SIZE, SIZE),             # non-ASCII: converted, warned
    "clutter/rock.old": (SIZE, SIZE),          # an extra dot: converted, warned
    "actors/character/hair/hairlong": (SIZE, SIZE),  # its `_flow` is not a diffuse
    "architecture/ice/glacier": (SIZE, SIZE),  # its `_i` inner layer is not a diffuse
}
MODEL_SPACE = "armor/daedric/cuirass"
SKIN = ["actors/character/male/malehead", "actors/character/female/femalebody"]  # `_sk`; actor `_s`
LANDSCAPE = "landscape/dirt01"
NOT_DIFFUSES = ["actors/character/hair/hairlong_flow", "architecture/ice/glacier_i"]


def _pattern(seed, width=SIZE, height=SIZE, channels=3):
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    waves = [0.5 + 0.4 * np.sin(2 * np.pi * (x * (c + 1) + y * (seed % 3)) + seed) for c in range(channels)]
    return np.stack(waves, -1)


def _flat_normal(width=SIZE, height=SIZE):
    return np.broadcast_to([0.5, 0.5, 1.0], (height, width, 3))


def _save(path: Path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb8 = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    if fmt:  # DDS through the project's writer
        rgba8 = np.dstack([rgb8, np.full(rgb8.shape[:2], 255, np.uint8)])
        is_colour = not path.stem.lower().endswith(("_n", "_msn"))
        path.write_bytes(dds.encode_dds(rgba8, fmt, srgb=is_colour))
    else:
        Image.fromarray(rgb8).save(path, format={".png": "PNG", ".tga": "TGA"}[path.suffix.lower()])


def _bc5_normal(signed: bool) -> bytes:
    blocks = np.broadcast_to(SIGNED_NORMAL, (SIZE // 4, SIZE // 4, 2))
    if signed:
        return signed_bc5_dds(np.array(blocks))
    x, y = SIGNED_NORMAL
    rgba8 = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba8[...] = np.rint([(x + 1) * 127.5, (y + 1) * 127.5, 0, 255]).astype(np.uint8)
    return dds.encode_dds(rgba8, "BC5", False)


def build_mod(root: Path) -> Path:
    t = root / "textures"
    _save(t / "clutter/plain.png", _pattern(1))
    _save(t / "clutter/plain_n.png", _flat_normal())
    _save(t / "armor/steel/cuirass_d.dds", _pattern(2), "BC7")
    _save(t / "armor/steel/cuirass_n.dds", _flat_normal(), "BC7")
    _save(t / "armor/daedric/cuirass.dds", _pattern(3), "BC7")
    _save(t / "armor/daedric/cuirass_msn.dds", _pattern(4), "BC7")
    _save(t / "dungeons/lamp.png", _pattern(5))
    _save(t / "dungeons/lamp_n.png", _flat_normal())
    glow = np.zeros((SIZE, SIZE, 3))
    glow[8:24, 8:24] = (1.0, 0.7, 0.3)
    _save(t / "dungeons/lamp_g.png", glow)
    _save(t / "actors/character/male/malehead.png", _pattern(6))
    _save(t / "actors/character/male/malehead_sk.png", _pattern(7))
    _save(t / "actors/character/female/femalebody.png", _pattern(8))
    _save(t / "actors/character/female/femalebody_s.png", _pattern(9))
    _save(t / "actors/character/hair/hairlong.png", _pattern(10))
    _save(t / "actors/character/hair/hairlong_flow.png", _pattern(11))
    _save(t / "architecture/ice/glacier.png", _pattern(12))
    _save(t / "architecture/ice/glacier_i.png", _pattern(13))
    _save(t / "landscape/dirt01.png", _pattern(14))
    _save(t / "landscape/dirt01_n.png", _flat_normal())
    _save(t / "clutter/odd.tga", _pattern(15, 301, 203))
    _save(t / "clutter/odd_n.tga", _flat_normal(301, 203))
    _save(t / "clutter/snorm.png", _pattern(16))
    (t / "clutter/snorm_n.dds").write_bytes(_bc5_normal(signed=True))
    _save(t / "clutter/unorm.png", _pattern(17))
    (t / "clutter/unorm_n.dds").write_bytes(_bc5_normal(signed=False))
    _save(t / "clutter/Ärmel.png", _pattern(18))
    _save(t / "clutter/rock.old.png", _pattern(19))
    _save(t / "pbr/already/done.dds", _pattern(20), "BC7")  # a True PBR set already: never an input
    (root / "Whiterun Lamps - Meshes.bsa").write_bytes(b"BSA\0" + bytes(60))  # loose textures too: a warning
    return root


def _digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _cli_batch(folder: Path, out: Path, models: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "addon.cli", "batch", "--input", str(folder), "--output", str(out),
         "--models", str(models), "--provider", "cpu", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600)


def _files_under(out: Path, sub: str) -> list[str]:
    """The files under out/sub, as paths relative to out."""
    return sorted(p.relative_to(out).as_posix() for p in (out / sub).rglob("*") if p.is_file())


def _check_dds(path: Path, dxgi: int, size: tuple) -> DdsLayout:
    """The file the game loads: typed DX10 format, whole-block level 0 of the expected size, full
    mip chain, every level decodable."""
    layout = DdsLayout(path.read_bytes())  # also checks that every level's bytes are there
    assert (layout.dxgi, layout.width, layout.height) == (dxgi, *size), path
    assert dds.is_block_aligned(layout.width, layout.height), path
    assert layout.mip_count == dds.mip_count(*size), path
    for level in range(layout.mip_count):
        layout.decode(level)
    return layout


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_models_dir):
    root = tmp_path_factory.mktemp("mini")
    mod = build_mod(root / "Whiterun Lamps")
    originals = _digest(mod)
    out = root / "out"
    run = _cli_batch(mod / "textures", out, tiny_models_dir)  # the JSON is still named after the mod
    return mod, out, originals, run


def test_the_run_succeeds_and_leaves_the_originals_and_only_installable_files(converted):
    mod, out, originals, run = converted
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert _digest(mod) == originals
    # The mod folder name, not the `textures` folder given as input, names the JSON.
    assert sorted(p.name for p in out.iterdir()) == ["PBRNifPatcher", "textures"]
    assert _files_under(out, "PBRNifPatcher") == ["PBRNifPatcher/Whiterun Lamps.json"]
    run_files = batch.run_files_dir(out)
    assert {batch.JOURNAL_NAME, batch.SUMMARY_NAME} <= {p.name for p in run_files.iterdir()}


def test_every_set_file_is_what_the_game_loads(converted):
    _mod, out, _originals, _run = converted
    expected = []
    for stem, size in CONVERTED.items():
        suffixes = {"": 99, "_n": 98, "_rmaos": 98, "_p": 80}
        if stem == "dungeons/lamp":
            suffixes["_g"] = 99
        for suffix, dxgi in suffixes.items():
            path = out / "textures/pbr" / f"{stem}{suffix}.dds"
            expected.append(path.relative_to(out).as_posix())
            _check_dds(path, dxgi, size)
        height = DdsLayout((out / "textures/pbr" / f"{stem}_p.dds").read_bytes()).decode(0)[..., 0] / 255
        assert abs(height.mean() - 0.5) < 0.01, stem  # the surface level, as the shader expects
    assert _files_under(out, "textures") == sorted(expected)  # nothing for skin, landscape, _msn, pbr/


def test_glow_is_carried_into_the_set(converted):
    mod, out, _originals, _run = converted
    glow = DdsLayout((out / "textures/pbr/dungeons/lamp_g.dds").read_bytes()).decode(0)[..., :3]
    source = np.rint(read_image(mod / "textures/dungeons/lamp_g.png") * 255)
    assert np.abs(glow.astype(int) - source).max() <= 8


@pytest.mark.parametrize("stem", ["clutter/snorm", "clutter/unorm"])
def test_bc5_normals_signed_or_not_keep_their_vector(converted, stem):
    _mod, out, _originals, _run = converted
    pixels = DdsLayout((out / "textures/pbr" / f"{stem}_n.dds").read_bytes()).decode(0)
    vector = pixels[..., :3].reshape(-1, 3).mean(axis=0) / 255 * 2 - 1
    x, y = SIGNED_NORMAL
    assert vector == pytest.approx([x, y, np.sqrt(1 - x * x - y * y)], abs=0.03)


def test_patcher_entries_follow_the_rules(converted):
    _mod, out, _originals, _run = converted
    entries = json.loads((out / "PBRNifPatcher/Whiterun Lamps.json").read_text(encoding="utf-8"))
    assert [e["texture"] for e in entries] == sorted((s.replace("/", "\\") for s in CONVERTED), key=str.lower)
    for entry in entries:
        assert "smooth_angle" not in entry and "lock_normal" not in entry, entry
        assert entry["emissive"] is (entry["texture"] == "dungeons\\lamp"), entry
        assert entry["subsurface"] is False and entry["specular_level"] == 0.04
        assert isinstance(entry["parallax"], bool)


def test_the_summary_says_what_was_left_out_changed_or_warned(converted):
    _mod, out, _originals, run = converted
    summary = json.loads(batch.default_summary_path(out).read_text(encoding="utf-8"))
    assert summary["converted"] == len(CONVERTED) and summary["failed"] == 0
    assert summary["model_space_normal"] == {"handling": "skip", "sets": [f"{MODEL_SPACE}.dds"]}
    assert sorted(summary["skin"]) == sorted(f"{s}.png" for s in SKIN)
    assert summary["landscape"] == [f"{LANDSCAPE}.png"]
    reasons = {i["texture"]: i["reason"] for i in summary["ignored"]}
    assert "model-space normal" in reasons[f"{MODEL_SPACE}.dds"]
    assert "landscape" in reasons[f"{LANDSCAPE}.png"] and "PBRTextureSets" in reasons[f"{LANDSCAPE}.png"]
    for stem in SKIN:
        assert "skin" in reasons[f"{stem}.png"]
    for stem in NOT_DIFFUSES:
        assert "not a diffuse" in reasons[f"{stem}.png"]
    assert not any(name.startswith("pbr/") for name in reasons)
    warnings = "\n".join(summary["warnings"])
    assert "clutter/odd.tga: the diffuse is 301x203" in warnings and "resampled to 300x204" in warnings
    assert "clutter/Ärmel.png: the path has non-ASCII characters, and PGPatcher skips" in warnings
    assert "clutter/rock.old.png: the name has a dot" in warnings
    assert "The BSA archives Whiterun Lamps - Meshes.bsa were not read; extract them first" in warnings
    assert f"{len(CONVERTED)} converted" in run.stdout


def test_a_rerun_resumes_everything_as_done(converted, tiny_models_dir):
    mod, out, _originals, _run = converted
    again = _cli_batch(mod / "textures", out, tiny_models_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"0 converted, {len(CONVERTED)} already done" in again.stdout


def test_model_space_sets_kept_on_request_lock_their_normal(tmp_path, tiny_models_dir):
    mod = tmp_path / "Daedric"
    _save(mod / "textures" / f"{MODEL_SPACE}.dds", _pattern(3), "BC7")
    _save(mod / "textures" / f"{MODEL_SPACE}_msn.dds", _pattern(4), "BC7")
    out = tmp_path / "out"
    run = _cli_batch(mod, out, tiny_models_dir, "--model-space-normals", "keep", "--name", "Daedric PBR",
                     "--smooth-angle", "60")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _files_under(out, "textures") == [f"textures/pbr/{MODEL_SPACE}{s}.dds" for s in ("", "_p", "_rmaos")]
    [entry] = json.loads((out / "PBRNifPatcher/Daedric PBR.json").read_text(encoding="utf-8"))
    assert entry["lock_normal"] is True and entry["smooth_angle"] == 60
    summary = json.loads(batch.default_summary_path(out).read_text(encoding="utf-8"))
    assert summary["model_space_normal"] == {"handling": "keep", "sets": [f"textures/{MODEL_SPACE}.dds"]}


def test_a_mod_of_only_bsa_archives_is_told_to_extract_them(tmp_path, tiny_models_dir):
    mod = tmp_path / "Packed"
    mod.mkdir()
    (mod / "Packed - Textures.bsa").write_bytes(b"BSA\0" + bytes(60))
    run = _cli_batch(mod, tmp_path / "out", tiny_models_dir)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "only in BSA archives (Packed - Textures.bsa); extract them first" in run.stderr
    assert run.stderr.count("\n") == 1
