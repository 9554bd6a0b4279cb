import numpy as np

from trainer.data.synth import generate_material
from trainer.quality import MAPS, evaluate_models, format_report, map_errors


def _truth(size=64):
    m = generate_material(3, size, "wood")
    return {"albedo": m.albedo, "roughness": m.roughness, "metallic": m.metallic, "ao": m.ao, "height": m.height}


def test_perfect_prediction_has_zero_error_and_height_scale_is_forgiven():
    truth = _truth()
    assert all(e < 1e-9 for e in map_errors(truth, truth).values())
    rescaled = {**truth, "height": 0.3 * truth["height"] + 0.2}  # same relief, other depth scale
    assert map_errors(rescaled, truth)["height"] < 1e-6
    wrong = {**truth, "roughness": 1.0 - truth["roughness"]}
    assert map_errors(wrong, truth)["roughness"] > 0.05


def test_report_compares_models_with_both_baselines(tiny_models_dir):
    report = evaluate_models(tiny_models_dir, count=2, size=64)
    for method in ("models", "identity", "classic"):
        assert set(report["l1"][method]) == set(MAPS)
        assert all(np.isfinite(v) and v >= 0 for v in report["l1"][method].values())
        assert 0.0 < report["brdf_cosine"][method] <= 1.0
    best = min(report["l1"]["identity"]["albedo"], report["l1"]["classic"]["albedo"])
    assert np.isclose(report["ratio_to_best_baseline"]["albedo"], report["l1"]["models"]["albedo"] / best)
    assert "BRDF-cosine" in format_report(report)
