"""The one training loop. Every per-phase difference (data mix, resolution, trainable parts, LoRA,
optimiser, scheduler, epochs, gate) is data read from the plan; this file only runs it.

run_plan(cfg) runs the phases in order, each from the previous phase's best checkpoint (a phase with
several jobs, like D, merges what each job trained onto the weights they all started from), checks
the gate before advancing, stops a job early on a plateau, and exports the final models.
Exact resume: checkpoints carry weights, optimiser, scheduler, RNG, epoch and the batch reached
within the epoch; every epoch's data order and augmentation is a function of (seed, epoch).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from addon.engine.errors import PBRForgeError
from addon.engine.imageio import write_atomically
from trainer.checkpoint import (
    Checkpoint, build_models, find_checkpoint, model_state, read_json, resolve_checkpoint, save_checkpoint,
    with_new_parts,
    WEIGHTS, set_rng_state, write_trainable,
    rng_state, write_json_atomic,
)
from trainer.config import RunConfig
from trainer.contract import DOMAINS
from trainer.gates import GateResult, check_gate, should_stop_early
from trainer.logs import RunLogger, job_tags, tag_string
from trainer.optim import create_optimizer, create_scheduler, scale_lr
from trainer.plan import JobSpec, PhaseSpec, Plan, PlanError, parse_plan

log = logging.getLogger("trainer")


class GateFailed(PBRForgeError):
    """A validation gate said a domain is deteriorating; the run stopped before the next phase."""


class TrainingDiverged(PBRForgeError):
    """The loss became NaN or infinite; the last checkpoint before it is intact."""


class RunFolderError(PBRForgeError):
    """The --out folder does not fit the request (a finished or foreign run, or nothing to resume)."""


# ------------------------------------------------------------------------------------- hardware

@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """bf16 autocast on CUDA; full precision on the CPU (bf16 matmuls are slow there)."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()


