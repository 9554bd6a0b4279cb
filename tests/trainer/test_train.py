"""The training loop end to end on procedural data, tiny models and tiny sizes, on the CPU:
the whole plan in miniature, what each phase trains, gates, and an exact resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainer.__main__ import main
from trainer.checkpoint import Checkpoint, build_models, find_checkpoint, load_models
from trainer.models import add_lora, set_trainable

from tests.trainer.helpers import SMALL_ARGS, small_plan

REPO = Path(__file__).resolve().parents[2]
MINIATURE = ["--synthetic", "6", "--models-preset", "tiny", "--res-scale", "0.0625", "--epochs-scale", "0.05",
             "--max-steps", "1", "--batch-size", "2", "--val-batches", "1"]
def _weights(run: Path, key: str, pointer: str) -> dict:
    return find_checkpoint(run / key, pointer).weights()


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in after if not torch.equal(before[k], after[k])}


def _start_weights(run: Path, key: str, lora_rank: int) -> dict:
    """The weights a job started from, with LoRA adapters added (as B adds them) so names match."""
    start = find_checkpoint(run / key, "best")
    models = build_models(start.meta["models"], start.meta["lora_rank"])
    models.load_state_dict(start.weights())
    if lora_rank and not start.meta["lora_rank"]:
        add_lora(models, rank=lora_rank)  # fresh adapters: trainable, so any value is allowed to change
    return models.state_dict()


@pytest.fixture(scope="module")
def miniature_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("plan") / "run"
    # --no-export: the ONNX export has its own tests (tests/trainer/test_export.py) and takes minutes here.
    assert main(["run", "--plan", "skyrim", "--out", str(run), *MINIATURE, "--force", "--no-export"]) == 0
    return run


def test_whole_plan_in_miniature_runs_every_phase_and_d_job(miniature_run):
    state = json.loads((miniature_run / "run_state.json").read_text())
    assert list(state["jobs"]) == ["A0/main", "A/main", "B/main", "C/main", "C_prime/main", "D/segformer_decoder",
                                   "D/albedo_upsampling", "D/roughness_head", "D/metallic_head", "D/ao_head",
                                   "D/height_head"]
    assert set(state["gates"]) == {"A0", "A", "B", "C", "C_prime"}
    for phase in state["gates"]:
        assert json.loads((miniature_run / phase / "gate.json").read_text())["jobs"][0]["checks"]
    models, run_config = load_models(miniature_run)  # RUNDIR/final, what `export --run` reads
    assert run_config["plan"] == "skyrim" and set(models.keys()) == {"classifier", "metallic_seg", "albedo", "maps"}
    d_meta = find_checkpoint(miniature_run / "D" / "roughness_head", "last").meta
    assert d_meta["tags"]["phase"] == "D" and d_meta["tags"]["res"] == "128"  # 2K x 0.0625
    assert d_meta["tags"]["model"] == "roughness_head"


D_JOBS = ["segformer_decoder", "albedo_upsampling", "roughness_head", "metallic_head", "ao_head", "height_head"]


@pytest.mark.parametrize("key", ["A/main", "B/main", "C/main", "C_prime/main", *(f"D/{job}" for job in D_JOBS)])
def test_each_job_changes_exactly_its_trainable_parts(miniature_run, key):
    starts = {"A/main": "A0/main", "B/main": "A/main", "C/main": "B/main", "C_prime/main": "C/main"}
    last = find_checkpoint(miniature_run / key, "last")
    meta = last.meta
    after = last.weights()
    models = build_models(meta["models"], meta["lora_rank"])
    set_trainable(models, meta["trainable"])
    trainable = {f"{m}.{n}" for m, model in models.items() for n, p in model.named_parameters() if p.requires_grad}
    params = {f"{m}.{n}" for m, model in models.items() for n, _ in model.named_parameters()}
    # Against the previous phase's result: nothing frozen moved ...
    before = _start_weights(miniature_run, starts.get(key, "C_prime/main"), meta["lora_rank"])
    changed = _changed(before, after)
    assert changed & params <= trainable
    frozen_models = [m for m, parts in meta["trainable"].items() if parts == ["none"]]
    assert not any(k.startswith(f"{m}.") for k in changed for m in frozen_models)
    # ... the optimiser holds exactly the trainable tensors ...
    assert len(last.state()["optimizer"]["param_groups"][0]["params"]) == len(trainable)
    # ... and against the job's own starting weights, every one of them moved (a job whose optimiser
    # steps change nothing fails here, D's small learning rates included).
    started = find_checkpoint(miniature_run / key, "start").weights()
    assert meta["global_step"] > 0 and _changed(started, after) & params == trainable


def test_lora_is_added_in_b_on_the_transformers_only(miniature_run):
    a = _weights(miniature_run, "A/main", "best")
    b = _weights(miniature_run, "B/main", "last")
    assert not any("lora_" in k for k in a)
    lora_models = {k.split(".")[0] for k in b if "lora_" in k}
    assert lora_models == {"classifier", "metallic_seg"}
    d = _weights(miniature_run, "D/segformer_decoder", "last")
    assert {k for k in d if "lora_" in k} == {k for k in b if "lora_" in k}  # kept, not extended


def test_final_models_merge_the_d_jobs_and_keep_the_1k_classifier(miniature_run):
    final = Checkpoint(miniature_run / "final").weights()
    c_prime = _weights(miniature_run, "C_prime/main", "best")
    for key, value in final.items():
        if key.startswith("classifier."):
            assert torch.equal(value, c_prime[key])
    for job in ("roughness_head", "albedo_upsampling"):
        best = _weights(miniature_run, f"D/{job}", "best")
        for key in _changed(c_prime, best):
            assert torch.equal(final[key], best[key])


def test_a_failed_gate_stops_the_run_until_forced(tmp_path, capsys):
    plan = small_plan(tmp_path, matsynth_max_rise=-1.0)  # demands a 100 % fall: always fails
    run = tmp_path / "run"
    assert main(["run", "--plan", plan, "--out", str(run), *SMALL_ARGS, "--epochs-scale", "0.34"]) == 2
    err = capsys.readouterr().err
    assert "Gate after phase P1 failed" in err and "--resume --force" in err
    assert not (run / "P2").exists()
    assert main(["run", "--out", str(run), "--resume", "--force", "--no-export"]) == 0
    gate = json.loads((run / "P1" / "gate.json").read_text())
    assert gate["passed"] is False and gate["forced"] is True
    assert (run / "final" / "weights.safetensors").is_file()


def test_existing_run_folder_is_not_overwritten_without_resume(tmp_path, capsys):
    (tmp_path / "run_config.json").write_text("{}")
    assert main(["train", "--out", str(tmp_path), "--synthetic", "2"]) == 2  # `train` is `run`
    assert "already holds a run" in capsys.readouterr().err


def test_phase_runs_one_phase_again_from_the_earlier_phases_result(tmp_path, capsys):
    plan = small_plan(tmp_path)
    args = [*SMALL_ARGS, "--epochs-scale", "0.34"]
    early = tmp_path / "early"
    assert main(["run", "--plan", plan, "--out", str(early), *args, "--phase", "P2"]) == 2
    assert "Phase P1 has not finished" in capsys.readouterr().err

    run = tmp_path / "run"
    assert main(["run", "--plan", plan, "--out", str(run), *args]) == 0
    p1_last = (run / "P1" / "main" / "last.json").read_text()
    first = {job: _weights(run, f"P2/{job}", "best") for job in ("seg", "rough")}
    (run / "P2" / "marker").write_text("from the first run")
    assert main(["run", "--out", str(run), "--phase", "P2", "--no-export"]) == 0
    assert not (run / "P2" / "marker").exists()  # P2 was cleared and trained again ...
    assert (run / "P1" / "main" / "last.json").read_text() == p1_last  # ... P1 was not touched
    state = json.loads((run / "run_state.json").read_text())
    assert all(state["jobs"][f"P2/{job}"]["status"] == "done" for job in first)
    for job, weights in first.items():  # from P1's best again, so to the same weights
        again = _weights(run, f"P2/{job}", "best")
        assert all(torch.equal(weights[k], again[k]) for k in weights), job


def test_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    plan = small_plan(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    reference = tmp_path / "reference"
    assert main(["run", "--plan", plan, "--out", str(reference), *SMALL_ARGS]) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "trainer", "run", "--plan", plan, "--out", str(killed),
                                *SMALL_ARGS, "--checkpoint-every", "1"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = killed / "P1" / "main" / "last.json"
    deadline, mid_epoch = time.time() + 120, False
    try:
        while time.time() < deadline:  # wait until a mid-epoch checkpoint of epoch 2 exists
            if pointer.is_file():
                try:
                    meta = find_checkpoint(pointer.parent, "last").meta
                except Exception:  # the pointer moved between reads
                    meta = {}
                if meta.get("epoch") == 1 and meta.get("batches_done", 0) > 0:
                    mid_epoch = True
                    break
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert mid_epoch and process.returncode == -signal.SIGKILL
    assert not (killed / "final").exists()  # it really was interrupted
    assert main(["run", "--out", str(killed), "--resume", "--no-export"]) == 0

    for key in ("P1/main", "P2/seg", "P2/rough"):
        for pointer_name in ("best", "last"):
            a, b = _weights(reference, key, pointer_name), _weights(killed, key, pointer_name)
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a), (key, pointer_name)
    final_a = Checkpoint(reference / "final").weights()
    final_b = Checkpoint(killed / "final").weights()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_init_from_a_models_folder_continues_from_its_trainable_checkpoint(tmp_path):
    from trainer.checkpoint import resolve_checkpoint, write_trainable
    plan = small_plan(tmp_path)
    first = tmp_path / "first"
    assert main(["run", "--plan", plan, "--out", str(first), *SMALL_ARGS, "--epochs-scale", "0.34"]) == 0
    shipped = tmp_path / "models"  # what an export leaves beside the ONNX files
    write_trainable(resolve_checkpoint(first), shipped)
    (shipped / "manifest.json").write_text(json.dumps({"provenance": {"run": "the-shipped-run"}}))
    second = tmp_path / "second"
    assert main(["run", "--plan", plan, "--out", str(second), *SMALL_ARGS, "--epochs-scale", "0.34",
                 "--init-from", str(shipped)]) == 0
    start = find_checkpoint(second / "P1" / "main", "start")
    expected = resolve_checkpoint(shipped).weights()
    assert start.weights().keys() == expected.keys()
    # The shipped copy is half precision; the job started from exactly those values.
    assert all(torch.equal(start.weights()[k], v.to(start.weights()[k].dtype)) for k, v in expected.items())
    assert json.loads((second / "run_config.json").read_text())["init_from"] == str(shipped)
    # Exporting the new models over that folder does not lose where the weights came from.
    (shipped / "manifest.json").write_text(json.dumps({"provenance": {"run": "second"}}))
    from trainer.train import run_provenance
    assert run_provenance(second)["data"]["init_from_run"] == {"run": "the-shipped-run"}
    # --reset starts the named parameters as new ones (the zero-initialised height head: no correction).
    third = tmp_path / "third"
    assert main(["run", "--plan", plan, "--out", str(third), *SMALL_ARGS, "--epochs-scale", "0.34",
                 "--init-from", str(shipped), "--reset", "maps.heads.height"]) == 0
    started = find_checkpoint(third / "P1" / "main", "start").weights()
    reset = [k for k in started if k.startswith("maps.heads.height.")]
    assert reset and not started["maps.heads.height.1.weight"].any()
    assert expected["maps.heads.height.1.weight"].any()
    assert all(torch.equal(started[k], v.to(started[k].dtype)) for k, v in expected.items() if k not in reset)
    assert main(["run", "--plan", plan, "--out", str(tmp_path / "fourth"), *SMALL_ARGS,
                 "--init-from", str(shipped), "--reset", "maps.heads.glow"]) != 0


def _help(parser, command, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    return capsys.readouterr().out


def test_train_is_an_alias_of_run_with_one_parser(capsys):
    from trainer.__main__ import build_parser

    parser = build_parser()
    run_help = _help(parser, "run", capsys)
    assert "--synthetic" in run_help and _help(parser, "train", capsys) == run_help  # one parser, registered once
    argv = ["--out", "x", "--synthetic", "2", "--res-scale", "0.5"]
    run, train = parser.parse_args(["run", *argv]), parser.parse_args(["train", *argv])
    assert {k: v for k, v in vars(run).items() if k != "command"} == \
        {k: v for k, v in vars(train).items() if k != "command"}
