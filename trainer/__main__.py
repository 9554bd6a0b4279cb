"""python -m trainer {run,train,synth,preflight,export,data,evaluate} — the trainer's command line.

`run` executes a phase plan (trainer/plans) into a run folder; `train` is the same command. Errors a
user can cause print one sentence and exit with status 2; bugs stay loud (a traceback).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from addon.engine.errors import PBRForgeError
from trainer.config import MODEL_PRESETS, PROFILES, RunConfig


def _add_run_parser(subparsers) -> None:
    help_text = "run the training plan (all phases, or one with --phase); `train` is the same command"
    p = subparsers.add_parser("run", aliases=["train"], help=help_text, description=help_text)
    p.add_argument("--plan", default="skyrim", help="plan name in trainer/plans (skyrim, skyrim_lowtrust) or a TOML path")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, export)")
    p.add_argument("--matsynth", help="folder of MatSynth parquet shards")
    p.add_argument("--skyrim", help="Skyrim pairs root (inputs/, targets/, preflight.json; see docs/data.md)")
    p.add_argument("--library", help="material library (python -m trainer data import): ground truth joins the "
                                     "MatSynth role, old-game sets the Skyrim role; held-out materials are never read")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="use N procedural materials per domain instead of --matsynth/--skyrim (CPU runs, CI)")
    p.add_argument("--phase", help="run only this phase (the earlier ones must be finished in --out)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run exactly where it stopped")
    p.add_argument("--force", action="store_true", help="advance even when a validation gate fails")
    p.add_argument("--profile", choices=sorted(PROFILES), help="a named bundle of the overrides below")
    p.add_argument("--models-preset", choices=MODEL_PRESETS, help="model sizes (default full, cpu_default with --profile)")
    p.add_argument("--res-scale", type=float, help="multiply every phase resolution (0.125: 1K -> 128 px)")
    p.add_argument("--epochs-scale", type=float, help="multiply every epoch count and epoch-counted schedule")
    p.add_argument("--max-steps", type=int, metavar="N", help="at most N optimiser steps per epoch")
    p.add_argument("--batch-size", type=int, help="override every phase's batch size")
    p.add_argument("--grad-accum", type=int, help="override every phase's gradient accumulation")
    p.add_argument("--lr-scale", type=float, help="multiply every learning rate of the plan")
    p.add_argument("--val-batches", type=int, metavar="N", help="at most N validation batches per domain")
    p.add_argument("--num-workers", type=int, help="data-loading worker processes")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="also save a resumable checkpoint every N steps")
    p.add_argument("--log-every", type=int, metavar="N",
                   help="log the training loss (and check it for NaN) every N optimiser steps (default 10)")
    p.add_argument("--grad-clip", type=float, metavar="NORM",
                   help="clip the gradients' global norm to NORM before each optimiser step (default: no clipping)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the UNets")
    p.add_argument("--lion", action="store_true", default=None, help="Lion instead of AdamW where the plan allows (C, C′)")
    p.add_argument("--wandb", action="store_true", default=None, help="also log to Weights & Biases (offline unless WANDB_MODE)")
    p.add_argument("--export-to", help="also copy the exported ONNX set here (e.g. models/)")
    p.add_argument("--init-from", help="start from these weights instead of new models: an exported models folder "
                                       "(models/ keeps its trainable checkpoint), a run or a checkpoint folder")
    p.add_argument("--reset", action="append", metavar="PART",
                   help="with --init-from: start these parameters (a name prefix, e.g. maps.heads.height; "
                        "repeatable) as new, untrained ones instead of from the weights")
    p.add_argument("--no-export", action="store_true", help="do not export ONNX models at the end")
    p.set_defaults(func=_run_command)


OVERRIDES = ("synthetic", "models_preset", "res_scale", "epochs_scale", "max_steps", "batch_size", "grad_accum",
             "lr_scale", "val_batches",
             "num_workers", "checkpoint_every", "log_every", "grad_clip", "compile", "lion", "wandb", "export_to", "init_from", "reset", "matsynth", "skyrim",
             "library")


def config_from_args(args) -> RunConfig:
    """RunConfig from the defaults, then the profile, then the flags given explicitly."""
    from trainer.plan import load_plan
    values = dict(PROFILES[args.profile]) if args.profile else {}
    values.update({k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None})
    plan = load_plan(args.plan)
    return RunConfig(plan=args.plan, out=args.out, device=args.device, profile=args.profile,
                     plan_data=plan.raw, **values)


def _run_command(args) -> int:
    from trainer.train import run_plan
    # --resume and --phase on an existing run keep the data of its run_config.json.
    if args.synthetic is None and not (args.matsynth or args.skyrim or args.library) and not args.resume \
            and not args.phase and not args.profile:
        raise PBRForgeError("Give the training data: --matsynth PATH and --skyrim PATH, --library LIB, or "
                            "--synthetic N for procedural data.")
    cfg = config_from_args(args)
    try:
        exported = run_plan(cfg, resume=args.resume, force=args.force, only_phase=args.phase,
                            export=not args.no_export)
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # gloo's threads left running at exit abort the process
    if exported:
        print(f"Training finished; models exported to {exported}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from trainer import evaluate, export
    from trainer.data import library, preflight, synth
    parser = argparse.ArgumentParser(prog="python -m trainer", description="PBR Forge trainer")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(subparsers)
    synth.register_cli(subparsers)
    preflight.register_cli(subparsers)
    export.register_cli(subparsers)
    evaluate.register_cli(subparsers)
    library.register_cli(subparsers)
    return parser


def main(argv=None) -> int:
    # Under torchrun only rank 0 reports progress; the other ranks speak up for problems only.
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PBRForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