def setup_runtime(device: str = "auto") -> Runtime:
    """The device, and the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise PBRForgeError("--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu.")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Runtime(dev, rank, world_size)


# ----------------------------------------------------------------------------------------- data

@dataclass
class Sources:
    train: dict  # domain -> Dataset
    val: dict    # domain -> Dataset


def open_sources(cfg: RunConfig, plan: Plan, run_dir: Path, rt: Runtime) -> Sources:
    """The training and validation datasets per domain, from real folders or procedural data."""
    from trainer.data import matsynth, skyrim
    from trainer.data.mixing import Concat, split_holdout
    roots = {"matsynth": cfg.matsynth, "skyrim": cfg.skyrim}
    if cfg.synthetic:
        roots = synthetic_roots(cfg, plan, run_dir / "synthetic", rt)
    readers = {"matsynth": matsynth.MatSynthDataset, "skyrim": skyrim.SkyrimDataset.from_root}
    datasets = {domain: readers[domain](root) for domain, root in roots.items() if root is not None}
    if cfg.library:
        # The library's training split only: its held-out materials are for `trainer evaluate`.
        from trainer.data.library import LibraryDataset
        for domain, role in (("matsynth", "truth"), ("skyrim", "old_game")):
            library = LibraryDataset(cfg.library, split="train", role=role)
            if len(library):
                datasets[domain] = Concat([datasets[domain], library]) if domain in datasets else library
    train, val = {}, {}
    for domain, dataset in datasets.items():
        train[domain], val[domain] = split_holdout(dataset, plan.holdout_fraction, plan.seed)
    needed = {d for phase in plan.phases for d in phase.data.mix}
    missing = needed - set(train)
    if missing:
        flags = " and ".join(f"--{d}" for d in sorted(missing))
        raise PBRForgeError(f"The plan trains on {', '.join(sorted(missing))} data; pass {flags} PATH "
                            f"(or --library LIB, or --synthetic N for procedural data).")
    return Sources(train, val)


def synthetic_roots(cfg: RunConfig, plan: Plan, folder: Path, rt: Runtime) -> dict[str, str]:
    """Write (once) `cfg.synthetic` procedural materials per domain as a MatSynth shard folder and a
    Skyrim pair folder, so the real readers load them. Rank 0 writes; the others wait."""
    from trainer.data import synth
    size = max(cfg.resolution(p.data.resolution) for p in plan.phases)
    done = folder / "done.json"
    if rt.is_main and not done.is_file():
        count = cfg.synthetic
        # Different seeds per domain: Skyrim stand-ins are other materials than MatSynth's.
        synth.write_matsynth_shards(synth.generate_set(count, size=size, seed=plan.seed), folder / "matsynth")
        synth.write_skyrim_set(synth.generate_set(count, size=size, seed=plan.seed + 100_003), folder / "skyrim")
        write_json_atomic(done, {"count": count, "size": size})
    if rt.distributed:
        torch.distributed.barrier()
    return {"matsynth": str(folder / "matsynth"), "skyrim": str(folder / "skyrim")}


def data_config(phase: PhaseSpec, cfg: RunConfig, crop_size: int | None, samples_per_epoch: int | None) -> dict:
    d = phase.data
    return {
        "mix": dict(d.mix),
        "resolution": cfg.resolution(d.resolution),
        "augment": d.augment,
        "composite_2crop": d.composite_2crop,
        "composite_4crop": d.composite_4crop,
        "photometric_strength": d.photometric_strength,
        "crop_size": crop_size,
        "material_filter": list(d.material_filter),
        "samples_per_epoch": samples_per_epoch,
    }


def crop_size_for(plan: Plan, cfg: RunConfig, phase: PhaseSpec, epoch: int) -> int | None:
    """Curriculum crop (256 -> 768 px at full scale) by progress through the curriculum phases."""
    if phase.name not in plan.crop_curriculum_phases:
        return None
    from trainer.data.augment import compute_crop_size
    spans = [cfg.epochs(plan.phase(n).jobs[0].epochs)[1] for n in plan.crop_curriculum_phases]
    before = sum(spans[:plan.crop_curriculum_phases.index(phase.name)])
    progress = (before + epoch - 1) / max(1, sum(spans) - 1)
    from trainer.models.segformer import SEGFORMER_MIN_SIDE
    # Miniature runs (--res-scale) would shrink early crops below what SegFormer accepts.
    crop = max(cfg.resolution(compute_crop_size(min(1.0, progress))), SEGFORMER_MIN_SIDE)
    return min(crop, cfg.resolution(phase.data.resolution))


# ----------------------------------------------------------------------------------------- loop

class LossModule(nn.Module):
    """The four models behind one forward(batch) -> losses, so DDP sees a single module whatever
    graph the objective builds (the map UNet is conditioned on the other models' outputs)."""

    def __init__(self, models: nn.ModuleDict, active: set[str]):
        super().__init__()
        self.models = models
        self.active = active

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        from trainer.objective import compute_losses
        return compute_losses(self.models, batch, self.active)


def _to_device(batch: dict, rt: Runtime) -> dict:
    """The batch's tensors on the device, and its valid flags also as a host array ("valid_host", a
    numpy array so that DDP leaves it where it is): the objective's control flow reads them there."""
    out = {"valid_host": batch["valid"].numpy()} if "valid" in batch else {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(rt.device, non_blocking=True)
            if rt.cuda and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def _seed_for(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


@dataclass
class JobContext:
    cfg: RunConfig
    plan: Plan
    run_dir: Path
    rt: Runtime
    sources: Sources
    logger: RunLogger
    lpips: object = None  # trainer.metrics.Lpips: validation LPIPS when its AlexNet weights are on disk


@dataclass
class JobResult:
    history: dict[str, list[float]]
    best_epoch: int
    stopped: str


def _val_loaders(ctx: JobContext, phase: PhaseSpec) -> dict:
    """Every validation material once per domain at the phase resolution. Each rank evaluates the
    same set, so every rank takes the same early-stop and gate decisions."""
    from trainer.data.mixing import build_eval_loader
    return {domain: build_eval_loader(dataset, domain, resolution=ctx.cfg.resolution(phase.data.resolution),
                                      batch_size=_batch_size(ctx.cfg, phase), seed=ctx.plan.seed,
                                      num_workers=ctx.cfg.num_workers)
            for domain, dataset in ctx.sources.val.items()}


def _batch_size(cfg: RunConfig, phase: PhaseSpec) -> int:
    return cfg.batch_size or phase.batch_size


def validate(ctx: JobContext, models: nn.ModuleDict, loaders: dict, phase: PhaseSpec) -> dict[str, float]:
    """Validation loss per domain plus `monitor`, the phase-mix-weighted loss early stop watches."""
    from trainer.objective import evaluate
    was_training = {name: m.training for name, m in models.items()}
    models.eval()
    metrics = {}
    with ctx.rt.autocast():
        for domain, loader in loaders.items():
            result = evaluate(models, loader, ctx.rt.device, max_batches=ctx.cfg.val_batches, lpips=ctx.lpips)
            metrics[domain] = result["val_loss"]
            metrics.update({f"{domain}/{k}": v for k, v in result.items() if k != "val_loss"})
    for name, model in models.items():
        model.train(was_training[name])
    weights = {d: share for d, share in phase.data.mix.items() if d in loaders}
    total = sum(weights.values()) or 1.0
    metrics["monitor"] = sum(metrics[d] * w for d, w in weights.items()) / total
    return metrics


# A job runs as (timm's train.py layout): setup_job builds the models, optimiser, scheduler and
# validation loaders once; then per epoch start_epoch opens the epoch's batches, train_one_epoch
# trains on them and end_epoch validates, checkpoints and logs; train_job stops early on a plateau.

@dataclass
class JobSetup:
    """What setup_job builds once for a job and every epoch of it uses."""
    phase: PhaseSpec
    spec: JobSpec
    folder: Path                      # RUNDIR/<phase>/<job>
    models: nn.ModuleDict
    trainable: dict[str, list[str]]
    lora_rank: int
    loss_module: nn.Module            # LossModule, wrapped in DDP when distributed
    optimizer: torch.optim.Optimizer
    scheduler: object
    batch_size: int
    grad_accum: int
    min_epochs: int
    max_epochs: int
    batches_in_epoch: int             # micro-batches; optimiser steps = ceil(batches / grad_accum)
    val_loaders: dict
    tags: dict[str, str]
    hparams: dict

    @property
    def label(self) -> str:
        return f"{self.phase.label}/{self.spec.name}"


@dataclass
class JobProgress:
    """Where a job stands. Saved in every checkpoint's meta, read back on resume."""
    history: dict[str, list[float]]   # monitor and per-domain val loss; entry 0 = the starting weights
    epoch: int = 0                    # epochs finished
    batches_done: int = 0             # batches of epoch + 1 already trained on (mid-epoch checkpoints)
    global_step: int = 0              # optimiser steps
    best_epoch: int = 0
    rng: dict | None = None           # RNG state to restore when resuming mid-epoch


@dataclass
class EpochResult:
    loss: float      # mean training loss over the micro-batches this session trained in the epoch
    seconds: float


def train_job(ctx: JobContext, phase: PhaseSpec, job: JobSpec, init: Checkpoint | None) -> JobResult:
    """Train one job to its end (max epochs or early stop) and return its validation histories."""
    setup, progress, resumed = setup_job(ctx, phase, job, init)
    ctx.logger.start_job(f"{phase.name}/{job.name}", setup.tags)
    if not resumed:
        save_job(ctx, setup, progress, ("start", "last", "best"))
    stopped = "epochs"
    while progress.epoch < setup.max_epochs:
        # Checked before each epoch, not after end_epoch only: a resumed job may already be on a plateau.
        if should_stop_early(progress.history["monitor"], ctx.plan.early_stop, setup.min_epochs):
            stopped = "plateau"
            break
        batches = start_epoch(ctx, setup, progress)
        result = train_one_epoch(ctx, setup, progress, batches)
        end_epoch(ctx, setup, progress, result)
    ctx.logger.end_job(setup.hparams, {f"best_{k}": min(v) for k, v in progress.history.items()})
    return JobResult(progress.history, progress.best_epoch, stopped)


def new_models(models_config: dict, lora_rank: int, seed: int) -> nn.ModuleDict:
    """The models as the plan starts them (phase A0): new parameters drawn from the plan's seed."""
    torch.manual_seed(seed)
    return build_models(models_config, lora_rank)


def setup_job(ctx: JobContext, phase: PhaseSpec, job: JobSpec,
              init: Checkpoint | None) -> tuple[JobSetup, JobProgress, bool]:
    """Build a job's models (from its own last checkpoint, else `init`, else new from the plan's seed),
    trainable parts, optimiser, scheduler and validation loaders. Returns (setup, progress, resumed):
    progress is the checkpoint's when resuming, else starts at epoch 0 with the starting weights'
    validation as history entry 0."""
    from trainer.models import add_lora, set_trainable
    cfg, plan, rt = ctx.cfg, ctx.plan, ctx.rt
    folder = ctx.run_dir / phase.name / job.name
    resume = find_checkpoint(folder, "last")
    start = resume or init
    lora_rank = start.meta.get("lora_rank", 0) if start else 0
    models = new_models(cfg.models, lora_rank, plan.seed)
    if start:
        models.load_state_dict(start.weights())
    if phase.add_lora and not lora_rank:
        add_lora(models, rank=plan.lora_rank)
        lora_rank = plan.lora_rank
    trainable = {m: list(parts) for m, parts in job.trainable.items()}
    counts = set_trainable(models, trainable)
    models.to(rt.device)
    if rt.cuda:
        models.to(memory_format=torch.channels_last)
    if cfg.compile:
        for name in ("albedo", "maps"):
            models[name].compile()
    params = [p for p in models.parameters() if p.requires_grad]
    loss_module = LossModule(models, job.active_models)
    if rt.distributed:
        # Rebuilt per job: requires_grad changed since the last wrapper was made.
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[rt.device.index] if rt.cuda else None, find_unused_parameters=True)

    min_epochs, max_epochs = cfg.epochs(job.epochs)
    batch_size = _batch_size(cfg, phase)
    grad_accum = cfg.grad_accum or phase.grad_accum
    opt_spec, sched_spec = scale_lr(job.optimizer, job.scheduler, cfg.lr_scale)
    batches_in_epoch = len(train_loader(ctx, phase, batch_size, epoch=1))
    if cfg.max_steps:
        batches_in_epoch = min(batches_in_epoch, cfg.max_steps * grad_accum)
    steps_per_epoch = max(1, math.ceil(batches_in_epoch / grad_accum))
    optimizer = create_optimizer(params, opt_spec, use_alternative=cfg.lion, fused=rt.cuda)
    scheduler = create_scheduler(optimizer, sched_spec, epochs=max_epochs, steps_per_epoch=steps_per_epoch,
                                 epochs_scale=cfg.epochs_scale)
    val_loaders = _val_loaders(ctx, phase)
    # The plan's tag names the job's head in D ("model=roughness_head"); whole-phase jobs train "all".
    tag_model = job.name if len(phase.jobs) > 1 else "all"
    tags = job_tags(phase.label, cfg.resolution(phase.data.resolution), tag_model, phase.data.mix, phase.data.augment)
    hparams = dict(tags, lr=opt_spec.lr, optimizer=(job.optimizer.alternative if cfg.lion and
                   job.optimizer.alternative else job.optimizer.name), scheduler=job.scheduler.name,
                   freeze=tag_string({m: "+".join(p) for m, p in job.trainable.items()}), batch=batch_size,
                   grad_accum=grad_accum, lora_rank=lora_rank, trainable_params=sum(counts.values()))
    setup = JobSetup(phase, job, folder, models, trainable, lora_rank, loss_module, optimizer, scheduler, batch_size,
                     grad_accum, min_epochs, max_epochs, batches_in_epoch, val_loaders, tags, hparams)
    if resume:
        meta, state = resume.meta, resume.state()
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = JobProgress(meta["history"], meta["epoch"], meta["batches_done"], meta["global_step"],
                               meta["best_epoch"], rng=state["rng"])
        log.info("resuming %s/%s at epoch %d, batch %d", phase.name, job.name, progress.epoch + 1,
                 progress.batches_done)
    else:
        start_metrics = validate(ctx, models, val_loaders, phase)
        progress = JobProgress({k: [v] for k, v in start_metrics.items() if k in ("monitor", *DOMAINS)})
    return setup, progress, resume is not None


def train_loader(ctx: JobContext, phase: PhaseSpec, batch_size: int, epoch: int, start_step: int = 0):
    """The training batches of `epoch` (1-based) for this rank, from batch `start_step` on."""
    from trainer.data.mixing import build_loader
    cfg = ctx.cfg
    data_cfg = data_config(phase, cfg, crop_size_for(ctx.plan, cfg, phase, epoch), phase.samples_per_epoch)
    return build_loader(data_cfg, ctx.sources.train, batch_size=batch_size, epoch=epoch, seed=ctx.plan.seed,
                        rank=ctx.rt.rank, world_size=ctx.rt.world_size, num_workers=cfg.num_workers,
                        start_step=start_step)


def start_epoch(ctx: JobContext, setup: JobSetup, progress: JobProgress):
    """The batches of epoch progress.epoch + 1, after those already trained on (a mid-epoch resume),
    with the RNG seeded for the epoch (or restored from the checkpoint) and the models in train mode."""
    from trainer.models import apply_train_mode
    epoch_number = progress.epoch + 1
    batches = iter(train_loader(ctx, setup.phase, setup.batch_size, epoch_number, start_step=progress.batches_done))
    torch.manual_seed(_seed_for(ctx.plan.seed, setup.phase.name, setup.spec.name, epoch_number))
    apply_train_mode(setup.models, setup.trainable)
    if progress.rng is not None and progress.batches_done:
        set_rng_state(progress.rng)
    progress.rng = None
    return batches


def read_loss(total: torch.Tensor) -> float:
    """The summed loss on the host, read every `log_every` steps instead of every micro-batch: the
    loop's only host sync (the losses and the objective's control flow ask the device nothing)."""
    return total.item()


def train_one_epoch(ctx: JobContext, setup: JobSetup, progress: JobProgress, batches) -> EpochResult:
    """Train on `batches` up to the end of the epoch: forward, backward, and an optimiser step every
    grad_accum micro-batches (and on the epoch's last one), the gradients' global norm clipped to
    cfg.grad_clip first when it is set; under DDP the gradient all-reduce runs only on the stepping
    micro-batch (no_sync on the others). Updates `progress` as it goes.

    The loss is summed on the device and read on the host (read_loss) only every cfg.log_every
    optimiser steps, before a mid-epoch checkpoint and on the epoch's last step: the progress bar and
    train/loss show the running mean then. The divergence check (TrainingDiverged) runs on those reads,
    so a NaN or infinite loss is caught within log_every steps, always before a checkpoint is written:
    the last checkpoint holds finite weights."""
    cfg, rt = ctx.cfg, ctx.rt
    log_every = max(1, cfg.log_every)
    total_batches = setup.batches_in_epoch
    bar = ctx.logger.progress(total_batches, f"{setup.label} epoch {progress.epoch + 1}/{setup.max_epochs}")
    bar.update(progress.batches_done)
    running = torch.zeros((), device=rt.device)  # the losses' sum, kept on the device
    seen, mean, started = 0, 0.0, time.time()
    for index in range(progress.batches_done, total_batches):
        batch = _to_device(next(batches), rt)
        last_batch = index + 1 == total_batches
        last_of_step = (index + 1) % setup.grad_accum == 0 or last_batch
        sync = contextlib.nullcontext() if last_of_step or not rt.distributed else setup.loss_module.no_sync()
        with sync:
            with rt.autocast():
                losses = setup.loss_module(batch)
            (losses["total"] / setup.grad_accum).backward()
        running += losses["total"].detach().float()
        seen += 1
        progress.batches_done = index + 1
        bar.update(1)
        if not last_of_step:
            continue
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for group in setup.optimizer.param_groups for p in group["params"]],
                                           cfg.grad_clip)
        setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)
        if setup.spec.scheduler.per_batch:
            setup.scheduler.step()
        progress.global_step += 1
        checkpoint = bool(cfg.checkpoint_every) and progress.global_step % cfg.checkpoint_every == 0 and not last_batch
        if progress.global_step % log_every == 0 or last_batch or checkpoint:
            mean = read_loss(running) / seen
            if not math.isfinite(mean):
                raise TrainingDiverged(
                    f"The loss became {mean} in {setup.label} at epoch {progress.epoch + 1}, by step "
                    f"{progress.global_step} (it is read every {log_every} steps); lower the learning rate "
                    f"(--lr-scale) or check the data, then resume (--resume) from the last checkpoint.")
            ctx.logger.scalars({"train/loss": mean, "train/lr": setup.optimizer.param_groups[0]["lr"]},
                               progress.global_step)
            bar.set_postfix(loss=f"{mean:.4f}")
        if checkpoint:
            save_job(ctx, setup, progress, ("last",))
    bar.close()
    if not setup.spec.scheduler.per_batch:
        setup.scheduler.step()
    return EpochResult(mean, time.time() - started)


