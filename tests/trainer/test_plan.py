"""The shipped plans reproduce every number of the training plan (the numbers are hard-coded here,
copied from the plan document, so a drifting TOML fails)."""
import pytest

from trainer.plan import PlanError, load_plan, parse_plan, deep_merge

ALL = {"classifier": ("all",), "metallic_seg": ("all",), "albedo": ("all",), "maps": ("all",)}

# phase -> (mix, resolution, epochs, optimiser, lr, betas, wd, scheduler, params, 2-crop, 4-crop, photometric, augment)
PLAN = {
    "A0": ({"matsynth": 1.0}, 1024, (10, 15), "adamw", 1e-4, (0.9, 0.999), 1e-2,
           "cosine", {"T_max": 15}, 0.0, 0.0, 0.0, False),
    "A": ({"matsynth": 1.0}, 1024, (30, 40), "adamw", 5e-5, (0.9, 0.999), 1e-2,
          "onecycle", {"max_lr": 5e-5, "pct_start": 0.3, "div_factor": 5.0, "final_div_factor": 1.0,
                       "cycle_momentum": False},
          0.30, 0.15, 0.0, True),
    "B": ({"matsynth": 0.75, "skyrim": 0.25}, 1024, (8, 12), "adamw", 1e-5, (0.9, 0.999), 1e-2,
          "step", {"step_size": 6, "gamma": 0.5}, 0.30, 0.15, 1.0, True),
    "C": ({"matsynth": 0.5, "skyrim": 0.5}, 1024, (8, 12), "adamw", 5e-6, (0.9, 0.9995), 1e-2,
          "cosine", {"T_max": 12}, 0.20, 0.10, 1.0, True),
    "C_prime": ({"matsynth": 0.5, "skyrim": 0.5}, 1024, (1, 2), "adamw", 3e-6, (0.9, 0.9995), 1e-2,
                "cosine_restarts", {"T_0": 1, "T_mult": 1, "eta_min": 3e-7}, 0.20, 0.10, 1.0, True),
}
# D job -> (model trained parts, epochs, optimiser, wd, scheduler, params)
D_JOBS = {
    "segformer_decoder": ({"metallic_seg": ("decoder",)}, (5, 8), "adamw", 1e-2, "step", {"step_size": 4, "gamma": 0.5}),
    "albedo_upsampling": ({"albedo": ("final_upsampling",)}, (6, 10), "adam", 0.0, "exponential", {"gamma": 0.9}),
    "roughness_head": ({"maps": ("head:roughness",)}, (6, 10), "adam", 0.0, "exponential", {"gamma": 0.9}),
    "metallic_head": ({"maps": ("head:metallic",)}, (6, 10), "adam", 0.0, "exponential", {"gamma": 0.9}),
    "ao_head": ({"maps": ("head:ao",)}, (6, 10), "adam", 0.0, "exponential", {"gamma": 0.9}),
    "height_head": ({"maps": ("head:height",)}, (6, 10), "adam", 0.0, "exponential", {"gamma": 0.9}),
}


def test_skyrim_plan_phases_run_in_the_plan_order():
    plan = load_plan("skyrim")
    assert [p.name for p in plan.phases] == ["A0", "A", "B", "C", "C_prime", "D"]
    assert plan.phase("C′").name == "C_prime"


@pytest.mark.parametrize("name", list(PLAN))
def test_skyrim_plan_reproduces_each_1k_phase(name):
    mix, res, epochs, opt, lr, betas, wd, sched, params, c2, c4, photo, augment = PLAN[name]
    phase = load_plan("skyrim").phase(name)
    (job,) = phase.jobs
    assert phase.data.mix == mix and phase.data.resolution == res and phase.data.augment is augment
    assert (phase.data.composite_2crop, phase.data.composite_4crop) == (c2, c4)
    assert phase.data.photometric_strength == photo
    assert job.epochs == epochs
    assert (job.optimizer.name, job.optimizer.lr, job.optimizer.betas, job.optimizer.weight_decay) == (opt, lr, betas, wd)
    assert (job.scheduler.name, job.scheduler.params) == (sched, params)


