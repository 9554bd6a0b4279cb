"""Checkpoints: safetensors + weights_only state + JSON, atomic pointers, pruning, load_models."""
import json
from dataclasses import asdict

import pytest
import torch

from trainer.checkpoint import (
    CheckpointError, find_checkpoint, load_models, model_state, rng_state, save_checkpoint, set_rng_state,
)
from trainer.models import ModelsConfig, add_lora, create_models


def _save(job_dir, models, step, pointers=("last",), lora_rank=0):
    meta = {"models": asdict(ModelsConfig.tiny()), "lora_rank": lora_rank, "global_step": step,
            "run_config": {"plan": "skyrim"}}
    opt = torch.optim.AdamW(models.parameters(), lr=1e-3)
    return save_checkpoint(job_dir, pointers, model_state(models), meta, {"optimizer": opt.state_dict(), "rng": rng_state()})


def test_checkpoint_round_trips_models_with_lora_and_config(tmp_path):
    models = add_lora(create_models(ModelsConfig.tiny(), seed=1), rank=4)
    with torch.no_grad():
        for p in models.parameters():
            p.add_(0.01)  # adapters non-zero too
    ckpt = _save(tmp_path / "job", models, 5, ("last", "best"), lora_rank=4)
    loaded, run_config = load_models(tmp_path / "job")
    assert run_config == {"plan": "skyrim"}
    for (k, a), (k2, b) in zip(models.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    state = torch.load(ckpt.path / "state.pt", weights_only=True)  # no pickled objects needed
    assert "optimizer" in state


def test_pointers_move_atomically_and_unreferenced_checkpoints_are_pruned(tmp_path):
    models = create_models(ModelsConfig.tiny(), seed=0)
    best = _save(tmp_path, models, 1, ("last", "best"))
    _save(tmp_path, models, 2)
    last = _save(tmp_path, models, 3)
    assert find_checkpoint(tmp_path, "best").path == best.path
    assert find_checkpoint(tmp_path, "last").path == last.path
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted([best.path.name, last.path.name])
    assert json.loads((tmp_path / "last.json").read_text())["dir"].endswith(last.path.name)
    assert not list(tmp_path.glob(".*tmp"))


def test_rng_state_restores_every_generator():
    import random

    import numpy as np
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_missing_checkpoint_is_a_clear_user_error(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint found"):
        load_models(tmp_path)
