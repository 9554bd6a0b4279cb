"""bpy images <-> numpy: same pixels as the engine's reader, top row first."""
import numpy as np

from addon.engine.imageio import read_image

from .builders import array_to_image, make_texture_pair


def test_file_image_reads_exactly_what_the_engine_reads(bpy, empty_scene, tmp_path):
    from addon.blender.images import image_to_array

    diffuse_path, _ = make_texture_pair(tmp_path, width=40, height=24)
    image = bpy.data.images.load(str(diffuse_path))
    np.testing.assert_array_equal(image_to_array(image), read_image(diffuse_path))


def test_packed_image_round_trips_top_row_first(bpy, empty_scene, tmp_path):
    from addon.blender.images import image_to_array

    array = np.zeros((6, 10, 4), dtype=np.float32)
    array[0, :, 0] = 1.0  # top row red
    array[..., 3] = 1.0
    array[:, 3, 1] = 0.6  # exact in 8 bits (153 / 255)
    image = array_to_image("generated", array, is_data=True)
    assert image.colorspace_settings.is_data and tuple(image.size) == (10, 6)
    np.testing.assert_allclose(image_to_array(image), array, atol=1e-6)
