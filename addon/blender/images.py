"""bpy images -> numpy arrays (float32, H x W x C, top row first, as the engine expects).

An image backed by a file on disk is read through `engine.imageio.read_image`, so the add-on sees
exactly the pixels the CLI and the trainer see (Blender's own DDS reader refuses some BC5 files
and may convert colour). Packed or generated images are read from Blender's pixel buffer.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..engine.errors import ImageReadError
from ..engine.imageio import read_image


def image_file_path(image: bpy.types.Image) -> Path | None:
    """The absolute path of the file behind an image, or None for generated/packed-only images."""
    if image.source not in {'FILE', 'TILED'} or not image.filepath:
        return None
    return Path(bpy.path.abspath(image.filepath, library=image.library))


def image_to_array(image: bpy.types.Image) -> np.ndarray:
    """The image's pixels as float32 H x W x C in [0, 1], top row first.

    Raises ImageReadError when the image points to a file that is missing and nothing is packed.
    """
    path = image_file_path(image)
    if path is not None and image.packed_file is None:
        if not path.is_file():
            raise ImageReadError(
                f"The image '{image.name}' points to '{path}', which does not exist; "
                "relink it with File > External Data > Find Missing Files."
            )
        return read_image(path)
    return _pixels_to_array(image)


def _pixels_to_array(image: bpy.types.Image) -> np.ndarray:
    width, height = image.size
    channels = image.channels
    if width == 0 or height == 0:
        raise ImageReadError(f"The image '{image.name}' has no pixels; reload or repack it.")
    buffer = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    # Blender stores rows bottom-up; the engine works top row first.
    return np.ascontiguousarray(buffer.reshape(height, width, channels)[::-1])
