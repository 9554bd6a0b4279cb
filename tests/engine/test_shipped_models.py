"""The models folder shipped in the repo (and in the extension) is a complete, valid, trained set."""
import numpy as np

from addon.engine.manifest import default_models_dir, load_manifest
from addon.engine.pipeline import Converter


def test_shipped_models_match_their_manifest_and_run():
    models_dir = default_models_dir()
    manifest = load_manifest(models_dir)  # sha256 of every file
    converter = Converter(models_dir, provider="cpu")
    rng = np.random.default_rng(0)
    normal = np.dstack([np.full((96, 96), 0.5), np.full((96, 96), 0.5), np.ones((96, 96))]).astype(np.float32)
    result = converter.convert(rng.random((96, 96, 3), dtype=np.float32), normal, "directx")
    assert result.roughness.shape == (96, 96)  # every session opened and passed its I/O check
    assert set(manifest.material_classes) == set(result.material_scores)


def test_shipped_models_say_how_they_were_trained():
    import json

    provenance = json.loads((default_models_dir() / "manifest.json").read_text())["provenance"]
    phases = {key.split("/")[0] for key in provenance["jobs"]}
    assert {"A0", "A", "B", "C", "C_prime", "D"} <= phases, phases  # the whole plan ran
    assert provenance["run_config"]["models_preset"] == "cpu_default"
    assert "quality" in provenance  # judged against the baselines (python -m trainer quality --record)
