"""The bad-input suite: every kind of input, output and models fault a user can run into, through
the real CLI entry (`addon.cli.main`), one table row each.

For every row the test checks the exit code, the message, that no original changed (sha256 of
every file that existed before the run), that nothing was written outside the output folder (and,
for a batch, its run-files folder beside it), and that every file the run left under a final name is complete (no temporary file left either).
The images are generated here and tiny; the models are the seeded tiny set (tests/conftest.py).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addon import cli
from addon.engine import batch, dds, imageio
from addon.engine.imageio import read_image
from addon.engine.manifest import FORMAT_VERSION

CASES = []


def case(exit_code: int, message: str):
    """Register a row: `build(scene)` makes the fault and returns the CLI arguments; the output
    (stdout + stderr) must match the regular expression `message`."""
    def register(build):
        CASES.append(pytest.param(build, exit_code, message, id=build.__name__))
        return build
    return register


# --- files -------------------------------------------------------------------------------------

def _pixels(height, width, channels, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def _png(path, height=64, width=64, channels=3, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(height, width, channels, seed)).save(path, format="PNG")
    return path


def _png_claiming(path, width, height):
    """A valid tiny PNG whose header claims width x height (the pixel data is the 1x1 image's)."""
    buffer = path.parent / "tiny.bin"
    Image.fromarray(_pixels(1, 1, 3)).save(buffer, format="PNG")
    data = bytearray(buffer.read_bytes())
    buffer.unlink()
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _dds_claiming(path, width, height, fmt="BC1"):
    """A DX10 DDS (BC1 sRGB: decoded by texture2ddecoder, not Pillow) whose header claims width x height."""
    data = bytearray(dds.encode_dds(np.full((4, 4, 4), 128, np.uint8), fmt, srgb=True, mips=False))
    data[12:20] = struct.pack("<II", height, width)
    path.write_bytes(bytes(data))
    return path


def _legacy_dds_claiming(path, width, height):
    """A DXT1 DDS without DX10 header (the Pillow path) whose header claims width x height."""
    header = bytearray(124)
    struct.pack_into("<7I", header, 0, 124, 0x1007, height, width, 0, 0, 1)
    struct.pack_into("<2I4s", header, 72, 32, 0x4, b"DXT1")
    path.write_bytes(b"DDS " + bytes(header) + bytes(64))
    return path


def _tga_claiming(path, width, height):
    path.write_bytes(struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, width, height, 24, 0) + bytes(96))
    return path


def _float_tiff(path, bad_value):
    values = np.random.default_rng(3).random((64, 64), dtype=np.float32)
    values[10, 20] = bad_value
    Image.fromarray(values, mode="F").save(path, format="TIFF")
    return path


def _deeply_nested(depth=100_000):
    return "[" * depth + "]" * depth


# --- the scene a row builds on -------------------------------------------------------------------

class Scene:
    """tmp/textures holds wall.png (RGBA) + wall_n.png and rock.tga; tmp/out is the default output."""

    def __init__(self, tmp: Path, models: Path, monkeypatch):
        self.tmp, self.models, self.monkeypatch = tmp, models, monkeypatch
        self.folder = tmp / "textures"
        self.out = tmp / "out"
        _png(self.folder / "wall.png", channels=4, seed=1)
        _png(self.folder / "wall_n.png", seed=2)
        self.folder.joinpath("rock.tga").parent.mkdir(exist_ok=True)
        Image.fromarray(_pixels(32, 32, 3, 3)).save(self.folder / "rock.tga", format="TGA")
        self._locks = []

    def convert(self, *extra, input=None, output=None):
        return ["convert", "--input", input or self.folder, "--output", output or self.out,
                "--models", self.models, "--provider", "cpu", "--tile", "64", "--overlap", "16",
                "--no-blend", *extra]

    def mod(self) -> Path:
        mod = self.tmp / "My Mod"
        _png(mod / "textures" / "stone.png", seed=4)
        _png(mod / "textures" / "stone_n.png", seed=5)
        return mod

    def batch(self, *extra, mod=None, output=None):
        return ["batch", "--input", mod or self.mod(), "--output", output or self.out,
                "--models", self.models, "--provider", "cpu", *extra]

    def models_copy(self, edit=None) -> Path:
        copy = self.tmp / "bad_models"
        shutil.copytree(self.models, copy)
        if edit is not None:
            manifest = copy / "manifest.json"
            data = json.loads(manifest.read_text(encoding="utf-8"))
            edit(data, copy)
            manifest.write_text(json.dumps(data), encoding="utf-8")
        return copy

    def hold_lock(self, folder: Path, lock_dir: Path | None = None):
        self._locks.append(batch.OutputFolderLock(folder, lock_dir=lock_dir))

    def fail_writes_under(self, folder: Path, error: int, name_part: str = ""):
        """os.replace into `folder` fails with `error` (what a full disk answers on the rename)."""
        real_replace = os.replace

        def replace(source, target):
            if Path(folder) in Path(target).parents and name_part in Path(target).name:
                raise OSError(error, os.strerror(error), str(target))
            return real_replace(source, target)

        self.monkeypatch.setattr(os, "replace", replace)

    def close(self):
        for lock in self._locks:
            lock.release()


