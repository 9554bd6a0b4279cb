"""The DDS writer: block formats, DX10 headers, full mip chains and what decoders read back."""
import io
import struct

import numpy as np
import pytest
from PIL import Image

from addon.engine import dds
from addon.engine.imageio import read_image
from .helpers import DdsLayout


def _gradient(height, width, alpha=255):
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    rgba[..., 0] = np.linspace(0, 255, width)[None, :]
    rgba[..., 1] = np.linspace(255, 0, height)[:, None]
    rgba[..., 2] = 90
    rgba[..., 3] = alpha
    return rgba


@pytest.mark.parametrize("fmt, srgb, dxgi", [
    ("BC7", True, 99), ("BC7", False, 98), ("BC1", True, 72), ("BC1", False, 71),
    ("BC3", True, 78), ("BC3", False, 77), ("BC4", False, 80), ("BC5", False, 83),
])
def test_header_describes_a_typed_dx10_texture_with_a_full_mip_chain(fmt, srgb, dxgi):
    data = dds.encode_dds(_gradient(64, 32), fmt, srgb)
    assert data[:4] == b"DDS "
    size, flags, height, width, linear_size, _depth, mips = struct.unpack_from("<7I", data, 4)
    assert (size, height, width, mips) == (124, 64, 32, 7)
    assert flags & 0x20000 and flags & 0x80000  # MIPMAPCOUNT, LINEARSIZE
    assert linear_size == (32 // 4) * (64 // 4) * dds.BLOCK_BYTES[fmt]
    assert data[84:88] == b"DX10"
    (caps,) = struct.unpack_from("<I", data, 108)
    assert caps == 0x1000 | 0x8 | 0x400000
    assert struct.unpack_from("<5I", data, 128) == (dxgi, 3, 0, 1, 0)
    layout = DdsLayout(data)  # raises unless every level's bytes are present, no more
    assert [lvl[1:] for lvl in layout.levels] == [(32, 64), (16, 32), (8, 16), (4, 8), (2, 4), (1, 2), (1, 1)]


@pytest.mark.parametrize("fmt, srgb, channels, tolerance", [
    ("BC7", True, 4, 10), ("BC7", False, 4, 10), ("BC1", False, 3, 16), ("BC3", True, 4, 16),
    ("BC4", False, 1, 3), ("BC5", False, 2, 3),
])
def test_top_level_decodes_back_to_the_source_pixels(fmt, srgb, channels, tolerance):
    source = _gradient(64, 64, alpha=180)
    layout = DdsLayout(dds.encode_dds(source, fmt, srgb))
    decoded = layout.decode(0)
    error = np.abs(decoded[..., :channels].astype(int) - source[..., :channels])
    assert error.max() <= tolerance
    assert error.mean() <= 3


def test_every_mip_level_decodes_to_the_filtered_chain():
    source = _gradient(32, 32) // 2 + 60
    layout = DdsLayout(dds.encode_dds(source, "BC7", False))
    chain = dds.mip_chain(source, "linear")
    for index, expected in enumerate(chain):
        error = np.abs(layout.decode(index).astype(int) - expected)
        assert error.max() <= 24 and error.mean() <= 5, index  # a wrong offset would be far off


@pytest.mark.parametrize("height, width", [(4, 4), (12, 20), (4, 132)])
def test_mips_that_are_not_whole_blocks_are_padded_and_keep_their_pixels(height, width):
    source = _gradient(height, width) // 8 + 100  # gentle slopes: the test is about padding, not BC7
    layout = DdsLayout(dds.encode_dds(source, "BC7", True))
    assert (layout.width, layout.height) == (width, height)
    assert layout.mip_count == dds.mip_count(width, height)
    assert layout.levels[-1][1:] == (1, 1)
    chain = dds.mip_chain(source, "color")
    for index, expected in enumerate(chain):  # 3x5, 1x33, ... levels are padded to whole blocks
        assert np.abs(layout.decode(index).astype(int) - expected).max() <= 12, index  # BC7 error, not offsets


@pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (5, 7), (203, 301)])
def test_a_level_0_the_game_would_refuse_is_not_written(height, width):
    with pytest.raises(ValueError, match="multiples of 4"):
        dds.encode_dds(np.zeros((height, width, 4), np.uint8), "BC7", True)


@pytest.mark.parametrize("size, aligned", [((301, 203), (300, 204)), ((1, 2), (4, 4)), ((6, 10), (8, 12)),
                                           ((1024, 512), (1024, 512))])
def test_block_aligned_size_is_the_nearest_multiple_of_4(size, aligned):
    assert dds.block_aligned_size(*size) == aligned


def test_colour_mips_average_in_linear_light():
    checker = np.zeros((4, 4, 4), dtype=np.uint8)
    checker[::2, ::2] = 255
    checker[1::2, 1::2] = 255
    checker[..., 3] = 255
    colour_mip = dds.mip_chain(checker, "color")[1]
    data_mip = dds.mip_chain(checker, "linear")[1]
    # Half white, half black is 50 % linear light = 188 in sRGB, not the 128 a naive average gives.
    assert np.all(np.abs(colour_mip[..., :3].astype(int) - 188) <= 1)
    assert np.all(np.abs(data_mip[..., :3].astype(int) - 128) <= 1)
    assert np.all(colour_mip[..., 3] == 255)


