"""Converter end to end with the trainer-exported tiny models."""
import weakref

import numpy as np
import pytest

from addon.engine.errors import ConversionCancelled, PBRForgeError
from addon.engine.outputs import write_png_set
from addon.engine.imageio import read_image
from addon.engine.normalmaps import decode_normal, detect_normal_convention
from addon.engine.pipeline import Converter


@pytest.fixture(scope="module")
def converter(tiny_models_dir):
    return Converter(tiny_models_dir, provider="cpu", tile=64, overlap=16, batch_tiles=3)


def _tileable(height, width, channels, seed=0):
    """Smooth periodic texture (tiles seamlessly) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(height)[:, None, None] * 2 * np.pi / height
    x = np.arange(width)[None, :, None] * 2 * np.pi / width
    phase = rng.random((1, 1, channels)) * 6.28
    return (0.5 + 0.2 * np.sin(3 * x + phase) + 0.2 * np.cos(2 * y - phase)).astype(np.float32)


def _height_field_normal(height, width, opengl=True):
    y = np.arange(height)[:, None] * 2 * np.pi / height
    x = np.arange(width)[None, :] * 2 * np.pi / width
    # Analytic slopes (per pixel): np.gradient's one-sided edges would put a seam into the input itself.
    dh_dcol = (2 * np.cos(2 * x) * np.cos(3 * y) + 0.5 * np.cos(x + 2 * y)) * 2 * np.pi / width
    dh_drow = (-3 * np.sin(2 * x) * np.sin(3 * y) + np.cos(x + 2 * y)) * 2 * np.pi / height
    vectors = np.dstack([-dh_dcol * 4, (dh_drow if opengl else -dh_drow) * 4, np.ones_like(dh_dcol)])
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    return ((vectors + 1) / 2).astype(np.float32)


def test_result_has_every_map_at_the_input_size_in_range(converter):
    diffuse = _tileable(70, 100, 4)
    result = converter.convert(diffuse, _height_field_normal(70, 100, opengl=False), "directx")
    assert result.albedo.shape == (70, 100, 3) and result.normal.shape == (70, 100, 3)
    for name in ("roughness", "metallic", "ao", "height"):
        values = getattr(result, name)
        assert values.shape == (70, 100) and values.dtype == np.float32
        assert 0.0 <= values.min() and values.max() <= 1.0
    assert 0.0 <= result.albedo.min() and result.albedo.max() <= 1.0
    assert result.albedo.dtype == result.normal.dtype == np.float16  # half precision keeps 8K within 4 GB
    assert np.allclose(np.linalg.norm(result.normal.astype(np.float32), axis=2), 1.0, atol=2e-3)
    assert np.array_equal(result.alpha, diffuse[..., 3])  # alpha carried through untouched
    assert set(result.material_scores) == set(converter.manifest.material_classes)
    assert all(0.0 <= p <= 1.0 for p in result.material_scores.values())
    assert result.provider == "CPU" and result.seconds > 0 and result.warnings == []


def test_missing_normal_gives_a_flat_normal_and_a_warning(converter):
    result = converter.convert(_tileable(40, 40, 3))
    assert result.alpha is None
    assert np.array_equal(result.normal[..., 2], np.ones((40, 40), np.float32))
    assert any("No normal map" in w for w in result.warnings)


def test_normal_of_another_size_is_resampled_with_a_warning(converter):
    result = converter.convert(_tileable(64, 96, 3), _height_field_normal(32, 48), "opengl")
    assert result.normal.shape == (64, 96, 3)
    assert any("resampled" in w for w in result.warnings)


def test_directx_normals_get_their_green_flipped():
    encoded = np.full((2, 2, 3), (0.5, 0.8, 0.9), np.float32)
    opengl = decode_normal(encoded, "opengl", [])
    directx = decode_normal(encoded, "directx", [])
    assert opengl[0, 0, 1] > 0 and np.allclose(directx[..., 1], -opengl[..., 1])


def test_two_channel_normals_get_z_rebuilt():
    encoded = np.zeros((2, 2, 3), np.float32)
    encoded[..., :2] = 0.5  # BC5: x = y = 0, blue stored as 0
    assert np.allclose(decode_normal(encoded, "opengl", [])[..., 2], 1.0)


@pytest.mark.parametrize("opengl", [True, False])
def test_auto_detects_the_normal_convention_from_the_pixels(opengl):
    vectors = _height_field_normal(96, 128, opengl=opengl) * 2 - 1
    warnings = []
    assert detect_normal_convention(vectors, warnings) == ("opengl" if opengl else "directx")
    assert warnings == []


def test_step_api_reports_rising_progress_and_can_cancel(converter):
    job = converter.start(_tileable(150, 150, 3), None)
    progress = [job.step(), job.step()]
    assert 0 < progress[0] < progress[1] < 1 and not job.done
    job.cancel()
    assert job.done
    with pytest.raises(ConversionCancelled):
        job.result
    with pytest.raises(ConversionCancelled):
        job.step()


def test_step_api_runs_to_the_same_result_as_convert(converter):
    diffuse, normal = _tileable(80, 72, 3, seed=3), _height_field_normal(80, 72)
    job = converter.start(diffuse, normal, "opengl")
    while not job.done:
        job.step()
    direct = converter.convert(diffuse, normal, "opengl")
    assert job.progress == 1.0
    assert np.array_equal(job.result.albedo, direct.albedo) and np.array_equal(job.result.height, direct.height)


def test_a_job_lets_go_of_the_callers_images_once_their_stage_is_done(converter):
    # The 4 GB budget of an 8K set counts on this: the normal goes after the prepare step, the
    # diffuse once the albedo tiles are done, both long before the maps tiles.
    diffuse, normal = _tileable(150, 150, 4), _height_field_normal(150, 150)
    diffuse_alive, normal_alive = weakref.ref(diffuse), weakref.ref(normal)
    job = converter.start(diffuse, normal, "opengl")
    del diffuse, normal
    job.step()
    assert normal_alive() is None and diffuse_alive() is not None
    while diffuse_alive() is not None and not job.done:
        job.step()
    assert not job.done and diffuse_alive() is None
    while not job.done:
        job.step()
    assert job.result.alpha.shape == (150, 150)


def test_output_tiles_without_a_seam(converter):
    """Tile the converted maps 2x2: the step across the seam is no larger than steps inside."""
    result = converter.convert(_tileable(96, 160, 3, seed=1), _height_field_normal(96, 160), "opengl")
    for name in ("albedo", "roughness", "height"):
        values = getattr(result, name)
        tiled = np.concatenate([np.concatenate([values, values], 1)] * 2, 0)
        across_x = np.abs(tiled[:, 160] - tiled[:, 159]).max()
        across_y = np.abs(tiled[96] - tiled[95]).max()
        inside_x = np.abs(np.diff(values, axis=1)).max()
        inside_y = np.abs(np.diff(values, axis=0)).max()
        assert across_x <= inside_x and across_y <= inside_y, name


def test_textures_smaller_than_a_tile_and_odd_sizes_convert(converter):
    for shape in ((17, 23, 3), (1, 5, 3), (130, 33, 2)):
        result = converter.convert(np.random.default_rng(0).random(shape, dtype=np.float32))
        assert result.height.shape == shape[:2]


def test_bad_arguments_are_user_errors(tiny_models_dir, converter):
    with pytest.raises(PBRForgeError, match="overlap"):
        Converter(tiny_models_dir, tile=64, overlap=40)
    with pytest.raises(PBRForgeError, match="channels"):
        converter.start(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.float32))
    with pytest.raises(PBRForgeError, match="normal convention"):
        converter.start(np.zeros((8, 8, 3), np.float32), None, "left-handed")


def test_png_set_has_the_right_files_depths_and_never_overwrites_inputs(converter, tmp_path):
    diffuse = _tileable(24, 40, 4)
    result = converter.convert(diffuse)
    paths = write_png_set(result, tmp_path, "wall", converter.manifest.png_suffixes)
    assert {p.name for p in paths.values()} == {f"wall_{m}.png" for m in
                                               ("albedo", "roughness", "metallic", "ao", "height", "normal")}
    assert read_image(paths["albedo"]).shape == (24, 40, 4)
    assert read_image(paths["normal"]).shape == (24, 40, 3)
    for name in ("roughness", "ao"):
        assert read_image(paths[name]).shape == (24, 40, 1)
    with open(paths["height"], "rb") as handle:
        assert handle.read(25)[24] == 16
    assert np.abs(read_image(paths["height"])[..., 0] - result.height).max() < 1e-4
    with pytest.raises(PBRForgeError, match="overwrite an input"):
        write_png_set(result, tmp_path, "wall", converter.manifest.png_suffixes, inputs=[paths["ao"]])


def test_the_normal_maps_specular_alpha_reaches_the_models(converter):
    diffuse = _tileable(64, 64, 3)
    normal = _height_field_normal(64, 64)
    mask = np.dstack([normal, _tileable(64, 64, 1, seed=3)])
    flat = np.dstack([normal, np.full((64, 64, 1), 0.8, np.float32)])
    with_mask = converter.convert(diffuse, mask, "opengl")
    without = converter.convert(diffuse, normal, "opengl")
    # A flat alpha is no mask: the same result as no alpha at all; a real mask changes the maps.
    np.testing.assert_array_equal(converter.convert(diffuse, flat, "opengl").roughness, without.roughness)
    assert np.abs(with_mask.roughness - without.roughness).max() > 1e-4


def test_untrained_maps_model_returns_the_integrated_height_of_the_normal(converter):
    from addon.engine.priors import height_prior
    normal = _height_field_normal(64, 96)
    result = converter.convert(_tileable(64, 96, 3), normal, "opengl")
    unit = decode_normal(normal, "opengl", [])
    # The tiny models' height head is zero-initialised: height = the prior, fed tile by tile.
    np.testing.assert_allclose(result.height, height_prior(unit), atol=2e-3)


def _affine_graph(path, batch):
    """y = 2x + 1 over N,1,4,4 tiles, exported with a fixed batch (an int) or a free one (a name)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1, 4, 4])
    consts = [helper.make_tensor(name, TensorProto.FLOAT, [], [value]) for name, value in (("two", 2.0), ("one", 1.0))]
    nodes = [helper.make_node("Mul", ["x", "two"], ["twice"]), helper.make_node("Add", ["twice", "one"], ["y"])]
    graph = helper.make_graph(nodes, "affine", [x], [y], initializer=consts)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("count", [1, 2, 5])
def test_a_fixed_batch_graph_runs_any_tile_count_in_padded_batches_and_keeps_the_order(tmp_path, count):
    from addon.engine.manifest import fixed_batch
    from addon.engine.pipeline import _run_in_fixed_batches
    from addon.engine.sessions import ModelSession

    session = ModelSession(_affine_graph(tmp_path / "fixed.onnx", 2), "cpu", [])
    assert fixed_batch(session.session) == 2
    assert fixed_batch(ModelSession(_affine_graph(tmp_path / "free.onnx", "N"), "cpu", []).session) is None
    tiles = np.arange(count, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 4, 4), np.float32)
    out = _run_in_fixed_batches(session, {"x": tiles}, "y", fixed_batch(session.session))
    np.testing.assert_array_equal(out, 2 * tiles + 1)  # every tile, its own result, none of the padding
