"""Write a PBRResult as the Blender PNG set: <name>_albedo.png, _roughness, _metallic, _ao (8-bit),
_height (16-bit: 8 bits band visibly when displaced) and _normal (OpenGL, stored as (n + 1) / 2).

Each file is written atomically (imageio.write_png), and no output may land on an input file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import PBRForgeError
from .imageio import write_png
from .naming import png_set_names
from .normalmaps import encode_normal

# map -> bit depth of its PNG
_BITS = {"albedo": 8, "roughness": 8, "metallic": 8, "ao": 8, "height": 16, "normal": 8}


def write_png_set(result, out_dir, name: str, suffixes: dict, inputs=()) -> dict[str, Path]:
    """Write the six PNGs into out_dir; returns map -> path.

    `suffixes` is the manifest's conventions.png_suffixes. `inputs` are the source files: an output
    path that is one of them is refused (originals are never touched) before anything is written.
    """
    out_dir = Path(out_dir)
    paths = {role: out_dir / file_name for role, file_name in png_set_names(name, suffixes).items()}
    protected = {Path(p).resolve() for p in inputs}
    for role, path in paths.items():
        if path.resolve() in protected:
            raise PBRForgeError(
                f"The {role} output '{path}' would overwrite an input file; choose another output folder."
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    return {role: write_png(path, _pixels(result, role), bits=_BITS[role]) for role, path in paths.items()}


def _pixels(result, role: str) -> np.ndarray:
    """The array for one PNG, built only when that file is written (keeps peak memory low)."""
    if role == "albedo":
        return result.albedo if result.alpha is None else np.dstack([result.albedo, result.alpha])
    if role == "normal":
        return encode_normal(result.normal)  # the Blender set is OpenGL, as the result
    return getattr(result, role)
