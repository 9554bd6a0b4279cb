"""`trainer evaluate`: the metrics, and a run of the engine and both baselines on a small library."""
import json

import numpy as np

from addon.engine.imageio import read_image
from trainer import evaluate, metrics
from trainer.__main__ import main
from trainer.data.synth import generate_material

from tests.trainer.helpers import import_library, licence, poly_haven_set

SIZE = 64


def _case(seed=3, category="wood", mask=None):
    m = generate_material(seed, SIZE, category)
    truth = {"albedo": m.albedo, "normal": m.normal, "roughness": m.roughness, "metallic": m.metallic,
             "ao": m.ao, "height": m.height}
    return evaluate.Case(m.name, truth, m.albedo, np.zeros((SIZE, SIZE, 3), np.float32), mask)


def test_perfect_prediction_scores_perfectly_and_height_scale_is_forgiven():
    case = _case()
    scores = evaluate.map_scores(case.truth, case)
    assert all(v < 1e-6 for v in scores["rmse"].values())
    assert all(v > 0.999 for v in scores["ssim"].values())
    rescaled = {**case.truth, "height": 0.3 * case.truth["height"] + 0.2}  # same relief, other depth scale
    assert evaluate.map_scores(rescaled, case)["rmse"]["height"] < 1e-5
    wrong = {**case.truth, "roughness": 1.0 - case.truth["roughness"]}
    assert evaluate.map_scores(wrong, case)["rmse"]["roughness"] > 0.05


