"""Community Shaders "True PBR" output: four DDS files per texture and the patcher JSON.

For a diffuse `textures/<rel>.dds` the set is written under `textures/pbr/`:

| file              | content                                             | format          |
|-------------------|-----------------------------------------------------|-----------------|
| `<rel>.dds`       | albedo RGB, alpha = the diffuse's alpha (or opaque) | BC7 sRGB        |
| `<rel>_n.dds`     | tangent-space normal, DirectX (green = Y down)      | BC7 linear      |
| `<rel>_rmaos.dds` | R roughness, G metallic, B AO, A specular           | BC7 linear      |
| `<rel>_p.dds`     | height, 0.5 = surface level                         | BC4             |
| `<rel>_g.dds`     | the original `_g` glow, when the diffuse has one    | BC7 sRGB        |

A set whose mesh uses a model-space normal (`_msn`) is written without `_n`: its entry says
`"lock_normal": true`, so the patchers keep the mesh's own normal map.

Specular (the `_rmaos` alpha) is the reflectance of the non-metal parts. The shader multiplies it by
the patcher's `specular_level`, so F0 = lerp(A * specular_level, albedo, metallic). The models do not
predict it, and almost every dielectric a Skyrim texture shows (stone, wood, cloth, leather) reflects
about 4 %: we store A = 255 (1.0) and let `specular_level` = 0.04 set that 4 %.

PBRNifPatcher and ParallaxGen's PGPatcher read a JSON array of entries whose `texture` is the original
diffuse path under `textures\\` without extension; they point the matching NIF shapes at
`textures\\pbr\\<texture>*.dds`. Both look for these files in `<Data>/PBRNifPatcher/*.json`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import dds, naming
from .brdf import DIELECTRIC_F0
from .imageio import write_atomically
from .normalmaps import encode_normal

# Where the patchers look for their configuration, relative to the mod (Data) root.
PATCHER_FOLDER = "PBRNifPatcher"
SPECULAR_LEVEL = DIELECTRIC_F0  # the F0 of dielectrics the models render with; scales the `_rmaos` alpha
RMAOS_SPECULAR = 1.0    # stored in `_rmaos` alpha, see the module docstring
# Parallax depth for the height map: the value the patchers' own example ships, a moderate depth
# that suits Skyrim's architecture and clutter; raise it in the JSON for deep relief.
DISPLACEMENT_SCALE = 0.35
# Below this height range (one 8-bit step) the height map is flat and parallax would only cost time.
_FLAT_HEIGHT_RANGE = 1.0 / 255.0


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def albedo_rgba(result) -> np.ndarray:
    alpha = result.alpha if result.alpha is not None else np.ones(result.albedo.shape[:2], np.float32)
    return _to_uint8(np.dstack([result.albedo, alpha]))


def normal_rgba(result) -> np.ndarray:
    """DirectX normal map: the OpenGL result with green (Y) flipped, stored as (n + 1) / 2."""
    directx = encode_normal(result.normal.astype(np.float32), "directx")
    opaque = np.ones(directx.shape[:2], np.float32)
    return _to_uint8(np.dstack([directx, opaque]))


def pack_rmaos(roughness, metallic, ao, specular=None) -> np.ndarray:
    """The `_rmaos` layout, (H, W, 4) float32 in [0, 1]: R roughness, G metallic, B AO, A specular
    (RMAOS_SPECULAR when not given). The one definition of the channel order: the trainer's procedural
    sets and readers use it too."""
    if specular is None:
        specular = np.full(np.shape(roughness), RMAOS_SPECULAR, np.float32)
    return np.stack([roughness, metallic, ao, specular], axis=-1).astype(np.float32)


def unpack_rmaos(rmaos: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of pack_rmaos; a file without alpha gives specular RMAOS_SPECULAR (the shader's default)."""
    if rmaos.ndim == 2 or rmaos.shape[-1] < 3:
        raise ValueError("an _rmaos map needs at least three channels")
    specular = rmaos[..., 3] if rmaos.shape[-1] > 3 else np.full(rmaos.shape[:2], RMAOS_SPECULAR, np.float32)
    return {"roughness": rmaos[..., 0], "metallic": rmaos[..., 1], "ao": rmaos[..., 2], "specular": specular}


def rmaos_rgba(result) -> np.ndarray:
    return _to_uint8(pack_rmaos(result.roughness, result.metallic, result.ao))


