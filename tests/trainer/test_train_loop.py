"""train_one_epoch on a toy loss module: how often the loss is read on the host (log_every), gradient
accumulation with DDP's no_sync, and the divergence check against mid-epoch checkpoints; and on the
real loss module, that a few dozen steps on one fixed batch fit it (gradients reach every model); the
crop curriculum's size per phase and epoch."""
import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.trainer.helpers import SMALL_PLAN, small_plan
from trainer import train
from trainer.config import RunConfig
from trainer.logs import RunLogger
from trainer.models import ModelsConfig, create_models, set_trainable
from trainer.objective import MODEL_NAMES, compute_losses
from trainer.models.segformer import SEGFORMER_MIN_SIDE
from trainer.plan import load_plan
from trainer.train import JobContext, JobProgress, JobSetup, LossModule, Runtime, TrainingDiverged, train_one_epoch


class ScriptedLoss(nn.Module):
    """Loss module whose micro-batch i has loss values[i] and gradient 1 on its one weight; it records
    which micro-batches ran inside no_sync (DDP's skip of the gradient all-reduce)."""

    def __init__(self, values):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.values = list(values)
        self.calls, self.unsynced, self._in_no_sync = 0, [], False

    def forward(self, batch):
        value = self.values[self.calls]
        if self._in_no_sync:
            self.unsynced.append(self.calls)
        self.calls += 1
        return {"total": self.weight + (value - self.weight.detach())}

    @contextlib.contextmanager
    def no_sync(self):
        self._in_no_sync = True
        try:
            yield
        finally:
            self._in_no_sync = False


class Recorder(RunLogger):
    def __init__(self, folder):
        super().__init__(folder, enabled=False)
        self.logged = []

    def scalars(self, values, step):
        if "train/loss" in values:
            self.logged.append((step, values["train/loss"]))


def _job(tmp_path, module, optimizer, batches_in_epoch, *, models=None, grad_accum=1, world_size=1, **cfg):
    """A JobContext and JobSetup around `module` for one epoch of `batches_in_epoch` micro-batches."""
    spec = SimpleNamespace(name="toy", scheduler=SimpleNamespace(per_batch=False))
    setup = JobSetup(phase=SimpleNamespace(label="T", name="T"), spec=spec, folder=tmp_path,
                     models=nn.ModuleDict() if models is None else models,
                     trainable={}, lora_rank=0, loss_module=module, optimizer=optimizer,
                     scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0), batch_size=1,
                     grad_accum=grad_accum, min_epochs=1, max_epochs=1, batches_in_epoch=batches_in_epoch,
                     val_loaders={}, tags={}, hparams={})
    logger = Recorder(tmp_path)
    ctx = JobContext(RunConfig(**cfg), plan=None, run_dir=tmp_path, rt=Runtime(torch.device("cpu"), 0, world_size),
                     sources=None, logger=logger)
    return ctx, setup, logger


def _epoch(tmp_path, values, *, grad_accum=1, world_size=1, **cfg):
    module = ScriptedLoss(values)
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(module.calls))
    ctx, setup, logger = _job(tmp_path, module, optimizer, len(values), grad_accum=grad_accum,
                              world_size=world_size, **cfg)
    progress = JobProgress({"monitor": [1.0]})
    batches = iter([{"x": torch.zeros(1)}] * len(values))
    return ctx, setup, progress, batches, module, steps, logger


@pytest.mark.parametrize("log_every, read_at", [(3, [3, 6, 7]), (1, [1, 2, 3, 4, 5, 6, 7]), (10, [7])])
def test_log_every_sets_how_often_the_loss_is_read_on_the_host(tmp_path, monkeypatch, log_every, read_at):
    reads = []
    monkeypatch.setattr(train, "read_loss", lambda total: reads.append(1) or total.item())
    ctx, setup, progress, batches, *_, logger = _epoch(tmp_path, [1, 2, 3, 4, 5, 6, 7], log_every=log_every)
    result = train_one_epoch(ctx, setup, progress, batches)
    assert len(reads) == len(read_at)  # every log step and the epoch's last one, nothing else
    # The logged value is the running mean of the micro-batch losses so far.
    assert logger.logged == [(step, (step + 1) / 2) for step in read_at]
    assert result.loss == 4.0 and progress.global_step == 7


def test_grad_accum_steps_every_n_batches_and_all_reduces_only_on_the_stepping_one(tmp_path):
    ctx, setup, progress, batches, module, steps, _ = _epoch(tmp_path, [1, 1, 1, 1, 1], grad_accum=2, world_size=2)
    train_one_epoch(ctx, setup, progress, batches)
    assert steps == [2, 4, 5]  # after micro-batches 2 and 4, and the epoch's last (a short step)
    assert progress.global_step == 3 and progress.batches_done == 5
    assert module.unsynced == [0, 2]  # no all-reduce on the micro-batches that do not step
    # Each micro-batch's gradient is divided by grad_accum: SGD(lr=1) moved by 1/2 + 1/2, 1/2 + 1/2, 1/2.
    assert module.weight.item() == -2.5


@pytest.mark.parametrize("grad_clip, moved", [(0.0, -3.0), (0.25, -0.75)])
def test_grad_clip_bounds_the_gradient_norm_of_each_step(tmp_path, grad_clip, moved):
    ctx, setup, progress, batches, module, steps, _ = _epoch(tmp_path, [1, 1, 1], grad_clip=grad_clip)
    train_one_epoch(ctx, setup, progress, batches)
    assert steps == [1, 2, 3]
    # Each step's gradient is 1; SGD(lr=1) moves the weight by it, or by the clipped norm.
    assert module.weight.item() == pytest.approx(moved)


