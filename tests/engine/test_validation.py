"""The conversion check (addon/engine/validation.py): score, sanity checks, contact sheet."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from addon.engine import validation
from trainer.data.synth import generate_material, old_specular_mask

SIZE = 128


@dataclasses.dataclass
class Maps:
    albedo: np.ndarray
    normal: np.ndarray
    roughness: np.ndarray
    metallic: np.ndarray
    height: np.ndarray
    material_scores: dict


def _set(category: str):
    """A procedural material as a perfect conversion, and its original whose old shading is the
    PBR set's look (diffuse = albedo, specular mask from the gloss)."""
    material = generate_material(5, SIZE, category)
    maps = Maps(material.albedo, material.normal, material.roughness, material.metallic, material.height,
                {"metal": 0.9 if category == "metal" else 0.05})
    original = validation.OriginalPreview(material.albedo, old_specular_mask(material))
    return original, maps


def test_identical_sets_score_one():
    _, maps = _set("stone")
    preview = validation.preview_maps(maps)
    response = validation.pbr_response(preview)
    assert validation.response_cosine(response, response) == pytest.approx(1.0, abs=1e-12)
    original, _ = _set("stone")
    old = validation.old_response(original, preview["normal"])
    assert validation.response_cosine(old, old) == pytest.approx(1.0, abs=1e-12)


def test_a_faithful_conversion_passes():
    original, maps = _set("plaster")
    checked = validation.validate(original, maps)
    assert checked.verdict == "pass", checked.reasons
    assert checked.score >= validation.SCORE_PASS


def test_score_falls_monotonically_with_perturbation():
    original, maps = _set("stone")
    rng = np.random.default_rng(1)
    noise = rng.normal(size=maps.albedo.shape).astype(np.float32)
    scores = []
    for amount in (0.0, 0.1, 0.2, 0.4, 0.8):
        perturbed = dataclasses.replace(
            maps, albedo=np.clip(maps.albedo + amount * noise, 0, 1),
            roughness=np.clip(maps.roughness - amount, 0.04, 1))
        scores.append(validation.validate(original, perturbed).score)
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


@pytest.mark.parametrize("break_it, code", [
    (lambda m: dataclasses.replace(m, metallic=np.ones_like(m.metallic)), "metallic"),
    (lambda m: dataclasses.replace(m, albedo=np.zeros_like(m.albedo)), "brightness"),
    (lambda m: dataclasses.replace(m, height=1.0 - m.height), "height"),
])
def test_a_broken_conversion_of_wood_fails_for_the_right_reason(break_it, code):
    original, maps = _set("wood")
    checked = validation.validate(original, break_it(maps))
    assert checked.verdict == "fail"
    assert code in [f.code for f in checked.findings if f.level == "fail"], checked.reasons
    assert checked.as_record()["verdict"] == "fail" and checked.as_record()["reasons"]


def test_metallic_on_metal_is_not_flagged():
    original, maps = _set("metal")
    checked = validation.validate(original, dataclasses.replace(maps, metallic=np.ones_like(maps.metallic)))
    assert "metallic" not in [f.code for f in checked.findings]


def test_a_flat_map_on_a_detailed_diffuse_is_flagged():
    original, maps = _set("stone")
    checked = validation.validate(original, dataclasses.replace(maps, roughness=np.full_like(maps.roughness, 0.6)))
    assert "constant_roughness" in [f.code for f in checked.findings]


def test_preview_averages_with_wrap_around():
    small = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    assert validation.preview(np.kron(small, np.ones((4, 4))), 64)[..., 0] == pytest.approx(small)
    assert validation.preview(np.full((512, 1024), 0.25), 256).shape == (128, 256, 1)
    # 300 is no multiple of the factor 2: resampled with wrap-around first, a constant stays constant
    assert validation.preview(np.full((300, 300, 3), 0.5), 256) == pytest.approx(np.full((150, 150, 3), 0.5))


def test_numpy_renderer_agrees_with_the_trainers_torch_twin():
    torch = pytest.importorskip("torch")
    from trainer.metrics import render_ggx as torch_ggx

    _, maps = _set("metal")
    preview = validation.preview_maps(maps)
    ours = validation.pbr_response(preview)

    def nchw(array):
        array = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
        return (array[None, None] if array.ndim == 2 else array.permute(2, 0, 1)[None])

    theirs = np.stack([torch_ggx(nchw(preview["albedo"]), nchw(preview["normal"]), nchw(preview["roughness"]),
                                 nchw(preview["metallic"]), light, view)[0].permute(1, 2, 0).numpy()
                       for light, view in validation.LIGHT_VIEW_PAIRS])
    assert ours == pytest.approx(validation.tone_map(theirs), abs=1e-6)
