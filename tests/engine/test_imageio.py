"""read_image / write_png on files the tests write themselves (PNG, TGA, JPG, BMP, TIFF, DDS)."""
import os
import subprocess
import sys
from pathlib import Path

import etcpak
import numpy as np
import pytest
from PIL import Image

from addon.engine.errors import ImageReadError
from addon.engine.imageio import read_image, write_atomically, write_png

from .helpers import dx10_dds, signed_bc5_dds

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pattern(height, width, channels, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def test_signed_bc5_normals_decode_to_the_stored_vector_with_z_rebuilt():
    from addon.engine.imageio import decode_image
    from addon.engine.normalmaps import decode_normal

    vectors = np.array([[[0.3, -0.2], [-0.6, 0.5]], [[0.0, 0.0], [-1.0, 1.0 / 127]]])
    decoded = decode_image(signed_bc5_dds(vectors), "n.dds")
    assert decoded.shape == (8, 8, 3) and decoded[..., 2].max() == 0.0  # like unsigned BC5: blue = 0
    normal = decode_normal(decoded, "opengl", [])
    # the case: (0.3, -0.2, 0.93) came back as (0.84, -0.54, 0.01)
    assert normal[0, 0] == pytest.approx([0.3, -0.2, np.sqrt(1 - 0.09 - 0.04)], abs=0.01)
    assert normal[0, 4] == pytest.approx([-0.6, 0.5, np.sqrt(1 - 0.36 - 0.25)], abs=0.01)
    assert normal[4, 0] == pytest.approx([0.0, 0.0, 1.0], abs=0.01)
    assert decoded[4, 4, 0] == 0.0  # -1 maps to 0 exactly, as unsigned BC5 stores it


@pytest.mark.parametrize("shape", [(9, 13), (9, 13, 2), (9, 13, 3), (9, 13, 4)])
@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip_keeps_values_channels_and_bit_depth(tmp_path, shape, bits):
    values = np.random.default_rng(1).random(shape).astype(np.float32)
    path = write_png(tmp_path / "x.png", values, bits=bits)
    read = read_image(path)
    expected = values if values.ndim == 3 else values[..., None]
    assert read.dtype == np.float32 and read.shape == expected.shape
    assert np.abs(read - expected).max() <= 0.5 / (2 ** bits - 1) + 1e-6
    assert Image.open(path).info.get("dpi") is None  # plain PNG, nothing extra
    with open(path, "rb") as handle:
        assert handle.read(32)[24] == bits  # IHDR bit depth byte


def test_write_png_leaves_no_temporary_files(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4)), bits=16)
    write_png(tmp_path / "a.png", np.ones((4, 4)), bits=16)  # replaces in place
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert read_image(tmp_path / "a.png").min() == 1.0


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_permissions_of_a_new_file(tmp_path, umask):
    """0o666 less the umask, as for any file the user's programs create (not mkstemp's owner-only)."""
    previous = os.umask(umask)
    try:
        write_atomically(tmp_path / "out.bin", b"payload")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_neither_importing_imageio_nor_writing_sets_the_umask(tmp_path):
    """Setting it, even to read it, races every other thread creating a file (Blender runs several)."""
    code = ("import os, sys; calls = []; real = os.umask; "
            "os.umask = lambda mask: calls.append(mask) or real(mask); "
            "from addon.engine.imageio import write_atomically; "
            "write_atomically(__import__('pathlib').Path(sys.argv[1]) / 'out.bin', b'x'); "
            "sys.exit(len(calls))")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_rows_come_top_row_first(tmp_path):
    values = np.zeros((4, 3), dtype=np.float32)
    values[0] = 1.0
    read = read_image(write_png(tmp_path / "top.png", values))
    assert read[0, :, 0].tolist() == [1.0, 1.0, 1.0] and read[1:].max() == 0.0


@pytest.mark.parametrize("extension, mode", [
    ("tga", "RGB"), ("tga", "RGBA"), ("bmp", "RGB"), ("tif", "RGBA"), ("png", "LA"), ("png", "L"),
])
def test_lossless_formats_decode_exactly(tmp_path, extension, mode):
    pixels = _pattern(7, 10, len(mode))
    path = tmp_path / f"img.{extension}"
    Image.fromarray(pixels if len(mode) > 1 else pixels[..., 0], mode).save(path)
    read = read_image(path)
    assert read.shape == (7, 10, len(mode))
    assert np.array_equal(np.rint(read * 255).astype(np.uint8), pixels)


def test_palette_png_expands_to_rgb_and_transparent_palette_to_rgba(tmp_path):
    pixels = _pattern(6, 6, 3)
    palette_image = Image.fromarray(pixels, "RGB").quantize(colors=8)
    palette_image.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (6, 6, 3)
    palette_image.save(tmp_path / "pt.png", transparency=0)
    read = read_image(tmp_path / "pt.png")
    assert read.shape == (6, 6, 4) and read[..., 3].min() == 0.0


def test_jpeg_decodes_close_to_source(tmp_path):
    pixels = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    read = read_image(tmp_path / "a.jpg")
    assert read.shape == (16, 16, 3)
    assert np.abs(read * 255 - pixels).max() < 4


def test_16bit_grey_tiff_keeps_16_bits(tmp_path):
    values = (np.arange(12).reshape(3, 4) * 5000 + 1).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "h.tif")
    assert np.array_equal(np.rint(read_image(tmp_path / "h.tif")[..., 0] * 65535), values)