def test_missing_truth_is_skipped_and_a_mask_limits_the_error_to_the_used_area():
    case = _case(4, "metal")
    case.truth["height"] = None
    prediction = {**case.truth, "height": np.zeros((SIZE, SIZE), np.float32),
                  "roughness": case.truth["roughness"].copy()}
    prediction["roughness"][:, SIZE // 2:] = 0.0  # wrong only on the right half
    assert "height" not in evaluate.map_scores(prediction, case)["rmse"]
    assert evaluate.map_scores(prediction, case)["rmse"]["roughness"] > 0.1
    case.mask = np.zeros((SIZE, SIZE), bool)
    case.mask[:, : SIZE // 2] = True
    assert evaluate.map_scores(prediction, case)["rmse"]["roughness"] < 1e-6
    assert evaluate.map_scores(prediction, case)["iou"]["metallic"] == 1.0


def _library(tmp_path, count=2):
    src = tmp_path / "src"
    licence(src)
    for i in range(count):
        poly_haven_set(src / f"m{i}", f"set_{chr(97 + i)}", generate_material(40 + i, SIZE, None))
    import_library(src, tmp_path / "lib")
    return tmp_path / "lib"


def test_evaluate_runs_the_engine_and_both_baselines_on_the_held_out_library(tmp_path, tiny_models_dir):
    lib = _library(tmp_path)
    out = tmp_path / "report.json"
    sheet = tmp_path / "sheet.png"
    assert main(["evaluate", "--models", str(tiny_models_dir), "--data", str(lib), "--size", str(SIZE),
                 "--json", str(out), "--sheet", str(sheet)]) == 0
    report = json.loads(out.read_text())
    assert report["materials"] == 2 and report["brdf_materials"] == 2
    for method in evaluate.METHODS:
        assert set(report["means"][method]["rmse"]) == set(evaluate.MAPS)
        assert 0.0 < report["brdf_cosine"][method] <= 1.0
        own = [row["brdf_cosine"][method] for row in report["per_material"]]
        assert np.isclose(report["brdf_cosine_material_mean"][method], np.mean(own))
        # the set's cosine never exceeds its best material's (Cauchy-Schwarz); it is lower still when
        # the materials' rendered energies are off relative to one another
        assert report["brdf_cosine"][method] <= max(own) + 1e-9
    rmse = report["means"]
    best = min(rmse["identity"]["rmse"]["roughness"], rmse["classic"]["rmse"]["roughness"])
    assert np.isclose(report["ratio_to_best_baseline"]["roughness"], rmse["models"]["rmse"]["roughness"] / best)
    # identity: albedo = the input diffuse, so its albedo error is the degradation's
    assert rmse["identity"]["rmse"]["albedo"] > 0.0
    assert read_image(sheet).shape == (2 * evaluate.SHEET_TILE, (1 + 2 * len(evaluate.MAPS) + 2) * evaluate.SHEET_TILE, 3)
    if metrics.alexnet_weights_path() is None:  # without the backbone LPIPS is reported missing, not faked
        assert "unavailable" in report["lpips"] and "lpips" not in report["means"]["models"]


def test_several_input_seeds_judge_each_material_on_each_rendering(tmp_path, tiny_models_dir, capsys):
    lib = _library(tmp_path)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    common = ["evaluate", "--models", str(tiny_models_dir), "--data", str(lib), "--size", str(SIZE)]
    assert main(common + ["--seed", "1", "--json", str(one)]) == 0
    assert main(common + ["--seeds", "2", "--json", str(two)]) == 0
    assert "4 cases (2 input seeds each)" in capsys.readouterr().out
    single, double = json.loads(one.read_text()), json.loads(two.read_text())
    assert double["materials"] == 4 and double["input_seeds"] == 2
    assert sorted(row["material"].split("/")[-1] for row in double["per_material"]) == ["set_a @0", "set_a @1", "set_b @0", "set_b @1"]
    # the second seed's cases are exactly what --seed 1 judges alone: new renderings, not repeats
    by_name = {row["material"]: row for row in double["per_material"]}
    for row in single["per_material"]:
        assert by_name[f"{row['material']} @1"]["models"]["rmse"] == row["models"]["rmse"]
        assert by_name[f"{row['material']} @0"]["identity"]["rmse"]["albedo"] != row["identity"]["rmse"]["albedo"]
    # the per-material view averages each material over its seeds
    means = {row["material"].split("/")[-1]: row for row in evaluate.material_means(double["per_material"])}
    assert sorted(means) == ["set_a", "set_b"]
    seeded = [by_name[name] for name in by_name if name.endswith("set_a @0") or name.endswith("set_a @1")]
    for method in evaluate.METHODS:
        assert np.isclose(means["set_a"][method]["rmse"]["albedo"],
                          np.mean([row[method]["rmse"]["albedo"] for row in seeded]))
        assert np.isclose(means["set_a"]["brdf_cosine"][method], np.mean([row["brdf_cosine"][method] for row in seeded]))
    text = evaluate.format_report(double, per_material=True)
    assert "means over the 2 input seeds" in text and " @1:" not in text and "set_a:" in text


def test_evaluate_on_procedural_materials_replaces_trainer_quality(tiny_models_dir):
    report = evaluate.evaluate(tiny_models_dir, evaluate.procedural_cases(2, SIZE))
    assert report["materials"] == 2 and set(report["ratio_to_best_baseline"]) == set(evaluate.MAPS)
    assert "BRDF-cosine" in evaluate.format_report(report)


def test_the_specular_ablation_changes_only_the_models_and_the_report_is_recorded(tiny_models_dir):
    from addon.engine.manifest import load_manifest
    cases = list(evaluate.procedural_cases(2, SIZE))
    full = evaluate.evaluate(tiny_models_dir, cases)
    ablated = evaluate.evaluate(tiny_models_dir, cases, without_specular=True)
    for baseline in ("identity", "classic"):  # the baselines never read the alpha
        assert ablated["means"][baseline] == full["means"][baseline]
    assert ablated["means"]["models"]["rmse"]["roughness"] != full["means"]["models"]["rmse"]["roughness"]
    evaluate.record_in_manifest(tiny_models_dir, {"ratio_to_best_baseline": full["ratio_to_best_baseline"]})
    recorded = load_manifest(tiny_models_dir).provenance["quality"]  # still a valid manifest for the add-on
    assert recorded == {"ratio_to_best_baseline": full["ratio_to_best_baseline"]}
