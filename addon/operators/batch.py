"""Convert a whole mod folder into an output folder (the engine's resumable batch run)."""
from __future__ import annotations

from pathlib import Path

import bpy

from ..engine.batch import BatchJob
from ..engine.errors import PBRForgeError
from ..preferences import NAMING_PRESETS, get_preferences
from .convert import RunSettings
from .driver import RunSummary, SteppedOperator


class BatchConversion:
    """Adapts engine.batch.BatchJob (which writes each set atomically and can resume) to the
    controller protocol of the operators."""

    def __init__(self, input_dir: Path, output_dir: Path, *, fmt: str, settings: RunSettings):
        self.input_dir = input_dir
        self.output_dir = output_dir
        self.fmt = fmt
        self.settings = settings
        self.job = None

    def start(self) -> None:
        # The Input Normals and Overwrite Existing Files preferences, as a single conversion honours them.
        self.job = BatchJob(self.input_dir, self.output_dir, fmt=self.fmt, converter=self.settings.converter(),
                            normal_convention=self.settings.normal_convention, overwrite=self.settings.overwrite)

    def step(self) -> float:
        return self.job.step()

    @property
    def done(self) -> bool:
        return self.job is not None and self.job.done

    def finish(self) -> RunSummary:
        summary = self.job.summary
        failures = [f"{failure['texture']}: {failure['reason']}" for failure in summary["failures"]]
        return RunSummary(
            message=f"{summary['converted']} texture sets converted, {summary['skipped']} already done, "
                    f"{summary['failed']} failed, into '{self.output_dir}'",
            count=summary["converted"], unit="texture sets", provider=summary["provider"],
            warnings=list(summary["warnings"]), failures=failures,
        )

    def cancel(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()


class PBR_FORGE_OT_batch_convert(SteppedOperator, bpy.types.Operator):
    """Convert every diffuse/normal pair of a mod folder into the output folder (originals untouched)"""
    bl_idname = "pbr_forge.batch_convert"
    bl_label = "Convert Mod Folder"

    @classmethod
    def poll(cls, context):
        settings = context.scene.pbr_forge
        if settings.batch_input_dir and settings.batch_output_dir:
            return True
        cls.poll_message_set("Choose the mod folder and an output folder first")
        return False

    def make_controller(self, context):
        settings = context.scene.pbr_forge
        input_dir = Path(bpy.path.abspath(settings.batch_input_dir))
        if not input_dir.is_dir():
            raise PBRForgeError(f"The mod folder '{input_dir}' does not exist; choose the folder that holds "
                                "the mod's textures.")
        return BatchConversion(
            input_dir, Path(bpy.path.abspath(settings.batch_output_dir)),
            fmt=NAMING_PRESETS[get_preferences(context).naming_preset], settings=RunSettings.from_context(context),
        )


classes = (PBR_FORGE_OT_batch_convert,)