@pytest.mark.parametrize("pixel_format, channels", [("DXT1", 3), ("DXT5", 4), ("BC5", 3)])
def test_pillow_written_dds_decodes_like_pillow(tmp_path, pixel_format, channels):
    pixels = _pattern(8, 12, channels)
    if pixel_format == "DXT1":
        pixels[:] = pixels[:4, :4].mean(axis=(0, 1)).astype(np.uint8)  # flat: lossless in BC1
    path = tmp_path / f"t_{pixel_format}.dds"
    Image.fromarray(pixels, "RGBA" if channels == 4 else "RGB").save(path, "DDS", pixel_format=pixel_format)
    read = read_image(path)
    reference = np.asarray(Image.open(path).convert("RGBA" if channels == 4 else "RGB"))
    assert read.shape == (8, 12, channels)  # DXT1 drops its opaque alpha
    assert np.array_equal(np.rint(read * 255).astype(np.uint8), reference)
    if pixel_format == "DXT1":
        assert np.abs(read * 255 - pixels).max() <= 4
    if pixel_format == "BC5":
        assert read[..., 2].max() == 0.0  # blue as stored: Z is reconstructed by the pipeline


def test_bc7_dds_from_etcpak_decodes_close_to_source(tmp_path):
    pixels = np.zeros((8, 16, 4), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, 16, dtype=np.uint8)[None, :]
    pixels[..., 1] = 128
    pixels[..., 3] = 255
    payload = etcpak.compress_bc7(pixels.tobytes(), 16, 8)
    path = tmp_path / "bc7.dds"
    path.write_bytes(dx10_dds(payload, 16, 8, dxgi_format=98))
    read = read_image(path)
    assert read.shape == (8, 16, 4)
    assert np.abs(read * 255 - pixels).max() <= 8


def test_bc1_srgb_dds_is_decoded_without_pillow(tmp_path, monkeypatch):
    """DXGI 72 (BC1_UNORM_SRGB) is what the project's DDS writer emits; Pillow 13 refuses it, so the
    engine decodes it itself (whatever a later Pillow can do)."""
    pixels = np.zeros((8, 8, 4), dtype=np.uint8)
    pixels[..., 0], pixels[..., 2], pixels[..., 3] = 255, 0, 255  # pure red survives BC1 exactly
    path = tmp_path / "bc1srgb.dds"
    path.write_bytes(dx10_dds(etcpak.compress_bc1(pixels.tobytes(), 8, 8), 8, 8, dxgi_format=72))

    def no_pillow(*args, **kwargs):
        raise AssertionError("BC1_UNORM_SRGB went through Pillow")

    monkeypatch.setattr("addon.engine.imageio.Image.open", no_pillow)
    read = read_image(path)
    assert read.shape == (8, 8, 3)  # RGB, not BGR
    assert read[..., 0].min() == 1.0 and read[..., 1:].max() == 0.0


def test_bgra8_dds_is_reordered_to_rgba(tmp_path):
    pixels = _pattern(4, 5, 4)
    bgra = pixels[..., [2, 1, 0, 3]].tobytes()
    path = tmp_path / "bgra.dds"
    path.write_bytes(dx10_dds(bgra, 5, 4, dxgi_format=87))
    assert np.array_equal(np.rint(read_image(path) * 255).astype(np.uint8), pixels)


def test_only_the_top_mip_is_read(tmp_path):
    top = np.full((8, 8, 4), (255, 0, 0, 255), dtype=np.uint8)
    mip = np.full((4, 4, 4), (0, 0, 255, 255), dtype=np.uint8)
    payload = etcpak.compress_bc1(top.tobytes(), 8, 8) + etcpak.compress_bc1(mip.tobytes(), 4, 4)
    path = tmp_path / "mips.dds"
    path.write_bytes(dx10_dds(payload, 8, 8, dxgi_format=72))
    assert read_image(path).shape == (8, 8, 3)
    assert read_image(path)[..., 2].max() == 0.0


def _truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make_bad_file", [
    lambda d: d / "missing.png",
    lambda d: _write(d / "noise.png", np.random.default_rng(0).bytes(300)),
    lambda d: _write(d / "empty.tga", b""),
    lambda d: _truncate(write_png(d / "cut.png", np.random.default_rng(0).random((64, 64, 3))), 200),
    lambda d: _write(d / "hdr.dds", b"DDS " + b"\x7c\0\0\0" + b"\0" * 20),
    lambda d: _write(d / "cut.dds", dx10_dds(etcpak.compress_bc1(bytes(64 * 64 * 4), 64, 64), 64, 64, 72)[:400]),
    lambda d: _write(d / "cut7.dds", dx10_dds(etcpak.compress_bc7(bytes(64 * 64 * 4), 64, 64), 64, 64, 98)[:400]),
], ids=["missing", "noise", "empty", "truncated_png", "truncated_dds_header", "truncated_bc1_srgb",
        "truncated_bc7"])
def test_bad_files_raise_one_sentence_image_read_error(tmp_path, make_bad_file):
    path = make_bad_file(tmp_path)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert path.name in message
    assert "\n" not in message and message.endswith(".")


def test_reading_never_modifies_the_input(tmp_path):
    path = write_png(tmp_path / "in.png", np.random.default_rng(0).random((8, 8, 3)))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    path.chmod(0o444)  # read-only input still reads
    read_image(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