def test_onecycle_of_phase_a_starts_and_ends_at_1e_5():
    params = load_plan("skyrim").phase("A").jobs[0].scheduler.params
    start = params["max_lr"] / params["div_factor"]
    assert start == pytest.approx(1e-5) and start / params["final_div_factor"] == pytest.approx(1e-5)


def test_trainable_parts_follow_the_freeze_and_lora_rules():
    plan = load_plan("skyrim")
    assert plan.phase("A0").jobs[0].trainable == ALL and plan.phase("A").jobs[0].trainable == ALL
    assert plan.phase("A0").samples_per_epoch == 1000
    b, c, cp = (plan.phase(n).jobs[0].trainable for n in ("B", "C", "C_prime"))
    assert b == {"classifier": ("heads", "lora"), "metallic_seg": ("decoder", "lora"),
                 "albedo": ("decoder", "heads"), "maps": ("decoder", "heads")}
    assert all(c[m] == b[m] + ("encoder_top_half",) for m in b)
    assert cp == {m: ("norm",) for m in ALL}
    assert plan.phase("C").jobs[0].optimizer.alternative == "lion"
    assert [p.name for p in plan.phases if p.add_lora] == ["B"]
    assert plan.crop_curriculum_phases == ("B", "C")


def test_phase_d_is_six_independent_2k_skyrim_jobs_without_the_vit():
    d = load_plan("skyrim").phase("D")
    assert d.data.mix == {"skyrim": 1.0} and d.data.resolution == 2048
    assert d.data.photometric_strength == 0.5 and d.data.composite_2crop == d.data.composite_4crop == 0.0
    assert [j.name for j in d.jobs] == list(D_JOBS)
    for job in d.jobs:
        parts, epochs, opt, wd, sched, params = D_JOBS[job.name]
        assert {m: p for m, p in job.trainable.items() if p != ("none",)} == parts
        assert job.trainable["classifier"] == ("none",)
        assert job.epochs == epochs and job.optimizer.lr == 1e-6
        assert (job.optimizer.name, job.optimizer.betas, job.optimizer.weight_decay) == (opt, (0.9, 0.9995), wd)
        assert (job.scheduler.name, job.scheduler.params) == (sched, params)


def test_gate_and_early_stop_numbers_match_the_plan():
    plan = load_plan("skyrim")
    assert (plan.gate.window, plan.gate.skyrim_max_rise, plan.gate.matsynth_max_rise) == (3, 0.05, 0.10)
    assert plan.early_stop.patience == 4


def test_lowtrust_plan_lowers_skyrim_share_and_phase_d_lr_only():
    base, low = load_plan("skyrim"), load_plan("skyrim_lowtrust")
    assert low.phase("B").data.mix == {"matsynth": 0.85, "skyrim": 0.15}
    assert low.phase("C").data.mix == {"matsynth": 0.70, "skyrim": 0.30}
    assert all(job.optimizer.lr == 5e-7 for job in low.phase("D").jobs)
    assert low.phase("D").data.mix == {"skyrim": 1.0}
    for name in ("A0", "A", "B", "C"):
        assert low.phase(name).jobs == base.phase(name).jobs


def test_invalid_plans_are_refused_with_a_plan_error(tmp_path):
    raw = load_plan("skyrim").raw
    with pytest.raises(PlanError, match="share 1.0"):
        parse_plan(deep_merge(raw, {"phases": {"B": {"data": {"mix": {"matsynth": 0.75, "skyrim": 0.5}}}}}))
    with pytest.raises(PlanError, match="scheduler"):
        parse_plan(deep_merge(raw, {"phases": {"A0": {"scheduler": {"T_0": 3}}}}))
    with pytest.raises(PlanError, match="no plan named"):
        load_plan("does_not_exist")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(PlanError, match="cannot be read"):
        load_plan(bad)
