"""train_one_epoch on a toy loss module: how often the loss is read on the host (log_every), gradient
accumulation with DDP's no_sync, and the divergence check against mid-epoch checkpoints."""
import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from trainer import train
from trainer.config import RunConfig
from trainer.logs import RunLogger
from trainer.train import JobContext, JobProgress, JobSetup, Runtime, TrainingDiverged, train_one_epoch


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


def _epoch(tmp_path, values, *, grad_accum=1, world_size=1, **cfg):
    module = ScriptedLoss(values)
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(module.calls))
    spec = SimpleNamespace(name="toy", scheduler=SimpleNamespace(per_batch=False))
    setup = JobSetup(phase=SimpleNamespace(label="T", name="T"), spec=spec, folder=tmp_path, models=nn.ModuleDict(),
                     trainable={}, lora_rank=0, loss_module=module, optimizer=optimizer,
                     scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0), batch_size=1,
                     grad_accum=grad_accum, min_epochs=1, max_epochs=1, batches_in_epoch=len(values),
                     val_loaders={}, tags={}, hparams={})
    logger = Recorder(tmp_path)
    ctx = JobContext(RunConfig(**cfg), plan=None, run_dir=tmp_path, rt=Runtime(torch.device("cpu"), 0, world_size),
                     sources=None, logger=logger)
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


def test_a_nan_loss_stops_the_epoch_before_the_next_checkpoint(tmp_path, monkeypatch):
    saves = []
    monkeypatch.setattr(train, "save_job", lambda ctx, setup, progress, pointers: saves.append(progress.global_step))
    values = [1, 2, 3, 4, math.nan, 6, 7, 8]
    ctx, setup, progress, batches, *_ = _epoch(tmp_path, values, log_every=3, checkpoint_every=4)
    with pytest.raises(TrainingDiverged, match="by step 6"):  # read at steps 3, 4 (checkpoint) and 6
        train_one_epoch(ctx, setup, progress, batches)
    assert saves == [4]  # the checkpoint before the NaN; none after it
