"""Normal-map conventions, in their one home: the two-channel threshold shared by the pipeline and the
add-on's normal check, decoding and encoding in both conventions, and which convention an input uses."""
from types import SimpleNamespace

import numpy as np
import pytest

from addon.engine import imageio, normalmaps, outputs, pipeline, truepbr
from addon.engine.normalmaps import NO_Z_MAX_BLUE, decode_normal, encode_normal, input_convention, stores_no_z


def _encoded(blue: float) -> np.ndarray:
    """A normal map tilted in X and Y whose blue channel is `blue` everywhere."""
    encoded = np.empty((4, 4, 3), dtype=np.float32)
    encoded[..., 0], encoded[..., 1], encoded[..., 2] = 0.6, 0.45, blue
    return encoded


@pytest.mark.parametrize("blue", [0.0, NO_Z_MAX_BLUE, 2.0 / 255.0, 0.01, 0.5])
def test_the_pipeline_rebuilds_z_exactly_when_the_map_stores_no_z(blue):
    vectors = decode_normal(_encoded(blue), "opengl", [])
    rebuilt = bool(np.all(vectors[..., 2] > 0.9))  # a stored blue below 0.5 would point Z inwards
    assert rebuilt == stores_no_z(_encoded(blue)[..., 2])


def test_a_zero_blue_stores_no_z_and_a_real_one_does():
    assert stores_no_z(np.zeros((2, 2))) and stores_no_z(np.full((2, 2), NO_Z_MAX_BLUE))
    assert not stores_no_z(np.full((2, 2), 0.01)) and not stores_no_z(np.array([0.0, 0.8]))


def _unit_vectors(seed=0, shape=(8, 8)):
    vectors = np.random.default_rng(seed).normal(size=shape + (3,))
    vectors[..., 2] = np.abs(vectors[..., 2]) + 0.5
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("convention", ["opengl", "directx"])
def test_encoding_and_decoding_are_inverse_in_each_convention(convention):
    vectors = _unit_vectors()
    encoded = encode_normal(vectors, convention)
    assert encoded.dtype == np.float32 and encoded.min() >= 0 and encoded.max() <= 1
    np.testing.assert_allclose(decode_normal(encoded, convention, []), vectors, atol=1e-6)
    other = "directx" if convention == "opengl" else "opengl"
    np.testing.assert_allclose(decode_normal(encoded, other, [])[..., 1], -vectors[..., 1], atol=1e-6)


def test_every_writer_and_reader_uses_the_one_encoding(tmp_path):
    """The PNG set, the True PBR `_n` and the trainer's readers all go through normalmaps."""
    from trainer.data import common

    vectors = _unit_vectors(1)
    result = SimpleNamespace(normal=vectors.astype(np.float16))
    written = outputs.write_png_set(result, tmp_path, "set", {"normal": "_normal"})["normal"]
    np.testing.assert_array_equal(imageio.read_image(written),
                                  imageio.decode_image(imageio.encode_png(encode_normal(result.normal)), "n.png"))
    expected = np.rint(encode_normal(vectors.astype(np.float16).astype(np.float32), "directx") * 255)
    np.testing.assert_array_equal(truepbr.normal_rgba(result)[..., :3], expected.astype(np.uint8))
    np.testing.assert_array_equal(common.encode_normal(vectors, directx=True), encode_normal(vectors, "directx"))
    encoded = encode_normal(vectors, "directx")
    np.testing.assert_array_equal(common.decode_normal(encoded, directx=True), decode_normal(encoded, "directx", []))
    assert pipeline.decode_normal is normalmaps.decode_normal  # the pipeline has no decoder of its own
    assert pipeline.detect_normal_convention is normalmaps.detect_normal_convention


def test_the_convention_asked_for_wins_else_the_name_decides():
    assert input_convention("opengl", "rock_n.dds") == "opengl"
    assert input_convention("auto", "rock_n.dds") == "directx"          # Skyrim `_n`
    assert input_convention("auto", "rock_normal.png") == "opengl"      # Node Wrangler name
    assert input_convention("auto", "Rock_NormalDX.png") == "directx"   # the name says so
    assert input_convention("auto", "bricks.png") == "auto"             # nothing said: the pixels decide
    assert input_convention("auto", None) == "auto"
