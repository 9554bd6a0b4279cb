"""Plans: the loader refuses malformed plans, merges `extends` and job overrides as documented, and
every shipped plan is a well-formed A0 -> A -> B -> C -> C′ -> D plan whose trainable parts exist.

The plan's numbers themselves are not restated here (editing a learning rate in the TOML is a plan
change, not a bug); what a schedule does with the numbers is tested in test_optim.py."""
import math

import pytest
import torch

from trainer.contract import DOMAINS
from trainer.models import ModelsConfig, add_lora, create_models, set_trainable
from trainer.optim import create_optimizer, create_scheduler
from trainer.plan import (MODEL_NAMES, OPTIMIZERS, PLANS_DIR, SCHEDULER_KEYS, PlanError, deep_merge, load_plan,
                          parse_plan)

from tests.trainer.helpers import small_plan

SHIPPED = sorted(p.stem for p in PLANS_DIR.glob("*.toml"))
PHASE_ORDER = ["A0", "A", "B", "C", "C_prime", "D"]


def test_the_shipped_plans_are_found_by_name():
    assert {"skyrim", "skyrim_lowtrust", "skyrim_cpu"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_plan_runs_the_phases_in_the_plan_order(name):
    plan = load_plan(name)
    assert [p.name for p in plan.phases] == PHASE_ORDER
    assert plan.phase("C′").name == "C_prime"  # found by its label too
    assert [p.init for p in plan.phases] == ["new"] + ["previous"] * (len(PHASE_ORDER) - 1)
    assert [j.name for j in plan.phase("A0").jobs] == ["main"]
    assert len(plan.phase("D").jobs) > 1  # D: independent per-head jobs


@pytest.mark.parametrize("name", SHIPPED)
def test_every_field_of_every_shipped_phase_has_a_valid_type_and_range(name):
    plan = load_plan(name)
    assert isinstance(plan.seed, int) and 0 < plan.holdout_fraction < 1
    assert plan.early_stop.patience >= 1 and 0 <= plan.early_stop.min_rel_improvement < 1
    assert plan.gate.window >= 1 and 0 < plan.gate.skyrim_max_rise < 1 and 0 < plan.gate.matsynth_max_rise < 1
    assert plan.lora_rank >= 1
    for phase in plan.phases:
        data = phase.data
        assert set(data.mix) <= set(DOMAINS) and all(share > 0 for share in data.mix.values()), phase.name
        assert math.isclose(sum(data.mix.values()), 1.0), phase.name
        assert isinstance(data.resolution, int) and data.resolution >= 64 and data.resolution % 32 == 0
        assert isinstance(data.augment, bool)
        assert 0 <= data.composite_2crop and 0 <= data.composite_4crop and data.composite_2crop + data.composite_4crop <= 1
        assert 0 <= data.photometric_strength <= 1
        assert phase.batch_size >= 1 and phase.grad_accum >= 1
        assert phase.samples_per_epoch is None or phase.samples_per_epoch >= phase.batch_size
        assert set(phase.gate) <= set(DOMAINS)
        for job in phase.jobs:
            where = f"{phase.name}/{job.name}"
            low, high = job.epochs
            assert isinstance(low, int) and 1 <= low <= high, where
            opt = job.optimizer
            assert opt.name in OPTIMIZERS and opt.alternative in (None, *OPTIMIZERS), where
            assert 0 < opt.lr < 1e-2, where
            assert len(opt.betas) == 2 and all(0 < b < 1 for b in opt.betas), where
            assert 0 <= opt.weight_decay < 1, where
            assert job.scheduler.name in SCHEDULER_KEYS and set(job.scheduler.params) <= SCHEDULER_KEYS[job.scheduler.name]
            assert set(job.trainable) == set(MODEL_NAMES) and job.active_models, where


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_job_builds_its_optimiser_and_scheduler(name):
    for phase in load_plan(name).phases:
        for job in phase.jobs:
            for alternative in (False, True):
                opt = create_optimizer([torch.nn.Parameter(torch.zeros(2))], job.optimizer,
                                       use_alternative=alternative)
                create_scheduler(opt, job.scheduler, epochs=job.epochs[1], steps_per_epoch=3)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_trainable_part_exists_and_lora_is_trained_only_once_added(name):
    """Apply each job's trainable spec to (tiny) models in phase order, adding LoRA where the plan
    says: a misspelt part, or a `lora` part before add_lora, raises."""
    plan = load_plan(name)
    models = create_models(ModelsConfig.tiny(), seed=0)
    for phase in plan.phases:
        if phase.add_lora:
            add_lora(models, rank=plan.lora_rank)
        for job in phase.jobs:
            counts = set_trainable(models, {m: list(p) for m, p in job.trainable.items()})
            assert all(counts[m] > 0 for m in job.active_models), (phase.name, job.name, counts)
            assert all(counts[m] == 0 for m in set(MODEL_NAMES) - job.active_models)


def test_the_lowtrust_plan_trusts_skyrim_less_and_changes_nothing_else():
    base, low = load_plan("skyrim"), load_plan("skyrim_lowtrust")
    for b, l in zip(base.phases, low.phases):
        assert l.data.mix.get("skyrim", 0) <= b.data.mix.get("skyrim", 0), b.name
        for bj, lj in zip(b.jobs, l.jobs):
            assert lj.optimizer.lr <= bj.optimizer.lr
            assert (lj.epochs, lj.scheduler, lj.trainable) == (bj.epochs, bj.scheduler, bj.trainable)
    assert any(low.phase(n).data.mix != base.phase(n).data.mix for n in PHASE_ORDER)
    assert low.phase("A0").jobs == base.phase("A0").jobs and low.phase("A").data == base.phase("A").data


def test_extends_merges_tables_key_by_key_and_job_keys_override_the_phase(tmp_path):
    base = load_plan(small_plan(tmp_path))
    (tmp_path / "child.toml").write_text(
        'extends = "small.toml"\nname = "child"\n'
        '[phases.P2.optimizer]\nlr = 1e-5\n'
        '[phases.P2.jobs.rough]\noptimizer = { weight_decay = 0.5 }\nepochs = [1, 4]\n', encoding="utf-8")
    child = load_plan(tmp_path / "child.toml")
    assert child.name == "child" and child.phase("P1") == base.phase("P1")
    seg, rough = child.phase("P2").jobs
    # The phase's lowered LR reaches every job; a job's optimiser keys are merged over the phase's.
    assert seg.optimizer.lr == rough.optimizer.lr == 1e-5
    assert seg.optimizer.weight_decay == base.phase("P2").jobs[0].optimizer.weight_decay and rough.optimizer.weight_decay == 0.5
    assert rough.optimizer.betas == seg.optimizer.betas and rough.optimizer.name == seg.optimizer.name
    assert rough.epochs == (1, 4) and seg.epochs == base.phase("P2").jobs[0].epochs
    # trainable is replaced whole: models a job does not name train nothing.
    assert rough.trainable == {**{m: ("none",) for m in MODEL_NAMES}, "maps": ("head:roughness",)}


def _small_raw(tmp_path):
    return load_plan(small_plan(tmp_path)).raw


@pytest.mark.parametrize("override, message", [
    ({"phases": {"P2": {"data": {"mix": {"matsynth": 0.75, "skyrim": 0.5}}}}}, "share 1.0"),
    ({"phases": {"P2": {"data": {"mix": {"matsynth": 0.5, "steam": 0.5}}}}}, "share 1.0"),
    ({"phases": {"P1": {"scheduler": {"T_0": 3}}}}, "scheduler"),
    ({"phases": {"P1": {"scheduler": {"name": "linear"}}}}, "scheduler"),
    ({"phases": {"P1": {"optimizer": {"name": "sgd"}}}}, "optimiser must be one of"),
    ({"phases": {"P1": {"optimizer": {"alternative": "sgd"}}}}, "optimiser must be one of"),
    ({"phases": {"P1": {"epochs": [3, 2]}}}, "epochs must be"),
    ({"phases": {"P1": {"epochs": [0, 2]}}}, "epochs must be"),
    ({"phases": {"P1": {"trainable": {"vit": ["all"]}}}}, "unknown models"),
    ({"phases": {"P1": {"init": "previous"}}}, "must start from new models"),
    ({"phases": {"P2": {"init": "resume"}}}, "init must be"),
    ({"phases": {"P2": {"gate": ["steam"]}}}, "gate may only list"),
    ({"crop_curriculum": {"phases": ["P1", "P9"]}}, "unknown phase 'P9'"),
    ({"phases": {}}, "no phases"),
])
def test_malformed_plans_are_refused_with_a_plan_error(tmp_path, override, message):
    raw = _small_raw(tmp_path)
    parse_plan(raw)  # the unmodified plan is fine
    merged = deep_merge(raw, override) if override != {"phases": {}} else dict(raw, phases={})
    with pytest.raises(PlanError, match=message):
        parse_plan(merged)


def test_missing_keys_unknown_names_bad_toml_and_extends_loops_are_plan_errors(tmp_path):
    raw = _small_raw(tmp_path)
    without_gate = {k: v for k, v in raw.items() if k != "gate"}
    with pytest.raises(PlanError, match="missing the key 'gate'"):
        parse_plan(without_gate)
    with pytest.raises(PlanError, match="no plan named"):
        load_plan("does_not_exist")
    with pytest.raises(PlanError, match="does not exist"):
        load_plan(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(PlanError, match="cannot be read"):
        load_plan(bad)
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n', encoding="utf-8")
    with pytest.raises(PlanError, match="in a loop"):
        load_plan(tmp_path / "a.toml")
    with pytest.raises(PlanError, match="has no phase 'Z'"):
        load_plan("skyrim").phase("Z")