def end_epoch(ctx: JobContext, setup: JobSetup, progress: JobProgress, result: EpochResult) -> None:
    """After an epoch: validate, extend the history, save "last" (and "best" when the monitored loss
    improved on every earlier entry), and log the epoch."""
    progress.epoch, progress.batches_done = progress.epoch + 1, 0
    metrics = validate(ctx, setup.models, setup.val_loaders, setup.phase)
    history = progress.history
    for key in history:
        history[key].append(metrics[key])
    improved = metrics["monitor"] < min(history["monitor"][:-1])
    if improved:
        progress.best_epoch = progress.epoch
    save_job(ctx, setup, progress, ("last", "best") if improved else ("last",))
    ctx.logger.scalars({f"val/{k}": v for k, v in metrics.items()} |
                       {"train/epoch_loss": result.loss, "time/epoch_s": result.seconds}, progress.global_step)
    _log_predictions(ctx, setup.models, setup.val_loaders, progress.global_step)
    log.info("%s epoch %d/%d: train %.4f, %s", setup.label, progress.epoch, setup.max_epochs, result.loss,
             ", ".join(f"{k}-val {metrics[k]:.4f}" for k in history))


def save_job(ctx: JobContext, setup: JobSetup, progress: JobProgress, pointers: tuple[str, ...]) -> None:
    """Checkpoint the job (rank 0 only): weights, optimiser, scheduler, RNG and `progress`."""
    if not ctx.rt.is_main:
        return
    cfg = ctx.cfg
    meta = {"run_config": cfg.to_dict(), "models": cfg.models, "lora_rank": setup.lora_rank,
            "phase": setup.phase.name, "job": setup.spec.name, "tags": setup.tags, "trainable": setup.trainable,
            "epoch": progress.epoch, "batches_done": progress.batches_done, "global_step": progress.global_step,
            "best_epoch": progress.best_epoch, "history": progress.history, "world_size": ctx.rt.world_size}
    state = {"optimizer": setup.optimizer.state_dict(), "scheduler": setup.scheduler.state_dict(), "rng": rng_state()}
    save_checkpoint(setup.folder, pointers, model_state(setup.models), meta, state)


