"""Running long jobs from operators: a controller protocol and the modal driver over it.

A controller does the work in small steps: `start()`, then `step() -> progress 0..1` until `done`,
then `finish() -> RunSummary`; `cancel()` at any point leaves nothing behind. The operators'
`execute()` runs a controller to the end (scripts, headless Blender, tests); `invoke()` drives the
same controller from TIMER events so the UI stays responsive and ESC cancels. Keeping the work in
plain classes matters because the bpy module has no event loop to drive modal operators.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..engine.errors import PBRForgeError
from ..properties import record_last_run


@dataclass
class RunSummary:
    message: str  # what was made; the driver adds the run's time and provider
    count: int = 0  # how many `unit` were made
    unit: str = "maps"
    provider: str = ""
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one sentence per item that could not be done
    seconds: float = 0.0  # the whole run, reading and writing included; set by the driver


def run_to_end(controller) -> RunSummary:
    """Start, step until done and finish; cancels (nothing left behind) if anything raises."""
    try:
        controller.start()
        while not controller.done:
            controller.step()
        return controller.finish()
    except BaseException:
        controller.cancel()
        raise


class SteppedOperator:
    """Mixin for operators whose work is a controller. Subclasses implement make_controller(context)."""

    bl_options = {'REGISTER', 'UNDO'}
    _timer = None
    _controller = None

    def make_controller(self, context):
        raise NotImplementedError

    _started_at = 0.0

    def execute(self, context):
        self._started_at = time.perf_counter()
        try:
            summary = run_to_end(self.make_controller(context))
        except PBRForgeError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        return self._report_summary(context, summary)

    def invoke(self, context, event):
        self._started_at = time.perf_counter()
        try:
            self._controller = self.make_controller(context)
            self._controller.start()
        except PBRForgeError as error:
            if self._controller is not None:
                self._controller.cancel()
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        wm = context.window_manager
        wm.progress_begin(0.0, 1.0)
        settings = context.scene.pbr_forge
        settings.running, settings.progress = self.bl_label, 0.0
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.modal_handler_add(self)
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        if event.type == 'ESC':
            self._end(context)
            self._controller.cancel()
            self.report({'WARNING'}, "Cancelled; nothing was changed by the unfinished part.")
            return {'CANCELLED'}
        if event.type != 'TIMER':
            return {'PASS_THROUGH'}
        ended = True
        try:
            progress = self._controller.step()
            context.window_manager.progress_update(progress)
            context.scene.pbr_forge.progress = progress
            redraw_panels(context)
            if not self._controller.done:
                ended = False
                return {'RUNNING_MODAL'}
            summary = self._controller.finish()
        except PBRForgeError as error:
            self._controller.cancel()
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        except BaseException:
            self._controller.cancel()
            raise
        finally:
            if ended:
                self._end(context)
        return self._report_summary(context, summary)

    def _end(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        context.scene.pbr_forge.running = ""
        redraw_panels(context)

    def _report_summary(self, context, summary: RunSummary):
        summary.seconds = time.perf_counter() - self._started_at
        summary.message += f" in {summary.seconds:.1f} s" + (f" ({summary.provider})" if summary.provider else "") + "."
        record_last_run(context.scene.pbr_forge, summary)
        redraw_panels(context)
        if summary.failures and summary.count == 0:
            self.report({'ERROR'}, summary.failures[0])
            return {'CANCELLED'}
        for warning in dict.fromkeys(summary.warnings + summary.failures):
            self.report({'WARNING'}, warning)
        self.report({'INFO'}, summary.message)
        return {'FINISHED'}


def redraw_panels(context):
    """Panels show the last-run summary: redraw them after a run."""
    for window in getattr(context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type in {'VIEW_3D', 'NODE_EDITOR'}:
                area.tag_redraw()

