"""Session cache and provider fallback (this machine's onnxruntime offers only the CPU)."""
import os
import sys

import pytest

from addon.engine import sessions
from addon.engine.errors import PBRForgeError
from addon.engine.manifest import load_manifest
from addon.engine.pipeline import Converter
from addon.engine.sessions import ModelSession, available_choices, physical_cores


def test_sessions_are_created_once_per_model_and_provider(tiny_models_dir):
    path = load_manifest(tiny_models_dir).model("albedo").path
    first = ModelSession(path, "cpu", [])
    second = ModelSession(path, "cpu", [])
    assert first.session is second.session and first.provider == "cpu"


@pytest.mark.parametrize("missing", [c for c in ("cuda", "directml", "coreml") if c not in available_choices()])
def test_unavailable_gpu_provider_falls_back_to_cpu_with_a_visible_note(tiny_models_dir, missing):
    path = load_manifest(tiny_models_dir).model("albedo").path
    notes = []
    session = ModelSession(path, missing, notes)
    assert session.provider == "cpu"
    assert session.session.get_providers()[0] == "CPUExecutionProvider"
    assert len(notes) == 1 and "CPU" in notes[0] and sessions.DISPLAY_NAMES[missing] in notes[0]


def test_conversion_on_an_unavailable_provider_finishes_on_cpu_and_says_so(tiny_models_dir):
    import numpy as np

    if "cuda" in available_choices():
        pytest.skip("CUDA is available here: no fallback to observe")
    result = Converter(tiny_models_dir, provider="cuda").convert(np.full((40, 40, 3), 0.5, np.float32))
    assert result.provider == "CPU"
    assert any("CUDA is not available" in w for w in result.warnings)


def test_auto_uses_the_cpu_quietly_when_no_gpu_is_offered(tiny_models_dir):
    if available_choices() != ["cpu"]:
        pytest.skip("a GPU provider is offered here")
    notes = []
    session = ModelSession(load_manifest(tiny_models_dir).model("maps").path, "auto", notes)
    assert session.provider == "cpu" and notes == []


def test_a_gpu_failure_while_running_reruns_on_the_cpu(tiny_models_dir):
    """A GPU session that raises at run time (e.g. out of memory) is replaced by a CPU one."""
    import numpy as np

    path = load_manifest(tiny_models_dir).model("metallic_seg").path
    notes = []
    session = ModelSession(path, "cpu", notes)
    real = session.session

    class FailingGpuSession:  # what a CUDA session that runs out of memory does
        def get_outputs(self):
            return real.get_outputs()

        def run(self, names, feeds):
            raise RuntimeError("CUDA error: out of memory")

    session.session, session.provider = FailingGpuSession(), "cuda"
    outputs = session.run({"image": np.zeros((1, 3, 32, 32), np.float32)})
    assert outputs["metallic_logits"].shape == (1, 1, 32, 32)
    assert session.provider == "cpu" and "out of memory" in notes[0]


def test_unknown_provider_name_is_a_user_error(tiny_models_dir):
    with pytest.raises(PBRForgeError, match="Unknown execution provider"):
        Converter(tiny_models_dir, provider="vulkan")


class _FakePsutil:
    def __init__(self, physical):
        self.physical = physical

    def cpu_count(self, logical=True):
        assert not logical
        return self.physical


@pytest.mark.parametrize("physical, allowed, expected", [(8, 4, 4), (2, 4, 2), (6, 1, 1)])
def test_thread_count_is_the_physical_cores_this_process_may_use(monkeypatch, physical, allowed, expected):
    monkeypatch.setitem(sys.modules, "psutil", _FakePsutil(physical))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(allowed)), raising=False)
    assert physical_cores() == expected


def test_without_psutil_hyper_threads_of_one_core_count_once(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    monkeypatch.setattr(sessions.sys, "platform", "linux")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4}, raising=False)
    monkeypatch.setattr(sessions, "Path", lambda text: tmp_path / str(text).lstrip("/"))
    for cpu, (package, core) in enumerate([(0, 0), (0, 0), (0, 1), (0, 1), (1, 0)]):  # 2 + 1 physical
        topology = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert physical_cores() == 3
    (tmp_path / "sys/devices/system/cpu/cpu4/topology/core_id").unlink()  # unreadable: count the CPUs
    assert physical_cores() == 5
    monkeypatch.setattr(sessions.sys, "platform", "win32")  # no psutil, no /sys: onnxruntime decides
    assert physical_cores() == 0
