"""The phase plan as data: a TOML file (trainer/plans/*.toml) read into frozen dataclasses.

A plan is a sequence of phases run in file order; each phase holds one or more jobs (A0 to C′ have
one, named "main"; D has one per head). A job's keys override its phase's: `optimizer` is merged
key by key (so a plan that lowers the phase LR lowers it for every job), `scheduler` and
`trainable` are replaced whole. A plan may start with `extends = "other.toml"` and list only what
differs; tables are merged key by key. docs/training.md describes every key.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from addon.engine.errors import PBRForgeError
from trainer.contract import DOMAINS
from trainer.contract import PIPELINE_ORDER as MODEL_NAMES  # the trainer's model names

PLANS_DIR = Path(__file__).parent / "plans"
OPTIMIZERS = ("adamw", "adam", "lion")
# Scheduler name -> the torch keyword arguments a plan may set for it.
SCHEDULER_KEYS = {
    "cosine": {"T_max", "eta_min"},
    "onecycle": {"max_lr", "pct_start", "div_factor", "final_div_factor", "anneal_strategy", "cycle_momentum"},
    "step": {"step_size", "gamma"},
    "cosine_restarts": {"T_0", "T_mult", "eta_min"},
    "exponential": {"gamma"},
}
# Schedulers whose natural unit is a batch (OneCycle's total_steps, warm restarts within an epoch).
PER_BATCH_SCHEDULERS = ("onecycle", "cosine_restarts")
SINGLE_JOB = "main"


class PlanError(PBRForgeError):
    """A plan file that is missing or does not describe a valid plan."""


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    alternative: str | None = None  # the optimiser `--lion` switches to, where the plan allows it


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    params: dict

    @property
    def per_batch(self) -> bool:
        return self.name in PER_BATCH_SCHEDULERS


@dataclass(frozen=True)
class DataSpec:
    mix: dict[str, float]
    resolution: int
    augment: bool
    composite_2crop: float
    composite_4crop: float
    photometric_strength: float
    material_filter: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobSpec:
    name: str
    epochs: tuple[int, int]  # (min, max): early stop never fires before min
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec
    trainable: dict[str, tuple[str, ...]]  # every model name -> part names (trainer.models.set_trainable)

    @property
    def active_models(self) -> set[str]:
        """Models whose losses drive this job: those with something to train."""
        return {m for m, parts in self.trainable.items() if parts != ("none",)}


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    label: str
    purpose: str
    init: str  # "new" (fresh models) or "previous" (the previous phase's best checkpoint)
    data: DataSpec
    batch_size: int
    grad_accum: int
    samples_per_epoch: int | None
    gate: tuple[str, ...]  # domains whose gate condition is enforced before advancing
    add_lora: bool
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class EarlyStopSpec:
    patience: int
    min_rel_improvement: float


@dataclass(frozen=True)
class GateSpec:
    window: int
    skyrim_max_rise: float
    matsynth_max_rise: float


@dataclass(frozen=True)
class Plan:
    name: str
    seed: int
    holdout_fraction: float
    early_stop: EarlyStopSpec
    gate: GateSpec
    crop_curriculum_phases: tuple[str, ...]
    lora_rank: int
    phases: tuple[PhaseSpec, ...]
    raw: dict = field(repr=False, compare=False)  # the merged TOML, saved with every run

    def phase(self, name: str) -> PhaseSpec:
        for phase in self.phases:
            if name in (phase.name, phase.label):
                return phase
        raise PlanError(f"Plan '{self.name}' has no phase '{name}'; its phases are "
                        f"{', '.join(p.name for p in self.phases)}.")


def load_plan(name_or_path: str | Path) -> Plan:
    """A plan by name (a file in trainer/plans) or by path to a TOML file."""
    return parse_plan(_read_toml(_plan_path(name_or_path)))


def _plan_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise PlanError(f"The plan file {path} does not exist; pass an existing .toml file or a plan name.")
        return path
    candidate = PLANS_DIR / f"{name_or_path}.toml"
    if not candidate.is_file():
        names = ", ".join(sorted(p.stem for p in PLANS_DIR.glob("*.toml")))
        raise PlanError(f"There is no plan named '{name_or_path}'; use one of {names} or a path to a .toml file.")
    return candidate


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise PlanError(f"The plan {path} extends itself in a loop; fix its 'extends' line.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"The plan file {path} cannot be read ({exc}); fix the TOML and try again.") from exc
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    return deep_merge(_read_toml(path.parent / base_name, seen + (path,)), data)


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_plan(raw: dict) -> Plan:
    """Validate a merged plan dictionary and build the dataclasses."""
    try:
        phases_raw = raw["phases"]
        plan = Plan(
            name=str(raw["name"]),
            seed=int(raw.get("seed", 0)),
            holdout_fraction=float(raw.get("holdout_fraction", 0.1)),
            early_stop=EarlyStopSpec(int(raw["early_stop"]["patience"]),
                                     float(raw["early_stop"]["min_rel_improvement"])),
            gate=GateSpec(int(raw["gate"]["window"]), float(raw["gate"]["skyrim_max_rise"]),
                          float(raw["gate"]["matsynth_max_rise"])),
            crop_curriculum_phases=tuple(raw.get("crop_curriculum", {}).get("phases", ())),
            lora_rank=int(raw.get("lora", {}).get("rank", 8)),
            phases=tuple(_parse_phase(name, body) for name, body in phases_raw.items()),
            raw=raw,
        )
    except KeyError as exc:
        raise PlanError(f"The plan is missing the key {exc}; add it (see docs/training.md).") from exc
    names = [p.name for p in plan.phases]
    if not names:
        raise PlanError("The plan has no phases; add at least one [phases.NAME] table.")
    if plan.phases[0].init != "new":
        raise PlanError(f"The first phase '{names[0]}' must start from new models (init = \"new\").")
    for name in plan.crop_curriculum_phases:
        if name not in names:
            raise PlanError(f"crop_curriculum names an unknown phase '{name}'; use one of {', '.join(names)}.")
    return plan


def _parse_phase(name: str, body: dict) -> PhaseSpec:
    where = f"phase {name}"
    data = body["data"]
    mix = {str(k): float(v) for k, v in data["mix"].items()}
    if not set(mix) <= set(DOMAINS) or abs(sum(mix.values()) - 1.0) > 1e-6:
        raise PlanError(f"In {where}, data.mix must share 1.0 between {' and '.join(DOMAINS)}; got {mix}.")
    if body["init"] not in ("new", "previous"):
        raise PlanError(f"In {where}, init must be \"new\" or \"previous\".")
    gate = tuple(body.get("gate", ()))
    if not set(gate) <= set(DOMAINS):
        raise PlanError(f"In {where}, gate may only list {', '.join(DOMAINS)}.")
    defaults = {key: body[key] for key in ("epochs", "optimizer", "scheduler") if key in body}
    defaults["trainable"] = body.get("trainable")
    jobs_raw = body.get("jobs") or {SINGLE_JOB: {}}
    jobs = []
    for job_name, job in jobs_raw.items():
        merged = dict(defaults, **{k: v for k, v in job.items() if k != "optimizer"})
        merged["optimizer"] = dict(defaults.get("optimizer", {}), **job.get("optimizer", {}))
        jobs.append(_parse_job(f"{where}, job {job_name}", job_name, merged))
    return PhaseSpec(
        name=name,
        label=str(body.get("label", name)),
        purpose=str(body.get("purpose", "")),
        init=body["init"],
        data=DataSpec(
            mix=mix,
            resolution=int(data["resolution"]),
            augment=bool(data["augment"]),
            composite_2crop=float(data["composite_2crop"]),
            composite_4crop=float(data["composite_4crop"]),
            photometric_strength=float(data["photometric_strength"]),
            material_filter=tuple(data.get("material_filter", ())),
        ),
        batch_size=int(body["batch_size"]),
        grad_accum=int(body.get("grad_accum", 1)),
        samples_per_epoch=body.get("samples_per_epoch"),
        gate=gate,
        add_lora=bool(body.get("add_lora", False)),
        jobs=tuple(jobs),
    )


def _parse_job(where: str, name: str, job: dict) -> JobSpec:
    low, high = (int(e) for e in job["epochs"])
    if not 1 <= low <= high:
        raise PlanError(f"In {where}, epochs must be [min, max] with 1 <= min <= max.")
    opt = job["optimizer"]
    if opt["name"] not in OPTIMIZERS or opt.get("alternative") not in (None, *OPTIMIZERS):
        raise PlanError(f"In {where}, the optimiser must be one of {', '.join(OPTIMIZERS)}.")
    sched = dict(job["scheduler"])
    sched_name = sched.pop("name")
    if sched_name not in SCHEDULER_KEYS or not set(sched) <= SCHEDULER_KEYS[sched_name]:
        raise PlanError(f"In {where}, the scheduler must be one of {', '.join(SCHEDULER_KEYS)} "
                        f"with keys among {sorted(SCHEDULER_KEYS.get(sched_name, ()))}; got {job['scheduler']}.")
    trainable_raw = job["trainable"] or {}
    unknown = set(trainable_raw) - set(MODEL_NAMES)
    if unknown:
        raise PlanError(f"In {where}, trainable names unknown models {sorted(unknown)}; use {', '.join(MODEL_NAMES)}.")
    trainable = {m: tuple(trainable_raw.get(m, ("none",))) for m in MODEL_NAMES}
    return JobSpec(
        name=name,
        epochs=(low, high),
        optimizer=OptimizerSpec(
            name=opt["name"], lr=float(opt["lr"]), betas=tuple(float(b) for b in opt["betas"]),
            weight_decay=float(opt["weight_decay"]), alternative=opt.get("alternative"),
        ),
        scheduler=SchedulerSpec(sched_name, sched),
        trainable=trainable,
    )
