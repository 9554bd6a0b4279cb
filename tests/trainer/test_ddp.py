"""The multi-GPU path, exercised on the CPU: torchrun with 2 processes, gloo, DDP rebuilt per job."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from trainer.checkpoint import find_checkpoint

from tests.trainer.helpers import SMALL_ARGS, small_plan

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes_trains_every_job_with_rank_zero_io(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "trainer", "run", "--plan", small_plan(tmp_path), "--out", str(run), *SMALL_ARGS,
         "--epochs-scale", "0.34", "--max-steps", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((run / "run_state.json").read_text())
    assert sorted(state["jobs"]) == ["P1/main", "P2/rough", "P2/seg"]
    for key in state["jobs"]:
        last = find_checkpoint(run / key, "last")
        assert last.meta["world_size"] == 2 and last.meta["global_step"] == 2
        # rank-0 I/O: exactly one checkpoint set per pointer, no leftovers from a second writer
        assert len(list((run / key / "checkpoints").iterdir())) <= 2
    start = find_checkpoint(run / "P1" / "main", "last").weights()
    final = find_checkpoint(run / "P2" / "merged", "best").weights()
    assert any(not torch.equal(start[k], final[k]) for k in final if "lora_" not in k)
