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
    # Where, how long and on what: every job's optimiser steps and wall time, each session's hardware.
    assert all(job["steps"] > 0 and job["seconds"] > 0 for job in provenance["jobs"].values())
    assert provenance["sessions"] and all("cpu_count" in s["hardware"] for s in provenance["sessions"])
    # The real data it could read, with licences, and the held-out materials it never read.
    sources = provenance["data"]["library_training_split"]
    assert sources and all(sum(s["licences"].values()) == sum(s["train"].values()) for s in sources.values())
    assert sum(s["heldout"] for s in sources.values()) == 20
    assert "quality" in provenance  # judged against the baselines (python -m trainer evaluate --record)
