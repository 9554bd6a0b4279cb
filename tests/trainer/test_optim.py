"""Optimisers and schedulers built from a plan's specs: the right torch classes with the spec's
hyper-parameters, and schedules that follow their documented shape. The specs are written here, so
the tests check the factories, not the numbers of a shipped plan (test_plan.py checks those build)."""
import math

import pytest
import torch
from timm.optim import Lion
from torch.optim import lr_scheduler

from trainer.optim import LION_BETAS, LION_LR_FACTOR, LION_WD_FACTOR, create_optimizer, create_scheduler, scale_lr
from trainer.plan import OptimizerSpec, SchedulerSpec

ADAMW = OptimizerSpec("adamw", lr=2e-4, betas=(0.8, 0.99), weight_decay=0.05, alternative="lion")


def _optimizer(spec=ADAMW, **kw):
    return create_optimizer([torch.nn.Parameter(torch.zeros(3))], spec, **kw)


def _lrs(opt, sched, steps):
    """The learning rate in force at each of `steps` optimiser steps, the scheduler stepped after each."""
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_adam_family_optimisers_take_the_specs_hyper_parameters(name, cls):
    opt = _optimizer(OptimizerSpec(name, lr=3e-4, betas=(0.85, 0.995), weight_decay=0.02))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.85, 0.995), 0.02)


