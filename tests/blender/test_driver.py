"""The modal driver (operators/driver.py) in real Blender: invoke() starts a controller, each TIMER
event is one step with the progress shown, the last step finishes and records the summary; ESC
cancels mid-way. bpy has no event loop to deliver events, so the test delivers them: it calls
invoke() and modal() with the real scene, window and window manager, only recording the modal
handler instead of registering one (Blender accepts only a registered operator there)."""
import hashlib
from types import SimpleNamespace

import pytest

from .builders import make_texture_pair

SETS = ("wall", "pot", "door")


class WindowManager:
    """The real window manager, but modal_handler_add only records (no event loop delivers to it);
    timers are really added and removed, and counted."""

    def __init__(self, real):
        self._real, self.handlers, self.timers = real, [], set()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def modal_handler_add(self, operator):
        self.handlers.append(operator)
        return True

    def event_timer_add(self, time_step, window=None):
        timer = self._real.event_timer_add(time_step, window=window)
        self.timers.add(timer.as_pointer())
        return timer

    def event_timer_remove(self, timer):
        self.timers.discard(timer.as_pointer())
        self._real.event_timer_remove(timer)


def _driver(bpy, controller):
    from addon.operators.driver import SteppedOperator

    class Driven(SteppedOperator):
        bl_label = "Test Run"

        def __init__(self):
            self.reports = []

        def make_controller(self, context):
            return controller

        def report(self, kind, message):
            self.reports.append((set(kind), message))

    context = SimpleNamespace(scene=bpy.context.scene, window=bpy.context.window,
                              window_manager=WindowManager(bpy.context.window_manager))
    return Driven(), context


def _mod(tmp_path):
    mod = tmp_path / "mod"
    for name in SETS:
        make_texture_pair(mod / "textures", name=name)
    return mod


def _batch(bpy, mod, out):
    from addon.operators.batch import BatchConversion
    from addon.operators.convert import RunSettings

    return BatchConversion(mod, out, fmt="blender", settings=RunSettings.from_context(bpy.context))


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(out):
    return _digest(out / "blender") if (out / "blender").exists() else {}


TIMER, ESC, MOUSE = (SimpleNamespace(type=t) for t in ("TIMER", "ESC", "MOUSEMOVE"))


def test_timer_events_step_the_run_with_rising_progress_until_it_finishes(bpy, prefs, tmp_path):
    mod = _mod(tmp_path)
    originals = _digest(mod)
    op, context = _driver(bpy, _batch(bpy, mod, tmp_path / "out"))
    settings = context.scene.pbr_forge

    assert op.invoke(context, TIMER) == {'RUNNING_MODAL'}
    assert context.window_manager.handlers == [op] and len(context.window_manager.timers) == 1
    assert (settings.running, settings.progress) == ("Test Run", 0.0)
    assert op.modal(context, MOUSE) == {'PASS_THROUGH'}  # other events pass, nothing steps
    assert settings.progress == 0.0 and _outputs(tmp_path / "out") == {}

    results, progress = [], []
    while not results or results[-1] == {'RUNNING_MODAL'}:
        results.append(op.modal(context, TIMER))
        progress.append(settings.progress)
        assert len(results) <= len(SETS) + 2, "the run never finished"
        if results[-1] == {'RUNNING_MODAL'}:
            assert settings.running == "Test Run"
    assert results[-1] == {'FINISHED'} and results.count({'RUNNING_MODAL'}) >= len(SETS) - 1
    assert progress == sorted(progress) and progress[0] > 0 and progress[-1] == pytest.approx(1.0)
    assert settings.running == "" and context.window_manager.timers == set()  # the timer is removed
    assert (settings.last_count, settings.last_unit) == (len(SETS), "texture sets")
    assert "3 texture sets converted" in settings.last_message
    assert any(kind == {'INFO'} and "converted" in message for kind, message in op.reports)
    assert {name.split("_")[0] for name in _outputs(tmp_path / "out")} == set(SETS)
    assert _digest(mod) == originals


def test_esc_mid_run_cancels_keeping_the_sets_written_so_far_and_the_originals(bpy, prefs, tmp_path):
    mod = _mod(tmp_path)
    originals = _digest(mod)
    full = tmp_path / "full"
    op, context = _driver(bpy, _batch(bpy, mod, full))
    op.invoke(context, TIMER)
    while op.modal(context, TIMER) == {'RUNNING_MODAL'}:
        pass
    complete = _outputs(full)

    out = tmp_path / "out"
    op, context = _driver(bpy, _batch(bpy, mod, out))
    settings = context.scene.pbr_forge
    op.invoke(context, TIMER)
    assert op.modal(context, TIMER) == {'RUNNING_MODAL'}  # one set converted
    assert 0 < settings.progress < 1
    assert op.modal(context, ESC) == {'CANCELLED'}

    assert settings.running == "" and context.window_manager.timers == set()
    assert any(kind == {'WARNING'} and "Cancelled" in message for kind, message in op.reports)
    written = _outputs(out)
    converted = {name.split("_")[0] for name in written}
    assert len(converted) == 1 and converted < set(SETS)
    # The set converted before ESC is whole: the same files, byte for byte, as an uncancelled run's.
    assert written == {name: digest for name, digest in complete.items() if name.split("_")[0] in converted}
    assert _digest(mod) == originals

    # A second run resumes: the kept set is skipped, the rest converted.
    op, context = _driver(bpy, _batch(bpy, mod, out))
    op.invoke(context, TIMER)
    while op.modal(context, TIMER) == {'RUNNING_MODAL'}:
        pass
    assert "2 texture sets converted, 1 already done" in settings.last_message
    assert _outputs(out) == complete