@pytest.fixture
def scene(tmp_path, tiny_models_dir, monkeypatch):
    built = Scene(tmp_path, tiny_models_dir, monkeypatch)
    yield built
    built.close()


# --- input faults (convert) ----------------------------------------------------------------------

@case(2, r"FAILED \S*nothing: there is no such file or folder")
def missing_input(scene):
    return scene.convert(input=scene.tmp / "nothing")


@case(2, r"holds no diffuse textures")
def folder_without_textures(scene):
    (scene.tmp / "empty").mkdir()
    (scene.tmp / "empty" / "readme.txt").write_text("no textures here")
    return scene.convert(input=scene.tmp / "empty")


@case(2, r"--normal names the normal of one texture")
def normal_given_for_a_folder(scene):
    return scene.convert("--normal", scene.folder / "wall_n.png")


@case(1, r"FAILED \S*broken\.dds: Cannot read .*corrupt(.|\n)*Converted 2 of 3 textures \(1 failed\)")
def garbage_dds_among_good_textures(scene):
    (scene.folder / "broken.dds").write_bytes(b"DDS " + np.random.default_rng(0).bytes(300))
    return scene.convert()


@case(1, r"FAILED \S*cut\.dds: Cannot read .*truncated")
def truncated_dds(scene):
    full = dds.encode_dds(np.full((64, 64, 4), 128, np.uint8), "BC7", True)
    (scene.folder / "cut.dds").write_bytes(full[: len(full) // 3])
    return scene.convert()


@case(1, r"FAILED \S*cut\.png: Cannot read .*(corrupt|truncated)")
def truncated_png(scene):
    data = _png(scene.tmp / "whole.png", seed=9).read_bytes()
    (scene.folder / "cut.png").write_bytes(data[: len(data) // 2])
    (scene.tmp / "whole.png").unlink()
    return scene.convert()


@case(1, r"FAILED \S*zero\.png: Cannot read .*not a PNG, TGA")
def zero_byte_file(scene):
    (scene.folder / "zero.png").write_bytes(b"")
    return scene.convert()


@case(1, r"FAILED \S*notes\.png: Cannot read .*not a PNG, TGA")
def text_file_named_png(scene):
    (scene.folder / "notes.png").write_text("these are not pixels")
    return scene.convert()


@case(1, r"FAILED \S*huge\.png: Cannot read .*13000x13000 pixels.*up to 8192 pixels per side; resize it")
def png_of_13000_pixels_per_side(scene):
    _png_claiming(scene.folder / "huge.png", 13000, 13000)
    return scene.convert()


@case(1, r"FAILED \S*huge\.dds: Cannot read .*16384x16384 pixels.*8192")
def dx10_bc1_dds_of_16k(scene):
    _dds_claiming(scene.folder / "huge.dds", 16384, 16384)
    return scene.convert()


@case(1, r"FAILED \S*huge\.dds: Cannot read .*9000x4000 pixels")
def legacy_dxt1_dds_too_wide(scene):
    _legacy_dds_claiming(scene.folder / "huge.dds", 9000, 4000)
    return scene.convert()


@case(1, r"FAILED \S*huge\.tga: Cannot read .*10000x10000 pixels")
def tga_of_10000_pixels_per_side(scene):
    _tga_claiming(scene.folder / "huge.tga", 10000, 10000)
    return scene.convert()


@case(0, r"warning: The diffuse image has 1 pixel\(s\) that are not numbers")
def float_tiff_with_a_nan_pixel(scene):
    return scene.convert(input=_float_tiff(scene.folder / "float.tif", np.nan))


@case(0, r"OK \S*float\.tif")
def float_tiff_with_an_infinite_pixel(scene):
    """Clipped to 1 when read, like every float value above 1."""
    return scene.convert(input=_float_tiff(scene.folder / "float.tif", np.inf))


@case(1, r"FAILED \S*wall\.png: The normal image has shape .*3 or 4 channels")
def grey_image_as_normal_map(scene):
    return scene.convert("--normal", _float_tiff(scene.tmp / "grey.tif", 0.5), input=scene.folder / "wall.png")


@case(0, r"note: left out pipe\.png: not a regular file(.|\n)*Converted 2 of 2")
def fifo_in_the_folder(scene):
    os.mkfifo(scene.folder / "pipe.png")
    return scene.convert()


@case(2, r"FAILED \S*pipe\.png: it is not a regular file")
def fifo_as_the_input(scene):
    os.mkfifo(scene.folder / "pipe.png")
    return scene.convert(input=scene.folder / "pipe.png")


@case(1, r"FAILED \S*wall\.png: Cannot read \S*pipe_n\.png\S*: it is not a regular file")
def fifo_as_the_normal(scene):
    os.mkfifo(scene.tmp / "pipe_n.png")
    return scene.convert("--normal", scene.tmp / "pipe_n.png", input=scene.folder / "wall.png")


@case(0, r"note: left out gone\.png: not a regular file \(a pipe, device or broken link\)")
def broken_link_in_the_folder(scene):
    (scene.folder / "gone.png").symlink_to(scene.tmp / "deleted.png")
    return scene.convert()


@case(1, r"FAILED \S*wall\.png: Cannot read \S*missing_n\.png\S*: the file does not exist")
def normal_that_does_not_exist(scene):
    return scene.convert("--normal", scene.tmp / "missing_n.png", input=scene.folder / "wall.png")


@case(1, r"FAILED \S*wall\.png: Cannot read \S*junk_n\.png")
def corrupt_normal(scene):
    (scene.tmp / "junk_n.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    return scene.convert("--normal", scene.tmp / "junk_n.png", input=scene.folder / "wall.png")


@case(0, r"warning: The normal map is 32x32 but the diffuse is 64x64; the normal was resampled")
def normal_of_another_size(scene):
    return scene.convert("--normal", _png(scene.tmp / "small_n.png", 32, 32), input=scene.folder / "wall.png")


@case(1, r"FAILED \S*locked\.png: Cannot read \S*: Permission denied; check the file's permissions")
def unreadable_input(scene):
    _png(scene.folder / "locked.png", seed=7)
    real_open = open

    def refusing_open(path, *args, **kwargs):  # what a file without read permission answers
        if Path(path).name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    scene.monkeypatch.setattr(imageio, "open", refusing_open, raising=False)
    return scene.convert()


@case(1, r"FAILED \S*wall_d\.png: another input already wrote the 'wall' set")
def two_diffuses_with_one_set_name(scene):
    _png(scene.folder / "wall_d.png", seed=8)
    return scene.convert()


@case(0, r"note: left out rock\.png: same name as rock\.tga, which was used")
def same_name_with_two_extensions(scene):
    _png(scene.folder / "rock.png", seed=8)
    return scene.convert()


# --- output faults (convert) ---------------------------------------------------------------------

@case(2, r"FAILED \S*textures: The output folder .* is the input folder or inside it.*--allow-output-inside-input")
def output_is_the_input_folder(scene):
    scene.out = scene.folder
    return scene.convert()


@case(2, r"The output folder .* is the input folder or inside it")
def output_inside_the_input_folder(scene):
    scene.out = scene.folder / "pbr_out"
    return scene.convert()


@case(2, r"The output folder .* is the input folder or inside it")
def output_beside_a_single_input_file(scene):
    scene.out = scene.folder
    return scene.convert(input=scene.folder / "wall.png")


@case(2, r"The output folder .* is the input folder or inside it")
def output_is_a_link_to_the_input_folder(scene):
    (scene.tmp / "link").symlink_to(scene.folder)
    scene.out = scene.tmp / "link"
    return scene.convert()


@case(1, r"FAILED \S*a\.png: The albedo output \S*a_albedo\.png' would overwrite an input file")
def outputs_that_would_replace_other_inputs(scene):
    """The issue's case: output = input folder (allowed), and a's albedo is another input."""
    folder = scene.tmp / "set"
    for name, seed in (("a.png", 1), ("a_n.png", 2), ("a_albedo.png", 3), ("a_height.png", 4)):
        _png(folder / name, seed=seed)
    scene.out = folder
    return scene.convert("--allow-output-inside-input", input=folder, output=folder)


@case(1, r"FAILED \S*wall\.png: The albedo output .* would overwrite an input file")
def normal_that_is_an_output_of_the_set(scene):
    _png(scene.out / "wall_albedo.png", seed=6)
    return scene.convert("--normal", scene.out / "wall_albedo.png", input=scene.folder / "wall.png")


@case(2, r"FAILED \S*out: The output .* is a file, not a folder")
def output_is_a_file(scene):
    scene.out.write_text("a file")
    return scene.convert()


@case(2, r"FAILED \S*wall\.png: The output .* is a file, not a folder")
def output_is_the_input_file(scene):
    scene.out = scene.folder / "wall.png"
    return scene.convert(input=scene.folder / "wall.png", output=scene.folder / "wall.png")


@case(2, r"FAILED \S*sub: Cannot write to the output folder .*Not a directory")
def output_under_a_file(scene):
    (scene.tmp / "file").write_text("a file")
    scene.out = scene.tmp / "file" / "sub"
    return scene.convert()


@case(1, r"FAILED \S*rock\.tga: Could not write the outputs .*Permission denied; check the folder's "
         r"permissions(.|\n)*Converted 0 of 2 textures \(2 failed\)")
def read_only_output_folder(scene):
    real_create_temporary = imageio.create_temporary

    def create_temporary(folder):  # what a read-only folder answers (even for root)
        if Path(folder) == scene.out:
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real_create_temporary(folder)

    scene.monkeypatch.setattr(imageio, "create_temporary", create_temporary)
    return scene.convert()


@case(1, r"FAILED \S*wall\.png: Could not write the outputs \S*wall_\w+\.png': No space left on device; "
         r"free some disk space(.|\n)*Converted 0 of 2")
def disk_full(scene):
    scene.fail_writes_under(scene.out, errno.ENOSPC)
    return scene.convert()


@case(1, r"FAILED \S*rock\.tga: .*No space left on device(.|\n)*Converted 1 of 2 textures \(1 failed\)")
def disk_full_during_one_set(scene):
    scene.fail_writes_under(scene.out, errno.ENOSPC, name_part="rock")
    return scene.convert()


@case(1, r"FAILED \S*wall\.png: Could not write the outputs .*No space left on device")
def disk_full_while_flushing(scene):
    def fsync(_descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    scene.monkeypatch.setattr(os, "fsync", fsync)
    return scene.convert(input=scene.folder / "wall.png")


@case(0, r"OK \S*a{241}\.png")
def names_just_under_the_255_byte_limit(scene):
    """'<241 a>_roughness.png' is 255 bytes: legal, and the temporary name must not break it."""
    return scene.convert(input=_png(scene.folder / ("a" * 241 + ".png"), seed=5))


@case(1, r"FAILED \S*a{245}\.png: Could not write the outputs .*File name too long; shorten the texture's name")
def names_over_the_255_byte_limit(scene):
    return scene.convert(input=_png(scene.folder / ("a" * 245 + ".png"), seed=5))


@case(1, r"FAILED \S*wall\.png: Could not write the outputs \S*wall_albedo\.png': Is a directory; a folder is in "
         r"the way(.|\n)*Converted 1 of 2")
def folder_where_an_output_goes(scene):
    (scene.out / "wall_albedo.png").mkdir(parents=True)
    return scene.convert()


@case(2, r"FAILED \S*out: Another PBR Forge run \(process \d+\) is writing into the output folder")
def output_folder_in_use_by_another_run(scene):
    scene.hold_lock(scene.out)
    return scene.convert()


# --- models faults (convert) ---------------------------------------------------------------------

@case(2, r"FAILED \S*nowhere: There is no manifest\.json")
def models_folder_missing(scene):
    return scene.convert("--models", scene.tmp / "nowhere")


@case(2, r"FAILED \S*bad_models: onnxruntime cannot load 'unet_albedo\.onnx'(.|\n)*Converted 0 of 2 textures\.$")
def model_onnxruntime_cannot_load(scene):
    def damage(data, folder):
        (folder / "unet_albedo.onnx").write_bytes(b"not an onnx graph" * 10)
        data["models"]["albedo"]["sha256"] = hashlib.sha256(b"not an onnx graph" * 10).hexdigest()

    return scene.convert("--models", scene.models_copy(damage))


@case(2, rf"has format version '{FORMAT_VERSION}' written as text, but this PBR Forge reads format version "
         rf"{FORMAT_VERSION} written as a number")
def manifest_version_as_text(scene):
    return scene.convert("--models", scene.models_copy(
        lambda data, _folder: data.update(format_version=str(FORMAT_VERSION))))


@case(2, r"FAILED \S*bad_models: \S*manifest\.json' is nested too deeply")
def manifest_nested_too_deeply(scene):
    models = scene.models_copy()
    (models / "manifest.json").write_text(_deeply_nested())
    return scene.convert("--models", models)


@case(2, r"manifest\.json' is not valid JSON")
def manifest_not_json(scene):
    models = scene.models_copy()
    (models / "manifest.json").write_text("{ not json")
    return scene.convert("--models", models)


@case(2, r"does not match the sha256 in its manifest")
def model_file_changed(scene):
    models = scene.models_copy()
    with open(models / "unet_maps.onnx", "ab") as stream:
        stream.write(b"\0")
    return scene.convert("--models", models)


@case(2, r"The tile size 3 is too small")
def tile_too_small(scene):
    return scene.convert("--tile", "3")


# --- batch faults --------------------------------------------------------------------------------

@case(0, r"1 converted, 0 already done, 0 failed, .* 1 files ignored")
def batch_fifo_in_the_mod(scene):
    mod = scene.mod()
    os.mkfifo(mod / "textures" / "pipe.dds")
    return scene.batch(mod=mod)


@case(2, r"error: \S*textures' is a link to \S*My Mod/textures', outside the output folder")
def batch_output_textures_is_a_link_into_the_mod(scene):
    """Stale-temporary cleanup must not delete the mod's own `.*.tmp` files through the link."""
    mod = scene.mod()
    (mod / "textures" / ".mine.tmp").write_text("the modder's file")
    scene.out.mkdir()
    (scene.out / "textures").symlink_to(mod / "textures")
    return scene.batch(mod=mod)


@case(1, r"FAILED textures/stone\.png: The texture name .* points outside the output folder")
def batch_output_link_deeper_in_textures_into_the_mod(scene):
    """textures/pbr links into the mod: the set is refused and cleanup does not enter the link."""
    mod = scene.mod()
    (mod / "textures" / ".mine.tmp").write_text("the modder's file")
    (scene.out / "textures").mkdir(parents=True)
    (scene.out / "textures" / "pbr").symlink_to(mod / "textures")
    return scene.batch(mod=mod)


@case(2, r"error: \S*journal\.jsonl' is a symbolic link; PBR Forge does not write through links")
def batch_journal_is_a_link_into_the_mod(scene):
    mod = scene.mod()
    (mod / "notes.txt").write_text("the modder's notes\n")
    batch.run_files_dir(scene.out).mkdir()
    (batch.run_files_dir(scene.out) / batch.JOURNAL_NAME).symlink_to(mod / "notes.txt")
    return scene.batch(mod=mod)


@case(2, r"error: \S*out\.pbr_forge' is a symbolic link; PBR Forge does not write through links")
def batch_run_files_folder_is_a_link_into_the_mod(scene):
    mod = scene.mod()
    batch.run_files_dir(scene.out).symlink_to(mod / "textures", target_is_directory=True)
    return scene.batch(mod=mod)


@case(2, r"error: \S*journal\.jsonl' is not a regular file")
def batch_journal_is_a_fifo(scene):
    batch.run_files_dir(scene.out).mkdir()
    os.mkfifo(batch.run_files_dir(scene.out) / batch.JOURNAL_NAME)
    return scene.batch()


@case(2, r"error: \S*PBRNifPatcher' is a link to .*outside the output folder")
def batch_patcher_folder_is_a_link_into_the_mod(scene):
    mod = scene.mod()
    (mod / "PBRNifPatcher").mkdir()
    scene.out.mkdir()
    (scene.out / "PBRNifPatcher").symlink_to(mod / "PBRNifPatcher")
    return scene.batch(mod=mod)


@case(0, r"1 converted, 0 already done, 0 failed")
def batch_journal_with_a_deeply_nested_line(scene):
    batch.run_files_dir(scene.out).mkdir()
    (batch.run_files_dir(scene.out) / batch.JOURNAL_NAME).write_text(_deeply_nested() + "\n")
    return scene.batch()


@case(2, r"^error: onnxruntime cannot load 'unet_albedo\.onnx'[^\n]*\n$")
def batch_model_onnxruntime_cannot_load(scene):
    def damage(data, folder):
        (folder / "unet_albedo.onnx").write_bytes(b"garbage" * 10)
        data["models"]["albedo"]["sha256"] = hashlib.sha256(b"garbage" * 10).hexdigest()

    return scene.batch("--models", scene.models_copy(damage))


@case(2, r"error: .*nested too deeply")
def batch_manifest_nested_too_deeply(scene):
    models = scene.models_copy()
    (models / "manifest.json").write_text(_deeply_nested())
    return scene.batch("--models", models)


@case(2, r"error: Another PBR Forge run \(process \d+\) is writing into the output folder")
def batch_output_folder_in_use_by_another_run(scene):
    scene.hold_lock(scene.out, lock_dir=batch.run_files_dir(scene.out))  # where a batch keeps its lock
    return scene.batch()


@case(1, r"FAILED textures/huge\.png: Cannot read .*13000x13000 pixels")
def batch_png_of_13000_pixels_per_side(scene):
    mod = scene.mod()
    _png_claiming(mod / "textures" / "huge.png", 13000, 13000)
    return scene.batch(mod=mod)


@case(2, r"error: The output folder .* is the input folder or inside it")
def batch_output_inside_the_mod(scene):
    mod = scene.mod()
    scene.out = mod / "out"
    return scene.batch(mod=mod)


@case(1, r"FAILED textures/stone\.png: Could not write the outputs .*No space left on device")
def batch_disk_full(scene):
    scene.fail_writes_under(scene.out / "textures", errno.ENOSPC)
    return scene.batch()


@case(2, r"error: The input folder .* does not exist")
def batch_missing_mod_folder(scene):
    return scene.batch(mod=scene.tmp / "no mod")


# --- the test ------------------------------------------------------------------------------------

def _regular_files(root: Path) -> dict[Path, str]:
    found = {}
    for folder, _subfolders, files in os.walk(root):  # links to folders are not followed
        for name in files:
            path = Path(folder) / name
            if path.is_file():  # not pipes, not broken links
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _assert_complete(path: Path) -> None:
    """A file under a final name is whole: it decodes or parses."""
    assert not (path.name.startswith(".") and path.name.endswith(".tmp")), f"temporary file left: {path}"
    suffix = path.suffix.lower()
    if suffix in (".png", ".dds", ".tga"):
        read_image(path)
    elif suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix == ".jsonl":
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                json.loads(line)


@pytest.mark.parametrize("build, exit_code, message", CASES)
def test_fault(build, exit_code, message, scene, capsys):
    argv = [str(arg) for arg in build(scene)]
    models = {p.resolve() for p in _regular_files(scene.models)}
    before = _regular_files(scene.tmp)
    # The journal is the run's own record, appended to by design (unless it is a link to someone else's file).
    originals = {path: digest for path, digest in before.items()
                 if path.name != batch.JOURNAL_NAME or path.is_symlink()}

    code = cli.main(argv)

    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == exit_code, text
    assert re.search(message, text, flags=re.MULTILINE), text
    assert "Traceback" not in text
    after = _regular_files(scene.tmp)
    assert {path: after.get(path) for path in originals} == originals, "an original changed or vanished"
    # The output folder, and beside it the batch's own files (journal, lock, summary).
    outputs = (scene.out.resolve(), batch.run_files_dir(scene.out).resolve())
    for path in set(after) - set(before):
        real = path.resolve()
        assert any(real == o or o in real.parents for o in outputs) or real in models, \
            f"written outside the output: {path}"
        _assert_complete(path)


def test_the_suite_covers_at_least_40_kinds_of_fault():
    assert len(CASES) >= 40