def _log_predictions(ctx: JobContext, models: nn.ModuleDict, loaders: dict, step: int) -> None:
    """Prediction-vs-truth grids of the first validation batch of each domain."""
    if not ctx.rt.is_main or ctx.logger.writer is None:
        return
    from trainer.logs import image_grid
    from trainer.objective import predict
    models.eval()
    with torch.no_grad():
        for domain, loader in loaders.items():
            batch = _to_device(next(iter(loader)), ctx.rt)
            pred = predict(models, batch)
            rows = [batch["diffuse"], batch["albedo"], pred["albedo"]]
            for i in range(batch["maps"].shape[1]):
                rows += [batch["maps"][:, i:i + 1], pred["maps"][:, i:i + 1]]
            ctx.logger.image(f"predictions/{domain}", image_grid(rows), step)


# ------------------------------------------------------------------------------------------ plan

class RunState:
    """RUNDIR/run_state.json: which jobs are done, their histories, and the gate results."""

    def __init__(self, run_dir: Path, rt: Runtime):
        self.path = run_dir / "run_state.json"
        self.rt = rt
        self.data = read_json(self.path) if self.path.is_file() else {"jobs": {}, "gates": {}}

    def job(self, key: str) -> dict | None:
        return self.data["jobs"].get(key)

    def update(self, section: str, key: str, value: dict) -> None:
        self.data[section][key] = value
        if self.rt.is_main:
            write_json_atomic(self.path, self.data)


