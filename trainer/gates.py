"""The validation gate between phases and the plateau early stop: pure functions on metric histories.

A history is the list of per-epoch validation losses of one phase, entry 0 being the evaluation of
the phase's starting weights (before any training), entry k the evaluation after epoch k.

Gate (read from the plan's "advance only if, for the last 3 epochs, Skyrim-val loss ↓ ≤ 5 %
(moving average) and MatSynth-val loss ↑ ≤ 10 %"; intent: never advance while either domain is
deteriorating). The window is the last `window` epochs; its reference is the value just before
it (the phase start when the phase is shorter than the window):
- Skyrim: the moving average of the window's values may exceed the reference by at most 5 %.
- MatSynth: the last value may exceed the reference by at most 10 %.
A decrease always passes. docs/training.md explains this reading.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from trainer.plan import EarlyStopSpec, GateSpec


@dataclass(frozen=True)
class DomainCheck:
    domain: str
    reference: float
    value: float  # the moving average (Skyrim) or the last value (MatSynth)
    relative_change: float
    max_rise: float
    enforced: bool

    @property
    def passed(self) -> bool:
        return self.relative_change <= self.max_rise + 1e-9  # exactly at the limit passes


@dataclass(frozen=True)
class GateResult:
    phase: str
    checks: tuple[DomainCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.enforced)

    def message(self) -> str:
        parts = []
        for c in self.checks:
            verdict = "ok" if c.passed else ("FAILED" if c.enforced else "over the limit, not enforced")
            parts.append(f"{c.domain}-val {c.relative_change:+.1%} (limit {c.max_rise:+.0%}): {verdict}")
        head = "passed" if self.passed else "failed"
        return f"Gate after phase {self.phase} {head}: " + "; ".join(parts) if parts else \
            f"Gate after phase {self.phase}: no validation domain to judge."

    def to_dict(self) -> dict:
        return {"phase": self.phase, "passed": self.passed, "message": self.message(),
                "checks": [dict(asdict(c), passed=c.passed) for c in self.checks]}


def _window(history: list[float], window: int) -> tuple[float, list[float]]:
    if len(history) < 2:
        raise ValueError("a gate needs the starting evaluation and at least one epoch")
    start = max(0, len(history) - 1 - window)
    return history[start], history[start + 1:]


def relative_rise(reference: float, value: float) -> float:
    return (value - reference) / max(abs(reference), 1e-12)


def check_gate(phase: str, histories: dict[str, list[float]], spec: GateSpec,
               enforced: tuple[str, ...]) -> GateResult:
    """Judge the gate on per-domain histories ("matsynth", "skyrim"; a missing domain is skipped)."""
    checks = []
    for domain, max_rise in (("skyrim", spec.skyrim_max_rise), ("matsynth", spec.matsynth_max_rise)):
        history = histories.get(domain)
        if not history:
            continue
        reference, values = _window(history, spec.window)
        value = sum(values) / len(values) if domain == "skyrim" else values[-1]
        checks.append(DomainCheck(domain, reference, value, relative_rise(reference, value), max_rise,
                                  domain in enforced))
    return GateResult(phase, tuple(checks))


def epochs_since_improvement(history: list[float], min_rel_improvement: float) -> int:
    """How many epochs have passed since the monitored loss last improved on its best by the tolerance."""
    best, since = history[0], 0
    for value in history[1:]:
        if value < best * (1 - min_rel_improvement):
            best, since = value, 0
        else:
            since += 1
    return since


def should_stop_early(history: list[float], spec: EarlyStopSpec, min_epochs: int) -> bool:
    """True after `patience` epochs without improvement, never before the plan's minimum epochs."""
    epochs_done = len(history) - 1
    return epochs_done >= min_epochs and epochs_since_improvement(history, spec.min_rel_improvement) >= spec.patience
