"""How a normal-map image stores its vectors: the conventions shared by every module that reads one.

A two-channel normal map (BC5, or RG saved into an RGB file) stores X and Y only: its blue channel is
0. Z is then rebuilt from X and Y, and the map cannot be judged by its blue channel.
engine/pipeline.py and blender/detect.py both decide it with `stores_no_z`. The threshold is a float64 1/255: an 8-bit
blue of 1, decoded to float32 (0.0039215689), lies just above it and counts as a stored Z.
"""
from __future__ import annotations

import numpy as np

NO_Z_MAX_BLUE = 1.0 / 255.0  # the largest blue value of a map that stores no Z


def stores_no_z(blue) -> bool:
    """True when the blue channel (values in [0, 1]) of a whole normal map holds no Z."""
    return float(np.max(blue)) <= NO_Z_MAX_BLUE