def centred_height(height: np.ndarray) -> np.ndarray:
    """The height with its mean at 0.5: the shader takes 0.5 as the surface level, so an off-centre
    mean would make the whole surface float above (or sink below) the mesh. Deviations that would
    leave [0, 1] after the shift are scaled down, not clipped, so the relief keeps its shape."""
    height = np.asarray(height, dtype=np.float32)
    if not height.size:
        return height
    deviation = height - float(height.mean(dtype=np.float64))
    reach = float(np.abs(deviation).max())
    scale = min(1.0, 0.5 / reach) if reach > 0.0 else 1.0
    return 0.5 + deviation * scale


def height_rgba(result) -> np.ndarray:
    height = _to_uint8(centred_height(result.height))
    return np.dstack([height, height, height, np.full_like(height, 255)])


def glow_rgba(glow: np.ndarray) -> np.ndarray:
    """The original `_g` pixels (decoded, (H, W, C) in [0, 1]) as opaque-or-own-alpha RGBA."""
    channels = glow.shape[2]
    rgb = glow[..., :3] if channels >= 3 else np.repeat(glow[..., :1], 3, axis=2)
    alpha = glow[..., 3] if channels == 4 else np.ones(glow.shape[:2], np.float32)
    return _to_uint8(np.dstack([rgb, alpha]))


# role -> (pixels, block format, sRGB, mip filter)
_ENCODINGS = {
    "albedo": (albedo_rgba, "BC7", True, "color"),
    "normal": (normal_rgba, "BC7", False, "normal"),
    "rmaos": (rmaos_rgba, "BC7", False, "linear"),
    "height": (height_rgba, "BC4", False, "linear"),
    "glow": (glow_rgba, "BC7", True, "color"),
}


def write_truepbr_set(result, out_root: str | os.PathLike, relative_stem: str, *,
                      glow: np.ndarray | None = None, lock_normal: bool = False) -> dict[str, Path]:
    """Write the DDS files of one texture under out_root/textures/pbr/; role -> path written.

    relative_stem: the diffuse path relative to `textures/`, without extension ('armor/iron/cuirass').
    glow: the decoded original `_g`, carried into the set. lock_normal: no `_n` (the mesh keeps its own
    model-space normal). Every level-0 side must be a multiple of 4 (see dds.block_aligned_size).
    Each file appears atomically; a name that would escape out_root raises PBRForgeError first.
    """
    names = naming.truepbr_names(relative_stem, optional=("glow",) if glow is not None else ())
    if lock_normal:
        del names["normal"]
    targets = {role: naming.safe_join(out_root, rel) for role, rel in names.items()}
    written = {}
    for role, target in targets.items():
        pixels, fmt, srgb, kind = _ENCODINGS[role]
        written[role] = dds.write_dds(target, pixels(glow if role == "glow" else result), fmt, srgb, kind=kind)
    return written


def patcher_entry(relative_stem: str, result, *, emissive: bool = False, lock_normal: bool = False,
                  smooth_angle: float | None = None) -> dict:
    """One PBRNifPatcher / PGPatcher entry for a converted texture.

    emissive: the set carries a `_g` (without it the patchers clear the mesh's glow). lock_normal: keep
    the mesh's normal map (model-space `_msn` sets). smooth_angle only when asked: with it both
    patchers recompute and weld the normals of every matching shape, custom normals included.
    """
    height_range = float(np.ptp(result.height)) if result.height.size else 0.0
    entry = {
        "texture": naming.texture_key(relative_stem),
        "emissive": emissive,
        "parallax": height_range > _FLAT_HEIGHT_RANGE,
        "subsurface": False,
        "specular_level": SPECULAR_LEVEL,
        "roughness_scale": 1.0,
        "displacement_scale": DISPLACEMENT_SCALE,
        "subsurface_color": [1.0, 1.0, 1.0],
        "subsurface_opacity": 1.0,
    }
    if lock_normal:
        entry["lock_normal"] = True
    if smooth_angle is not None:
        entry["smooth_angle"] = smooth_angle
    return entry


def write_patcher_json(entries: list[dict], path: str | os.PathLike) -> Path:
    """Write the patcher's JSON array atomically (sorted by texture, so reruns give the same file)."""
    ordered = sorted(entries, key=lambda entry: entry["texture"].lower())
    text = json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"
    return write_atomically(Path(path), text.encode("utf-8"))