def test_a_nan_loss_stops_the_epoch_before_the_next_checkpoint(tmp_path, monkeypatch):
    saves = []
    monkeypatch.setattr(train, "save_job", lambda ctx, setup, progress, pointers: saves.append(progress.global_step))
    values = [1, 2, 3, 4, math.nan, 6, 7, 8]
    ctx, setup, progress, batches, *_ = _epoch(tmp_path, values, log_every=3, checkpoint_every=4)
    with pytest.raises(TrainingDiverged, match="by step 6"):  # read at steps 3, 4 (checkpoint) and 6
        train_one_epoch(ctx, setup, progress, batches)
    assert saves == [4]  # the checkpoint before the NaN; none after it


def _fixed_batch(n=2, size=32):
    """One small batch whose targets the tiny models can fit: the albedo a tint of the diffuse, the
    maps constant but for a metal half, which is also the metallic mask; fixed random labels."""
    g = torch.Generator().manual_seed(1)
    normal = torch.randn(n, 3, size, size, generator=g)
    normal[:, 2] = normal[:, 2].abs() + 0.5
    diffuse = torch.rand(n, 3, size, size, generator=g)
    maps = torch.tensor([0.8, 0.0, 0.9, 0.5]).view(1, 4, 1, 1).repeat(n, 1, size, size)
    maps[:, 1, :, : size // 2] = 1.0
    return {
        "diffuse": diffuse, "normal": normal / normal.norm(dim=1, keepdim=True),
        "specular": torch.cat([torch.rand(n, 1, size, size, generator=g), torch.ones(n, 1, size, size)], dim=1),
        "height_prior": torch.rand(n, 1, size, size, generator=g), "albedo": diffuse * 0.6, "maps": maps,
        "metallic_mask": maps[:, 1:2].clone(), "labels": (torch.rand(n, 13, generator=g) > 0.7).float(),
        "valid": torch.ones(n, 7), "domain": torch.zeros(n, dtype=torch.long), "photometric": torch.zeros(n),
    }


def test_a_few_dozen_real_training_steps_on_one_fixed_batch_drive_every_models_loss_down(tmp_path):
    """The real step (LossModule over compute_losses, train_one_epoch, Adam) on one batch: the loss
    falls below half its start, each of the four models' losses falls, and every trainable parameter
    moved, so gradients reach every head (a detached output or a head left out of the graph fails)."""
    models = create_models(ModelsConfig.tiny(), seed=0)
    set_trainable(models, {name: ["all"] for name in MODEL_NAMES})
    start = {name: p.detach().clone() for name, p in models.named_parameters() if p.requires_grad}
    batch = _fixed_batch()

    def losses():
        torch.manual_seed(5)  # the render loss draws its light/view directions from the global RNG
        with torch.no_grad():
            return {k: v.item() for k, v in compute_losses(models, batch, set(MODEL_NAMES)).items()}

    models.train()
    before = losses()
    optimizer = torch.optim.Adam([p for p in models.parameters() if p.requires_grad], lr=1e-2)
    steps = 40
    ctx, setup, _ = _job(tmp_path, LossModule(models, set(MODEL_NAMES)), optimizer, steps, models=models)
    progress = JobProgress({"monitor": [1.0]})
    result = train_one_epoch(ctx, setup, progress, iter([batch] * steps))
    after = losses()

    assert progress.global_step == steps and math.isfinite(result.loss)
    assert after["total"] < 0.5 * before["total"], (before, after)
    for name in MODEL_NAMES:
        assert after[name] < 0.75 * before[name], (name, before[name], after[name])
    unmoved = [name for name, p in models.named_parameters() if p.requires_grad and torch.equal(p, start[name])]
    assert unmoved == []


def test_the_crop_curriculum_grows_from_256_to_768_px_across_its_phases_epoch_by_epoch(tmp_path):
    path = tmp_path / "curriculum.toml"
    path.write_text(SMALL_PLAN.format(matsynth_max_rise=0.1).replace("resolution = 64", "resolution = 768")
                    + '[crop_curriculum]\nphases = ["P1", "P2"]\n', encoding="utf-8")
    plan = load_plan(path)
    cfg = RunConfig()
    p1, p2 = plan.phase("P1"), plan.phase("P2")  # 3 epochs, then 2: five steps of a quarter each
    sizes = [train.crop_size_for(plan, cfg, p1, epoch) for epoch in (1, 2, 3)] + \
            [train.crop_size_for(plan, cfg, p2, epoch) for epoch in (1, 2)]
    assert sizes[0] == 256 and sizes[2] == 512 and sizes[-1] == 768
    assert sizes == sorted(set(sizes)) and all(size % 32 == 0 for size in sizes)
    # At a small res_scale the crops shrink with the phase, but never below what SegFormer accepts.
    small = RunConfig(res_scale=0.25)
    assert train.crop_size_for(plan, small, p2, 2) == 192
    assert train.crop_size_for(plan, small, p1, 1) == max(64, SEGFORMER_MIN_SIDE)
    # A plan without a curriculum trains on whole images.
    plain = load_plan(small_plan(tmp_path))
    assert train.crop_size_for(plain, cfg, plain.phase("P1"), 1) is None
