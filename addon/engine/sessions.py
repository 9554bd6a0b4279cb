"""onnxruntime sessions: one per (model file, provider) for the whole process, GPU first, CPU always.

Creating a session costs seconds for the large models, so sessions are cached at module level and
shared by every Converter (the Blender operators create one per run). Auto tries the GPU providers
this onnxruntime build offers (CUDA, DirectML, CoreML) and then the CPU. When a GPU provider cannot
load a model, or fails while running it, the model moves to the CPU and a note says so: the
conversion finishes instead of failing, and the user sees why it was slow.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from .errors import ModelRuntimeError, PBRForgeError

# User-facing choice -> onnxruntime provider name.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
PROVIDER_CHOICES = ("auto", *PROVIDERS)
GPU_ORDER = ("cuda", "directml", "coreml")
DISPLAY_NAMES = {"cpu": "CPU", "cuda": "CUDA", "directml": "DirectML", "coreml": "CoreML"}
_NAME_OF = {onnx_name: choice for choice, onnx_name in PROVIDERS.items()}


def available_choices() -> list[str]:
    """The providers this onnxruntime build offers, as user-facing choices ('cuda', ..., 'cpu')."""
    import onnxruntime

    offered = set(onnxruntime.get_available_providers())
    return [choice for choice in (*GPU_ORDER, "cpu") if PROVIDERS[choice] in offered]


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads share a core's arithmetic units).

    0 means "let onnxruntime decide" (it counts physical cores itself) where we cannot tell.
    """
    try:
        import psutil  # not in every Blender; used when present

        count = psutil.cpu_count(logical=False)
        if count:
            allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else count
            return max(1, min(count, allowed))
    except ImportError:
        pass
    if sys.platform.startswith("linux"):
        cores = set()
        for cpu in os.sched_getaffinity(0):
            topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            try:
                package = (topology / "physical_package_id").read_text().strip()
                core = (topology / "core_id").read_text().strip()
            except OSError:
                return len(os.sched_getaffinity(0))
            cores.add((package, core))
        return max(1, len(cores))
    return 0


class ModelSession:
    """A model ready to run, with the provider it really runs on and CPU fallback on failure."""

    def __init__(self, path: Path, choice: str, notes: list[str], on_new_session=None):
        self.path = Path(path)
        self._notes = notes
        self._on_new_session = on_new_session
        self.session, self.provider = _get_session(self.path, choice, notes)
        self._checked()

    def _checked(self):
        if self._on_new_session is not None:
            self._on_new_session(self.session)

    def run(self, feeds: dict) -> dict:
        """Run the model; on a GPU failure rerun on the CPU (noted). Returns output name -> array."""
        names = [node.name for node in self.session.get_outputs()]
        try:
            return dict(zip(names, self.session.run(names, feeds)))
        except Exception as exc:  # onnxruntime raises its own exception types for every failure
            if self.provider == "cpu":
                raise ModelRuntimeError(
                    f"The model '{self.path.name}' failed on the CPU ({_first_line(exc)}); re-export the "
                    f"models or report this with the texture that caused it."
                ) from exc
            self._notes.append(
                f"{DISPLAY_NAMES[self.provider]} failed while running '{self.path.name}' "
                f"({_first_line(exc)}); it now runs on the CPU."
            )
            self.session, self.provider = _get_session(self.path, "cpu", self._notes)
            self._checked()
            return dict(zip(names, self.session.run(names, feeds)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200].rstrip(".")


_sessions: dict[tuple, tuple] = {}
_sessions_lock = threading.Lock()


def _get_session(path: Path, choice: str, notes: list[str]):
    """(session, provider choice actually used) for a model, created once per process."""
    if choice not in PROVIDER_CHOICES:
        raise PBRForgeError(
            f"Unknown execution provider '{choice}'; choose one of {', '.join(PROVIDER_CHOICES)}."
        )
    stat = path.stat()
    candidates = _candidates(choice, notes)
    for candidate in candidates:
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, candidate)
        with _sessions_lock:
            cached = _sessions.get(key)
        if cached is not None:
            return cached, candidate
        try:
            session = _create(path, candidate)
        except Exception as exc:
            if candidate == "cpu":
                raise ModelRuntimeError(
                    f"onnxruntime cannot load '{path.name}' ({_first_line(exc)}); re-export the models "
                    f"or reinstall PBR Forge."
                ) from exc
            notes.append(
                f"{DISPLAY_NAMES[candidate]} could not load '{path.name}' ({_first_line(exc)}); "
                f"it runs on the CPU instead."
            )
            continue
        if _NAME_OF.get(session.get_providers()[0]) != candidate:
            # onnxruntime drops a provider whose libraries fail to load and silently uses the CPU.
            notes.append(
                f"{DISPLAY_NAMES[candidate]} is installed but did not start (missing driver or "
                f"libraries?); '{path.name}' runs on the CPU instead."
            )
            continue
        with _sessions_lock:
            _sessions[key] = session
        return session, candidate
    raise AssertionError("the CPU provider is always a candidate")


def _candidates(choice: str, notes: list[str]) -> list[str]:
    available = available_choices()
    if choice == "auto":
        return [c for c in GPU_ORDER if c in available] + ["cpu"]
    if choice != "cpu" and choice not in available:
        note = (f"{DISPLAY_NAMES[choice]} is not available in this onnxruntime build (it offers "
                f"{', '.join(DISPLAY_NAMES[c] for c in available)}); the CPU is used instead.")
        if note not in notes:
            notes.append(note)
        return ["cpu"]
    return [choice] if choice == "cpu" else [choice, "cpu"]


def _create(path: Path, choice: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = physical_cores()
    options.log_severity_level = 3  # errors only: our notes tell the user what matters
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=[PROVIDERS[choice]])


def clear_cache() -> None:
    """Forget every cached session (frees their memory; e.g. when the models folder changes)."""
    with _sessions_lock:
        _sessions.clear()