def test_the_alternative_replaces_the_optimiser_only_when_asked_and_present():
    assert type(_optimizer(ADAMW)) is torch.optim.AdamW
    lion = _optimizer(ADAMW, use_alternative=True)
    assert isinstance(lion, Lion)
    group = lion.param_groups[0]
    assert group["lr"] == pytest.approx(ADAMW.lr * LION_LR_FACTOR) and group["betas"] == LION_BETAS
    assert group["weight_decay"] == pytest.approx(ADAMW.weight_decay * LION_WD_FACTOR)
    no_alternative = OptimizerSpec("adamw", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    assert type(_optimizer(no_alternative, use_alternative=True)) is torch.optim.AdamW


def test_cosine_anneals_from_the_base_lr_to_eta_min_over_t_max_epochs():
    opt = _optimizer()
    sched = create_scheduler(opt, SchedulerSpec("cosine", {"T_max": 8, "eta_min": 1e-6}), epochs=8, steps_per_epoch=5)
    assert type(sched) is lr_scheduler.CosineAnnealingLR
    lrs = _lrs(opt, sched, 9)  # stepped per epoch
    assert lrs[0] == pytest.approx(ADAMW.lr) and lrs[8] == pytest.approx(1e-6)
    assert all(a > b for a, b in zip(lrs[:8], lrs[1:9]))
    assert lrs[4] == pytest.approx((ADAMW.lr + 1e-6) / 2)  # half-way down at half of T_max


def test_step_lr_multiplies_by_gamma_every_step_size_epochs():
    opt = _optimizer()
    sched = create_scheduler(opt, SchedulerSpec("step", {"step_size": 3, "gamma": 0.25}), epochs=9, steps_per_epoch=5)
    assert type(sched) is lr_scheduler.StepLR
    lrs = _lrs(opt, sched, 9)
    assert lrs == pytest.approx([ADAMW.lr * 0.25 ** (epoch // 3) for epoch in range(9)])


def test_exponential_multiplies_by_gamma_every_epoch():
    opt = _optimizer()
    sched = create_scheduler(opt, SchedulerSpec("exponential", {"gamma": 0.7}), epochs=5, steps_per_epoch=5)
    assert type(sched) is lr_scheduler.ExponentialLR
    assert _lrs(opt, sched, 5) == pytest.approx([ADAMW.lr * 0.7 ** e for e in range(5)])


def test_onecycle_spans_all_batches_warming_to_max_lr_at_pct_start():
    spec = SchedulerSpec("onecycle", {"max_lr": 6e-4, "pct_start": 0.25, "div_factor": 4.0,
                                      "final_div_factor": 2.0, "cycle_momentum": False})
    opt = _optimizer()
    sched = create_scheduler(opt, spec, epochs=8, steps_per_epoch=10)
    assert type(sched) is lr_scheduler.OneCycleLR and spec.per_batch
    lrs = _lrs(opt, sched, 80)  # total steps = epochs * steps_per_epoch
    start = 6e-4 / 4.0
    assert lrs[0] == pytest.approx(start)
    assert max(lrs) == pytest.approx(6e-4) and lrs.index(max(lrs)) == pytest.approx(0.25 * 80, abs=1)
    assert lrs[-1] == pytest.approx(start / 2.0, rel=1e-2)
    peak = lrs.index(max(lrs))
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1:]))


def test_warm_restarts_count_t_0_in_epochs_and_restart_at_every_epoch_start():
    spec = SchedulerSpec("cosine_restarts", {"T_0": 1, "T_mult": 1, "eta_min": 1e-6})
    opt = _optimizer()
    sched = create_scheduler(opt, spec, epochs=3, steps_per_epoch=6)
    assert type(sched) is lr_scheduler.CosineAnnealingWarmRestarts and spec.per_batch
    lrs = _lrs(opt, sched, 18)
    for epoch in range(3):
        cycle = lrs[epoch * 6:(epoch + 1) * 6]
        assert cycle[0] == pytest.approx(ADAMW.lr) and all(a > b > 1e-6 for a, b in zip(cycle, cycle[1:]))


def test_two_epoch_restart_cycles_span_two_epochs_of_batches():
    opt = _optimizer()
    sched = create_scheduler(opt, SchedulerSpec("cosine_restarts", {"T_0": 2}), epochs=4, steps_per_epoch=3)
    lrs = _lrs(opt, sched, 12)
    assert [i for i, lr in enumerate(lrs) if lr == pytest.approx(ADAMW.lr)] == [0, 6]


@pytest.mark.parametrize("name, key, attribute", [("cosine", "T_max", "T_max"), ("step", "step_size", "step_size")])
def test_epochs_scale_shrinks_epoch_counted_lengths_and_never_to_zero(name, key, attribute):
    params = {key: 15, **({"gamma": 0.5} if name == "step" else {})}
    opt = _optimizer()
    build = lambda scale: create_scheduler(opt, SchedulerSpec(name, params), epochs=3, steps_per_epoch=1,  # noqa: E731
                                           epochs_scale=scale)
    assert getattr(build(1.0), attribute) == 15
    assert getattr(build(0.2), attribute) == 3
    assert getattr(build(0.01), attribute) == 1


def test_lr_scale_multiplies_every_learning_rate_and_nothing_else():
    onecycle = SchedulerSpec("onecycle", {"max_lr": 5e-5, "pct_start": 0.3, "div_factor": 5.0})
    opt, sched = scale_lr(ADAMW, onecycle, 10.0)
    assert opt.lr == pytest.approx(ADAMW.lr * 10) and sched.params["max_lr"] == pytest.approx(5e-4)
    assert (opt.betas, opt.weight_decay, opt.alternative) == (ADAMW.betas, ADAMW.weight_decay, ADAMW.alternative)
    assert sched.params["pct_start"] == 0.3 and sched.params["div_factor"] == 5.0
    assert ADAMW.lr == 2e-4 and onecycle.params["max_lr"] == 5e-5  # the specs given are untouched
    restarts = SchedulerSpec("cosine_restarts", {"T_0": 1, "eta_min": 3e-7})
    assert scale_lr(ADAMW, restarts, 10.0)[1].params == {"T_0": 1, "eta_min": pytest.approx(3e-6)}
    assert scale_lr(ADAMW, onecycle, 1.0) == (ADAMW, onecycle)


def test_a_scaled_schedule_keeps_its_shape():
    spec = SchedulerSpec("cosine", {"T_max": 4, "eta_min": 1e-7})
    base = _lrs(o := _optimizer(), create_scheduler(o, spec, epochs=4, steps_per_epoch=1), 5)
    opt_spec, sched_spec = scale_lr(ADAMW, spec, 3.0)
    scaled = _lrs(o := _optimizer(opt_spec), create_scheduler(o, sched_spec, epochs=4, steps_per_epoch=1), 5)
    assert scaled == pytest.approx([3 * lr for lr in base])
    assert not math.isclose(base[0], base[-1])
