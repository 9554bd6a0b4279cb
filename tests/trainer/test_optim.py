"""Optimisers and schedulers built from the plan have the plan's classes and hyper-parameters."""
import pytest
import torch
from timm.optim import Lion
from torch.optim import lr_scheduler

from trainer.optim import create_optimizer, create_scheduler, scale_lr
from trainer.plan import load_plan

EXPECTED = {  # (phase, job) -> (optimiser class, scheduler class)
    ("A0", "main"): (torch.optim.AdamW, lr_scheduler.CosineAnnealingLR),
    ("A", "main"): (torch.optim.AdamW, lr_scheduler.OneCycleLR),
    ("B", "main"): (torch.optim.AdamW, lr_scheduler.StepLR),
    ("C", "main"): (torch.optim.AdamW, lr_scheduler.CosineAnnealingLR),
    ("C_prime", "main"): (torch.optim.AdamW, lr_scheduler.CosineAnnealingWarmRestarts),
    ("D", "segformer_decoder"): (torch.optim.AdamW, lr_scheduler.StepLR),
    ("D", "albedo_upsampling"): (torch.optim.Adam, lr_scheduler.ExponentialLR),
    ("D", "roughness_head"): (torch.optim.Adam, lr_scheduler.ExponentialLR),
}


def _build(phase, job_name, steps_per_epoch=10, **kw):
    job = next(j for j in load_plan("skyrim").phase(phase).jobs if j.name == job_name)
    opt = create_optimizer([torch.nn.Parameter(torch.zeros(3))], job.optimizer, **kw)
    sched = create_scheduler(opt, job.scheduler, epochs=job.epochs[1], steps_per_epoch=steps_per_epoch)
    return job, opt, sched


@pytest.mark.parametrize("key", list(EXPECTED))
def test_each_job_gets_the_plans_optimiser_and_scheduler(key):
    job, opt, sched = _build(*key)
    opt_cls, sched_cls = EXPECTED[key]
    assert type(opt) is opt_cls and type(sched) is sched_cls
    group = opt.param_groups[0]
    assert group["betas"] == job.optimizer.betas and group["weight_decay"] == job.optimizer.weight_decay
    if job.scheduler.name != "onecycle":
        assert group["initial_lr"] == job.optimizer.lr


def test_scheduler_hyper_parameters_equal_the_plan():
    assert _build("A0", "main")[2].T_max == 15
    assert _build("C", "main")[2].T_max == 12
    b = _build("B", "main")[2]
    assert (b.step_size, b.gamma) == (6, 0.5)
    seg = _build("D", "segformer_decoder")[2]
    assert (seg.step_size, seg.gamma) == (4, 0.5)
    assert _build("D", "height_head")[2].gamma == 0.9


def test_onecycle_warms_to_5e_5_at_30_percent_and_ends_at_1e_5():
    _, opt, sched = _build("A", "main", steps_per_epoch=10)  # 40 epochs -> 400 steps
    lrs = []
    for _ in range(400):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert max(lrs) == pytest.approx(5e-5) and lrs.index(max(lrs)) == pytest.approx(0.3 * 400, abs=1)
    assert lrs[-1] == pytest.approx(1e-5, rel=1e-3)


def test_warm_restarts_return_to_3e_6_at_every_epoch_start():
    _, opt, sched = _build("C_prime", "main", steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[5] == pytest.approx(3e-6) and lrs[4] < lrs[0]


def test_lion_replaces_adamw_in_phase_c_only_when_asked():
    _, opt, _ = _build("C", "main", use_alternative=True)
    assert isinstance(opt, Lion)
    _, opt, _ = _build("B", "main", use_alternative=True)  # B has no alternative
    assert type(opt) is torch.optim.AdamW


def test_epochs_scale_shrinks_epoch_counted_schedules():
    job = load_plan("skyrim").phase("A0").jobs[0]
    opt = create_optimizer([torch.nn.Parameter(torch.zeros(1))], job.optimizer)
    assert create_scheduler(opt, job.scheduler, epochs=2, steps_per_epoch=1, epochs_scale=0.2).T_max == 3


def test_lr_scale_multiplies_base_peak_and_floor_learning_rates():
    plan = load_plan("skyrim")
    a = plan.phase("A").jobs[0]
    opt, sched = scale_lr(a.optimizer, a.scheduler, 10.0)
    assert opt.lr == pytest.approx(5e-4) and sched.params["max_lr"] == pytest.approx(5e-4)
    assert sched.params["pct_start"] == 0.3 and a.optimizer.lr == 5e-5  # the plan itself is untouched
    cp = plan.phase("C_prime").jobs[0]
    assert scale_lr(cp.optimizer, cp.scheduler, 10.0)[1].params["eta_min"] == pytest.approx(3e-6)