def test_normal_mips_are_renormalised_unit_vectors():
    tilted = np.array([0.6, 0.0, 0.8])
    normals = np.empty((2, 2, 3))
    normals[:, 0] = tilted
    normals[:, 1] = tilted * [-1, 1, 1]
    rgba = np.concatenate([np.rint((normals + 1) * 127.5), np.full((2, 2, 1), 255)], axis=-1).astype(np.uint8)
    mip = dds.mip_chain(rgba, "normal")[1][0, 0]
    vector = mip[:3] / 127.5 - 1
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=0.02)
    assert vector[2] == pytest.approx(1.0, abs=0.02)  # the average of the two tilts points straight up


def test_odd_sizes_halve_to_floor_with_area_weights():
    source = np.zeros((1, 3, 4), dtype=np.uint8)
    source[0, :, 0] = [0, 90, 180]
    mip = dds.mip_chain(source, "linear")[1]
    assert mip.shape == (1, 1, 4)
    assert mip[0, 0, 0] == 90  # the mean of all three, nothing dropped


@pytest.mark.parametrize("fmt, srgb", [("BC7", False), ("BC7", True), ("BC1", False), ("BC3", False), ("BC5", False)])
def test_pillow_decodes_the_same_pixels_as_texture2ddecoder(fmt, srgb):
    data = dds.encode_dds(_gradient(16, 16), fmt, srgb)
    image = Image.open(io.BytesIO(data))
    image.load()
    pixels = np.asarray(image.convert("RGB"))
    channels = 2 if fmt == "BC5" else 3
    expected = DdsLayout(data).decode(0)
    assert np.abs(pixels[..., :channels].astype(int) - expected[..., :channels]).max() <= 1


def test_write_dds_replaces_atomically_and_the_project_reader_opens_it(tmp_path):
    target = tmp_path / "out" / "wall.dds"
    dds.write_dds(target, _gradient(8, 8), "BC7", True)
    first = target.read_bytes()
    dds.write_dds(target, _gradient(8, 8, alpha=10), "BC7", True)
    assert target.read_bytes() != first
    assert sorted(p.name for p in target.parent.iterdir()) == ["wall.dds"]  # no temporary left behind
    pixels = read_image(target)
    assert pixels.shape == (8, 8, 4)
    assert abs(float(pixels[..., 3].mean()) - 10 / 255) < 0.02


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "wall.dds"
    dds.write_dds(target, _gradient(8, 8), "BC7", True)
    before = target.read_bytes()

    def no_space(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", no_space)
    with pytest.raises(OSError):
        dds.write_dds(target, _gradient(8, 8, alpha=0), "BC7", True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["wall.dds"]


def test_wrong_inputs_are_programming_errors():
    with pytest.raises(ValueError):
        dds.encode_dds(np.zeros((4, 4, 3), np.uint8), "BC7", True)
    with pytest.raises(ValueError):
        dds.encode_dds(np.zeros((4, 4, 4), np.uint8), "BC5", True)
    with pytest.raises(ValueError):
        DdsLayout(dds.encode_dds(np.zeros((8, 8, 4), np.uint8), "BC7", True)[:-1])


def test_one_header_reader_serves_the_layout_checker_and_the_image_reader(tmp_path):
    """dds.read_header is the only DDS header parser: our DX10 files, legacy FourCC files and
    broken headers read the same through DdsLayout and imageio."""
    from PIL import Image

    from addon.engine import imageio
    from addon.engine.errors import ImageReadError

    data = dds.encode_dds(np.zeros((8, 12, 4), np.uint8), "BC7", True)
    header = dds.read_header(data)
    assert (header.width, header.height, header.mip_field, header.dxgi, header.data_offset) == (
        12, 8, dds.mip_count(12, 8), 99, 4 + dds.HEADER_SIZE + dds.DX10_HEADER_SIZE)
    layout = DdsLayout(data)
    assert (layout.width, layout.height, layout.levels[0][0]) == (12, 8, header.data_offset)

    Image.new("RGB", (8, 4)).save(tmp_path / "legacy.dds", "DDS", pixel_format="DXT1")
    legacy = dds.read_header((tmp_path / "legacy.dds").read_bytes())
    assert (legacy.fourcc, legacy.dxgi, legacy.data_offset) == (b"DXT1", None, 4 + dds.HEADER_SIZE)
    with pytest.raises(ValueError, match="not a DX10"):
        DdsLayout((tmp_path / "legacy.dds").read_bytes())

    cut = data[:4 + dds.HEADER_SIZE + 5]  # the DX10 header cut short
    with pytest.raises(ImageReadError, match="DX10 header is truncated"):
        dds.read_header(cut)
    with pytest.raises(ImageReadError, match="DX10 header is truncated"):
        imageio.decode_image(cut, "cut.dds")
    with pytest.raises(ValueError, match="DX10 header is truncated"):
        DdsLayout(cut)
