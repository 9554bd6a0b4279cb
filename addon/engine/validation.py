"""Score a conversion: does the new PBR set look like the old texture did in the game?

docs/validation.md defines the check and justifies its thresholds. In short, at preview
resolution (long side PREVIEW_SIDE, box-averaged, resampled with wrap-around when the size is
not a multiple):
  * the original is shaded as the old game did (brdf.render_blinn_phong: Lambert from the normal
    map plus a Blinn-Phong highlight from its alpha) and the PBR set with brdf.render_ggx, both
    under the fixed LIGHT_VIEW_PAIRS; the score is the cosine similarity of the two stacked
    renders (1 = same look up to overall brightness);
  * sanity checks catch what a cosine cannot see: albedo much darker or brighter than the diffuse,
    a constant map where the diffuse has structure, metallic over a material the classifier calls
    non-metal, and a height whose slopes contradict the normal map's.
The verdict is the worst of the score's and the checks' levels: "pass", "warn" or "fail".

bpy-free; the original's preview is taken before the conversion (`original_preview`) so the
full-size inputs can be freed while the models run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .brdf import render_blinn_phong, render_ggx
from .colour import linear_to_srgb, srgb_to_linear
from .tiling import resize_wrap

PREVIEW_SIDE = 256


def _direction(elevation_deg: float, azimuth_deg: float) -> tuple:
    elevation, azimuth = np.radians(elevation_deg), np.radians(azimuth_deg)
    return (float(np.cos(elevation) * np.cos(azimuth)), float(np.cos(elevation) * np.sin(azimuth)),
            float(np.sin(elevation)))


# (light, view) pairs in tangent space (z out of the surface). Four lights at 45 degrees seen from
# straight above (diffuse and relief), four at 35 degrees seen from the mirror direction at 55
# degrees (the highlight, where roughness and the old specular mask show).
LIGHT_VIEW_PAIRS = tuple(
    [(_direction(45, azimuth), (0.0, 0.0, 1.0)) for azimuth in (0, 90, 180, 270)]
    + [(_direction(35, azimuth), _direction(55, azimuth + 180)) for azimuth in (45, 135, 225, 315)]
)
# The old shading's highlight: Skyrim's default glossiness and a unit specular colour.
OLD_SHININESS = 30.0
OLD_SPECULAR_STRENGTH = 1.0

# Score levels (docs/validation.md: measured on shipped-model conversions and broken sets).
SCORE_PASS = 0.90
SCORE_WARN = 0.80
# Albedo / diffuse mean linear luminance: outside the warn band the albedo looks much darker or brighter.
BRIGHTNESS_WARN = (0.5, 2.0)
BRIGHTNESS_FAIL = (0.2, 5.0)
# Roughness or height is "constant" when its standard deviation is below this while the diffuse's
# luminance (sRGB) varies by more than STRUCTURE_STD. Not the albedo: a painted or plastic surface
# may have a uniform one (a black or washed-out albedo fails the brightness check instead).
STRUCTURE_STD = 0.02
CONSTANT_STD = 0.002
# Metallic above 0.5 over this fraction of a material the classifier scores below METAL_SCORE.
METAL_SCORE = 0.5
METAL_COVERAGE_WARN = 0.10
METAL_COVERAGE_FAIL = 0.30
# Height gradient vs normal-map slopes: correlation below these levels (negative = inverted).
HEIGHT_AGREEMENT_WARN = 0.05
HEIGHT_AGREEMENT_FAIL = 0.0
# Below these the normal map (rms slope) or the height (std) carries too little relief to compare.
MIN_RELIEF_SLOPE = 0.02
MIN_HEIGHT_STD = 0.005

LEVELS = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Finding:
    code: str      # "score", "brightness", "constant_roughness", "constant_height", "metallic", "height"
    level: str     # "warn" or "fail"
    message: str   # one sentence for a modder


@dataclass(frozen=True)
class OriginalPreview:
    """The old texture at preview resolution: diffuse (h, w, 3) sRGB, specular mask (h, w)."""
    diffuse: np.ndarray
    specular: np.ndarray


@dataclass(frozen=True)
class Validation:
    score: float
    verdict: str
    findings: tuple
    original_render: np.ndarray   # (h, w, 3) sRGB, the old shading under the first light
    converted_render: np.ndarray  # (h, w, 3) sRGB, the PBR set under the same light

    @property
    def reasons(self) -> list:
        return [finding.message for finding in self.findings]

    def as_record(self) -> dict:
        """The JSON-friendly part (batch summary, CLI)."""
        return {"score": round(self.score, 4), "verdict": self.verdict,
                "flags": [finding.code for finding in self.findings], "reasons": self.reasons}


def preview(array, side: int = PREVIEW_SIDE) -> np.ndarray:
    """(H, W[, C]) -> float32 (h, w, C) with the long side at most `side`: a box average over an
    integer factor, after a wrap-around resample when the size is not a multiple of it (the
    texture tiles, so its edges are neighbours)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    height, width = array.shape[:2]
    factor = max(1, -(-max(height, width) // side))
    target_h, target_w = max(1, height // factor), max(1, width // factor)
    if (target_h * factor, target_w * factor) != (height, width):
        array = resize_wrap(array, target_h * factor, target_w * factor)
    blocks = array.reshape(target_h, factor, target_w, factor, array.shape[2])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def original_preview(diffuse, normal_encoded=None) -> OriginalPreview:
    """The old texture's preview: the diffuse's colour and the normal map's alpha (its specular
    mask; none without an alpha channel)."""
    colour = preview(np.asarray(diffuse)[..., :3] if np.ndim(diffuse) == 3 else diffuse)
    if colour.shape[2] < 3:
        colour = np.repeat(colour[..., :1], 3, axis=2)
    if normal_encoded is not None and np.ndim(normal_encoded) == 3 and np.shape(normal_encoded)[2] == 4:
        specular = preview(np.asarray(normal_encoded)[..., 3])[..., 0]
        if specular.shape != colour.shape[:2]:
            specular = resize_wrap(specular[..., None], *colour.shape[:2])[..., 0]
    else:
        specular = np.zeros(colour.shape[:2], dtype=np.float32)
    # The converter repairs NaN pixels the same way (pipeline._finite).
    return OriginalPreview(np.nan_to_num(np.clip(colour, 0, 1), nan=0.0), np.nan_to_num(np.clip(specular, 0, 1), nan=0.0))


def preview_maps(result, shape=None) -> dict:
    """The PBR set's maps at preview resolution (normals renormalised); `shape` forces (h, w)."""
    maps = {}
    for name in ("albedo", "normal", "roughness", "metallic", "height"):
        small = preview(getattr(result, name))
        if shape is not None and small.shape[:2] != tuple(shape):
            small = resize_wrap(small, *shape)
        maps[name] = small if small.shape[2] > 1 else small[..., 0]
    length = np.linalg.norm(maps["normal"], axis=-1, keepdims=True)
    maps["normal"] = maps["normal"] / np.maximum(length, 1e-6)
    return maps


def tone_map(radiance) -> np.ndarray:
    """What a viewer sees of a render: x / (1 + x) of pi * radiance (a white Lambert surface lit
    head-on gives 1 -> 0.5). Without it a few GGX highlight pixels, hundreds of times brighter
    than the diffuse, would decide the cosine alone."""
    scaled = np.pi * np.asarray(radiance)
    return scaled / (1.0 + scaled)


def old_response(original: OriginalPreview, normal) -> np.ndarray:
    """(pairs, h, w, 3) tone-mapped renders of the old texture under LIGHT_VIEW_PAIRS."""
    return tone_map([render_blinn_phong(original.diffuse, normal, original.specular, light, view,
                                        OLD_SHININESS, OLD_SPECULAR_STRENGTH)
                     for light, view in LIGHT_VIEW_PAIRS])


def pbr_response(maps: dict) -> np.ndarray:
    """(pairs, h, w, 3) tone-mapped GGX renders of a PBR set under LIGHT_VIEW_PAIRS."""
    return tone_map([render_ggx(maps["albedo"], maps["normal"], maps["roughness"], maps["metallic"], light, view)
                     for light, view in LIGHT_VIEW_PAIRS])


def response_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened responses (1 when one is a positive multiple of the other)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / max(np.sqrt((a @ a) * (b @ b)), 1e-12))


def validate(original: OriginalPreview, result) -> Validation:
    """Score a conversion (`result`: a pipeline.PBRResult or anything with its map attributes)."""
    maps = preview_maps(result, original.diffuse.shape[:2])
    old = old_response(original, maps["normal"])
    new = pbr_response(maps)
    score = response_cosine(old, new)
    findings = []
    if score < SCORE_PASS:
        level = "warn" if score >= SCORE_WARN else "fail"
        findings.append(Finding("score", level, f"The converted material shades unlike the original "
                                                f"(BRDF cosine {score:.3f}, {SCORE_PASS} passes)."))
    findings += _sanity_findings(original, maps, getattr(result, "material_scores", None) or {})
    verdict = max((f.level for f in findings), key=LEVELS.index, default="pass")
    return Validation(score, verdict, tuple(findings),
                      linear_to_srgb(old[0]).astype(np.float32), linear_to_srgb(new[0]).astype(np.float32))


# The CLI, the batch and the panel use these two: the check is advisory, so a failure of its own
# (an input the converter will refuse anyway, say) leaves the set unscored instead of failing it.

def original_preview_or_none(diffuse, normal_encoded=None) -> OriginalPreview | None:
    try:
        return original_preview(diffuse, normal_encoded)
    except Exception:  # noqa: BLE001 - never lose a conversion to its check
        return None


def validate_or_none(original: OriginalPreview | None, result) -> Validation | None:
    if original is None:
        return None
    try:
        return validate(original, result)
    except Exception:  # noqa: BLE001 - never lose a conversion to its check
        return None


def verdict_text(checked: Validation | None) -> str:
    """One line for the CLI and the panel: "check PASS 0.962" or "check FAIL 0.713: <reasons>"."""
    if checked is None:
        return "check: not scored"
    text = f"check {checked.verdict.upper()} {checked.score:.3f}"
    return text + (": " + " ".join(checked.reasons) if checked.reasons else "")


def _luminance(rgb) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def _sanity_findings(original: OriginalPreview, maps: dict, material_scores: dict) -> list:
    findings = []
    diffuse_luma = _luminance(srgb_to_linear(original.diffuse.astype(np.float64))).mean()
    albedo_luma = _luminance(srgb_to_linear(maps["albedo"].astype(np.float64))).mean()
    ratio = albedo_luma / max(diffuse_luma, 1e-6)
    for level, (low, high) in (("fail", BRIGHTNESS_FAIL), ("warn", BRIGHTNESS_WARN)):
        if not low <= ratio <= high:
            findings.append(Finding("brightness", level,
                                    f"The albedo is {'darker' if ratio < low else 'brighter'} than the diffuse "
                                    f"({ratio:.2f} times its brightness)."))
            break

    if _luminance(original.diffuse).std() > STRUCTURE_STD:
        for name, values in (("roughness", maps["roughness"]), ("height", maps["height"])):
            if float(np.std(values)) < CONSTANT_STD:
                findings.append(Finding(f"constant_{name}", "warn",
                                        f"The {name} map is flat although the diffuse has detail."))

    metal_score = material_scores.get("metal")
    coverage = float(np.mean(maps["metallic"] > 0.5))
    if metal_score is not None and metal_score < METAL_SCORE and coverage > METAL_COVERAGE_WARN:
        level = "fail" if coverage > METAL_COVERAGE_FAIL else "warn"
        findings.append(Finding("metallic", level,
                                f"{coverage:.0%} of the texture is marked metal, but it does not look like "
                                f"metal (metal score {metal_score:.2f})."))

    agreement = height_normal_agreement(maps["height"], maps["normal"])
    if agreement is not None and agreement < HEIGHT_AGREEMENT_WARN:
        level = "fail" if agreement < HEIGHT_AGREEMENT_FAIL else "warn"
        findings.append(Finding("height", level,
                                "The height map's slopes contradict the normal map (inverted?)" if level == "fail"
                                else f"The height map agrees poorly with the normal map ({agreement:.2f})."))
    return findings


def height_normal_agreement(height, normal) -> float | None:
    """Correlation in [-1, 1] of the height's gradient with the slopes the (OpenGL) normal map
    implies, (-nx/nz, ny/nz) per (column, row) pixel step; None when either is too flat to tell.
    Wrap-around differences: the texture tiles."""
    height = np.asarray(height, dtype=np.float64)
    normal = np.asarray(normal, dtype=np.float64)
    nz = np.maximum(normal[..., 2], 0.1)
    slope_x, slope_row = -normal[..., 0] / nz, normal[..., 1] / nz
    # Central differences: the same pixel centre as the normal's slope.
    grad_x = (np.roll(height, -1, axis=1) - np.roll(height, 1, axis=1)) / 2
    grad_row = (np.roll(height, -1, axis=0) - np.roll(height, 1, axis=0)) / 2
    slopes = np.stack([slope_x - slope_x.mean(), slope_row - slope_row.mean()])
    grads = np.stack([grad_x, grad_row])
    if np.sqrt(np.mean(slopes ** 2)) < MIN_RELIEF_SLOPE or height.std() < MIN_HEIGHT_STD:
        return None
    return float(np.sum(slopes * grads) / np.sqrt(np.sum(slopes ** 2) * np.sum(grads ** 2)))
