"""The conversion check (addon/engine/validation.py): score, sanity checks, contact sheet."""
from __future__ import annotations

import dataclasses
from pathlib import Path

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


# --------------------------------------------------------------------------- batch and CLI

def _save_png(path, pixels):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)


def _pixels_key(diffuse) -> bytes:
    return np.rint(np.asarray(diffuse)[..., :3] * 255).astype(np.uint8).tobytes()


class _ConverterReturningKnownMaps:
    """The tiny models' converter, but each set comes back as the procedural material it was made
    from (a faithful conversion) or that material broken one way: the verdicts are known."""

    def __init__(self, converter, by_diffuse: dict):
        self._converter, self._by_diffuse = converter, by_diffuse
        self.manifest, self.provider = converter.manifest, converter.provider

    def load_models(self):
        self._converter.load_models()

    def convert(self, diffuse, normal=None, normal_convention="directx"):
        material, broken = self._by_diffuse[_pixels_key(diffuse)]
        result = self._converter.convert(diffuse, normal, normal_convention)
        albedo = np.zeros_like(material.albedo) if broken == "albedo black" else material.albedo
        metallic = np.ones_like(material.metallic) if broken == "metallic" else material.metallic
        return dataclasses.replace(result, albedo=albedo.astype(np.float16), metallic=metallic,
                                   roughness=material.roughness, height=material.height,
                                   material_scores={"metal": 0.05})


def _known_mod(root):
    sets = {"textures/walls/plaster_one": (5, None), "textures/walls/plaster_two": (6, None),
            "textures/walls/plaster_three": (7, "albedo black"), "textures/walls/plaster_four": (8, "metallic")}
    by_diffuse = {}
    for stem, (seed, broken) in sets.items():
        material = generate_material(seed, SIZE, "plaster")
        directx = material.normal * np.array([1.0, -1.0, 1.0], np.float32)
        _save_png(root / f"{stem}.png", material.albedo)
        _save_png(root / f"{stem}_n.png", np.dstack([(directx + 1) / 2, old_specular_mask(material)]))
        by_diffuse[_pixels_key(np.rint(material.albedo * 255) / 255)] = (material, broken)
    return by_diffuse


@pytest.fixture
def tiny_converter(tiny_models_dir):
    from addon.engine.pipeline import Converter

    return Converter(models_dir=tiny_models_dir, provider="cpu", tile=64, overlap=8)


def test_batch_summary_and_contact_sheet_list_exactly_the_flagged_sets(tmp_path, tiny_converter):
    from addon.engine import batch, contactsheet

    mod = tmp_path / "mod"
    converter = _ConverterReturningKnownMaps(tiny_converter, _known_mod(mod))
    out = tmp_path / "out"
    summary = batch.run_batch(mod, out, progress=False, converter=converter)

    flagged = ["textures/walls/plaster_four.png", "textures/walls/plaster_three.png"]  # sorted
    assert summary["failures"] == [] and summary["converted"] == 4 and set(summary["validation"]) == {
        "textures/walls/plaster_one.png", "textures/walls/plaster_two.png", *flagged}
    assert summary["flagged"] == flagged, summary["validation"]
    assert "metallic" in summary["validation"][flagged[0]]["flags"]
    assert "brightness" in summary["validation"][flagged[1]]["flags"]
    on_disk = __import__("json").loads(batch.default_summary_path(out).read_text())
    assert on_disk["flagged"] == flagged and on_disk["validation"] == summary["validation"]

    # Beside the summary in the run's own folder: the mod in the output stays only the mod.
    assert {Path(p).parent for p in summary["contact_sheet"].values()} == {batch.run_files_dir(out)}
    assert not list(out.rglob("pbr_forge_flagged*"))
    page = Path(summary["contact_sheet"]["html"]).read_text()
    assert sorted(name for name in summary["validation"] if name in page) == flagged
    assert page.count("<img ") == 2
    from PIL import Image
    sheet = Image.open(summary["contact_sheet"]["png"])
    assert sheet.size == (2 * 2 * contactsheet.THUMBNAIL, contactsheet.THUMBNAIL + contactsheet.LABEL_HEIGHT)


def test_a_batch_where_everything_passes_writes_no_contact_sheet(tmp_path, tiny_converter):
    from addon.engine import batch

    mod = tmp_path / "mod"
    by_diffuse = _known_mod(mod)
    for name in ("plaster_three", "plaster_four"):
        for path in (mod / "textures/walls").glob(f"{name}*"):
            path.unlink()
    summary = batch.run_batch(mod, tmp_path / "out", progress=False,
                              converter=_ConverterReturningKnownMaps(tiny_converter, by_diffuse))
    assert summary["converted"] == 2 and summary["flagged"] == [] and summary["contact_sheet"] is None
    assert not list(batch.run_files_dir(tmp_path / "out").glob("pbr_forge_flagged*"))


def test_the_cli_prints_each_sets_score_on_its_ok_line(tmp_path, tiny_models_dir):
    import re

    from .helpers import run_cli

    material = generate_material(5, 64, "plaster")
    _save_png(tmp_path / "in" / "wall.png", material.albedo)
    _save_png(tmp_path / "in" / "wall_n.png", np.dstack([(material.normal + 1) / 2, old_specular_mask(material)]))
    run = run_cli("convert", "--input", tmp_path / "in" / "wall.png", "--output", tmp_path / "out",
               "--models", tiny_models_dir, "--provider", "cpu", "--tile", "64", "--overlap", "16", "--no-blend",
               home=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    ok_line = next(line for line in run.stdout.splitlines() if line.startswith("OK "))
    assert re.search(r"; check (PASS|WARN|FAIL) [01]\.\d{3}", ok_line), ok_line


def test_the_batch_cli_names_the_contact_sheet_on_its_summary_line(tmp_path, tiny_models_dir, capsys):
    import json

    from addon import cli

    _known_mod(tmp_path / "mod")
    summary_path = tmp_path / "summary.json"
    assert cli.main(["batch", "--input", str(tmp_path / "mod"), "--output", str(tmp_path / "out"),
                     "--models", str(tiny_models_dir), "--provider", "cpu", "--json", str(summary_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(summary_path.read_text())
    assert len(summary["validation"]) == 4
    if summary["flagged"]:  # the tiny models' verdicts are whatever they are; the line must match them
        assert f"{len(summary['flagged'])} to check: {summary['contact_sheet']['html']}." in last
    else:
        assert "to check" not in last