def merge_jobs(jobs: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
    """Merge independent jobs: jobs maps name -> (start weights, best weights). The result is the
    first job's start with every tensor a job changed taken from that job. Jobs of one phase must
    train disjoint parts; two jobs changing the same tensor is a plan error."""
    merged, owner = dict(next(iter(jobs.values()))[0]), {}
    for job_name, (start, best) in jobs.items():
        for key, value in best.items():
            if torch.equal(value, start[key]):
                continue
            if key in owner:
                raise PlanError(f"Jobs {owner[key]} and {job_name} both train {key}; give the jobs of one phase "
                                f"disjoint trainable parts.")
            owner[key] = job_name
            merged[key] = value
    return merged, owner


def phase_result(run_dir: Path, phase: PhaseSpec) -> Checkpoint:
    """The checkpoint the next phase starts from: the job's best, or for a multi-job phase the merge
    of what each job changed (saved in RUNDIR/<phase>/merged)."""
    job_dirs = {job.name: run_dir / phase.name / job.name for job in phase.jobs}
    if len(job_dirs) == 1:
        return find_checkpoint(next(iter(job_dirs.values())), "best")
    merged_dir = run_dir / phase.name / "merged"
    existing = find_checkpoint(merged_dir, "best")
    if existing:
        return existing
    bests = {name: find_checkpoint(folder, "best") for name, folder in job_dirs.items()}
    weights, owner = merge_jobs({name: (find_checkpoint(job_dirs[name], "start").weights(), best.weights())
                                 for name, best in bests.items()})
    first = next(iter(bests.values())).meta
    meta = {k: first[k] for k in ("run_config", "models", "lora_rank", "world_size")}
    meta.update(phase=phase.name, job="merged", global_step=0,
                sources={name: str(ckpt.path.relative_to(run_dir)) for name, ckpt in bests.items()},
                changed_by={name: sum(1 for o in owner.values() if o == name) for name in bests})
    return save_checkpoint(merged_dir, ("best",), weights, meta, {})


def _gate(ctx: JobContext, state: RunState, phase: PhaseSpec, force: bool) -> None:
    results = []
    for job in phase.jobs:
        history = state.job(f"{phase.name}/{job.name}")["history"]
        results.append(check_gate(phase.label, {d: history[d] for d in DOMAINS if d in history},
                                  ctx.plan.gate, phase.gate))
    passed = all(r.passed for r in results)
    record = {"passed": passed, "forced": force and not passed, "jobs": [r.to_dict() for r in results]}
    state.update("gates", phase.name, record)
    if ctx.rt.is_main:
        write_json_atomic(ctx.run_dir / phase.name / "gate.json", record)
    for r in results:
        (log.info if r.passed else log.warning)(r.message())
    if not passed and not force:
        raise GateFailed(f"{results[0].message() if len(results) == 1 else 'The gate failed'}; the run stopped "
                         f"before the next phase (details in {ctx.run_dir / phase.name / 'gate.json'}): "
                         f"fix the data or plan and rerun phase {phase.name}, or pass --resume --force to advance anyway.")


def run_plan(cfg: RunConfig, *, resume: bool = False, force: bool = False, only_phase: str | None = None,
             export: bool = True) -> Path | None:
    """Run the plan into cfg.out, or resume it, or (only_phase) run one phase of an existing run again.
    Returns the export folder once the whole plan has finished (None otherwise)."""
    rt = setup_runtime(cfg.device)
    run_dir = Path(cfg.out)
    config_file = run_dir / "run_config.json"
    if config_file.is_file():
        if not (resume or only_phase):
            raise RunFolderError(f"{run_dir} already holds a run; pass --resume to continue it, --phase NAME to "
                                 f"run one phase again, or choose another --out.")
        saved = RunConfig.from_dict(read_json(config_file))
        saved.device, saved.out = cfg.device, cfg.out
        cfg = saved  # a run keeps the configuration it started with
    elif resume:
        raise RunFolderError(f"There is no run to resume in {run_dir}; start one without --resume.")
    initial = resolve_checkpoint(cfg.init_from) if cfg.init_from else None
    if initial is not None:
        cfg.models = initial.meta["models"]  # continuing from weights fixes the architecture
    plan = parse_plan(cfg.plan_data)
    if cfg.reset:
        if initial is None:
            raise RunFolderError("--reset starts parts of --init-from's weights anew; give --init-from too.")
        fresh = new_models(cfg.models, initial.meta.get("lora_rank", 0), plan.seed)
        initial = with_new_parts(initial, fresh, cfg.reset)
    if not cfg.models:
        from dataclasses import asdict
        from trainer.models import ModelsConfig
        cfg.models = asdict(getattr(ModelsConfig, cfg.models_preset)())
    if only_phase:
        plan.phase(only_phase)  # a clear error for an unknown name
    if cfg.num_workers is None:
        # On a GPU the per-sample decoding, resizing and augmenting is the bottleneck: feed it from
        # worker processes. On the CPU the workers would only compete with the training threads.
        cfg.num_workers = min(8, (os.cpu_count() or 2) // rt.world_size - 1) if rt.cuda else 0
    if rt.distributed:
        torch.distributed.barrier()  # every rank has looked at the folder before rank 0 writes to it
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_file, cfg.to_dict())
        _keep_init_provenance(cfg, run_dir)
    logger = RunLogger(run_dir, enabled=rt.is_main, use_wandb=cfg.wandb, run_config=cfg.to_dict())
    from trainer.metrics import Lpips
    lpips = Lpips(device=rt.device)
    if not lpips.available:
        log.info("%s; validation reports the other metrics.", lpips.reason)
    ctx = JobContext(cfg, plan, run_dir, rt, open_sources(cfg, plan, run_dir, rt), logger, lpips)
    state = RunState(run_dir, rt)
    state.data.setdefault("sessions", []).append(
        {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hardware": describe_hardware(rt)})
    previous: Checkpoint | None = None
    reached = only_phase is None
    for index, phase in enumerate(plan.phases):
        selected = only_phase is None or only_phase in (phase.name, phase.label)
        reached = reached or selected
        init = previous if phase.init == "previous" else initial
        if selected:
            if only_phase and not resume:
                _clear_phase(ctx, state, phase)
            for job in phase.jobs:
                key = f"{phase.name}/{job.name}"
                if (state.job(key) or {}).get("status") == "done":
                    continue
                result = train_job(ctx, phase, job, init)
                state.update("jobs", key, {"status": "done", "dir": key, "history": result.history,
                                           "best_epoch": result.best_epoch, "stopped": result.stopped})
                log.info("%s finished (%s); best epoch %d", key, result.stopped, result.best_epoch)
        if not all((state.job(f"{phase.name}/{j.name}") or {}).get("status") == "done" for j in phase.jobs):
            if not reached:
                raise RunFolderError(f"Phase {phase.name} has not finished in {run_dir}; run it (or --resume) "
                                     f"before phase {only_phase}.")
            return None
        previous = _phase_result_everywhere(ctx, phase)
        if phase.gate and index + 1 < len(plan.phases):
            _gate(ctx, state, phase, force)
    final = _finish(ctx, state, previous)
    return _export(ctx, final) if export and rt.is_main else None


def _clear_phase(ctx: JobContext, state: RunState, phase: PhaseSpec) -> None:
    """Forget a phase's earlier results so that --phase runs it again from its starting weights."""
    import shutil
    if ctx.rt.is_main:
        shutil.rmtree(ctx.run_dir / phase.name, ignore_errors=True)
    for job in phase.jobs:
        state.data["jobs"].pop(f"{phase.name}/{job.name}", None)
    if ctx.rt.distributed:
        torch.distributed.barrier()


def _phase_result_everywhere(ctx: JobContext, phase: PhaseSpec) -> Checkpoint:
    """phase_result computed (and written) by rank 0 and shared with the other ranks."""
    if not ctx.rt.distributed:
        return phase_result(ctx.run_dir, phase)
    torch.distributed.barrier()  # rank 0 has written the job checkpoints
    holder = [str(phase_result(ctx.run_dir, phase).path) if ctx.rt.is_main else None]
    torch.distributed.broadcast_object_list(holder)
    return Checkpoint(Path(holder[0]))


def _finish(ctx: JobContext, state: RunState, last: Checkpoint) -> Checkpoint:
    """RUNDIR/final: the plan's end result (checkpoint.load_models(RUNDIR) returns it)."""
    final_dir = ctx.run_dir / "final"
    if ctx.rt.is_main:
        write_atomically(final_dir / WEIGHTS, (last.path / WEIGHTS).read_bytes())
        meta = dict(last.meta, phase="final", job="final", source=str(last.path.relative_to(ctx.run_dir)),
                    histories={k: v["history"] for k, v in state.data["jobs"].items()})
        write_json_atomic(final_dir / "meta.json", meta)
    return Checkpoint(final_dir)


def describe_hardware(rt: Runtime) -> dict:
    """What a run session trains on (recorded in run_state.json, copied into the manifest)."""
    import platform
    info = {"machine": platform.machine(), "system": platform.system(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(rt.device), "world_size": rt.world_size,
            "torch": torch.__version__}
    if rt.cuda:
        info["gpu"] = torch.cuda.get_device_name(rt.device)
    return info


def _run_folder_of(path: Path) -> Path | None:
    """The run folder that holds `path` (a run, phase, job or checkpoint folder), if any."""
    for folder in (path, *path.parents):
        if (folder / "run_config.json").is_file() and (folder / "run_state.json").is_file():
            return folder
    return None


INIT_PROVENANCE = "init_from_provenance.json"


def _keep_init_provenance(cfg: RunConfig, run_dir: Path) -> None:
    """A run that starts from an exported models folder keeps that folder's provenance: the folder
    (models/ itself, often) is overwritten when this run's models are exported."""
    manifest = Path(cfg.init_from) / "manifest.json" if cfg.init_from else None
    if manifest is not None and manifest.is_file() and not (run_dir / INIT_PROVENANCE).is_file():
        write_json_atomic(run_dir / INIT_PROVENANCE, read_json(manifest).get("provenance", {}))


def run_provenance(run_dir: Path) -> dict:
    """How a finished run made its models, for the manifest: plan, config, data sources (with the
    library's licences), every job's epochs, optimiser steps and wall time, the gates, and the
    hardware of each session."""
    cfg = RunConfig.from_dict(read_json(run_dir / "run_config.json"))
    state = read_json(run_dir / "run_state.json")
    jobs = {}
    for key, job in state["jobs"].items():
        last = find_checkpoint(run_dir / key, "last")
        start_pointer = run_dir / key / "start.json"
        seconds = (last.path / "meta.json").stat().st_mtime - start_pointer.stat().st_mtime \
            if last and start_pointer.is_file() else None
        jobs[key] = {"epochs": max((len(h) - 1 for h in job["history"].values()), default=0),  # [0]: before training
                     "steps": last.meta.get("global_step") if last else None,
                     "seconds": round(seconds) if seconds is not None else None,
                     "best_epoch": job["best_epoch"], "stopped": job["stopped"],
                     "best_val": {d: min(h) for d, h in job["history"].items() if h}}
    data = {"matsynth": cfg.matsynth, "skyrim": cfg.skyrim, "library": cfg.library, "synthetic": cfg.synthetic,
            "init_from": cfg.init_from}
    if cfg.library:
        from trainer.data.library import training_sources
        data["library_training_split"] = training_sources(cfg.library)
    earlier = _run_folder_of(Path(cfg.init_from)) if cfg.init_from else None
    if earlier is not None and earlier.resolve() != run_dir.resolve():
        data["init_from_run"] = run_provenance(earlier)  # the weights' own history, recursively
    elif (run_dir / INIT_PROVENANCE).is_file():  # started from an exported set: its recorded history
        data["init_from_run"] = read_json(run_dir / INIT_PROVENANCE)
    return {"plan": cfg.plan_data.get("name", cfg.plan), "run": run_dir.name, "run_config": cfg.to_dict(),
            "data": data, "jobs": jobs, "gates": {k: v["passed"] for k, v in state["gates"].items()},
            "total_steps": sum(j["steps"] or 0 for j in jobs.values()),
            "total_seconds": sum(j["seconds"] or 0 for j in jobs.values()),
            "sessions": state.get("sessions", [])}


def _export(ctx: JobContext, final: Checkpoint) -> Path:
    from trainer.checkpoint import load_models
    from trainer.export import export_models
    models, _ = load_models(final.path)
    out = ctx.run_dir / "export"
    export_models(models, out, run_provenance(ctx.run_dir))
    write_trainable(final, out)
    if ctx.cfg.export_to:
        import shutil
        shutil.copytree(out, ctx.cfg.export_to, dirs_exist_ok=True)
        log.info("exported models copied to %s", ctx.cfg.export_to)
    log.info("exported the final models to %s", out)
    return out
