"""Gate and early stop on scripted metric histories (entry 0 = the phase's starting weights)."""
import pytest

from trainer.gates import check_gate, epochs_since_improvement, should_stop_early
from trainer.plan import EarlyStopSpec, GateSpec

GATE = GateSpec(window=3, skyrim_max_rise=0.05, matsynth_max_rise=0.10)
STOP = EarlyStopSpec(patience=4, min_rel_improvement=0.001)
BOTH = ("skyrim", "matsynth")


def test_gate_passes_when_both_domains_improve():
    result = check_gate("B", {"skyrim": [1.0, 0.9, 0.8, 0.7, 0.6], "matsynth": [0.5, 0.5, 0.49, 0.48, 0.47]}, GATE, BOTH)
    assert result.passed
    skyrim = result.checks[0]
    assert skyrim.reference == 0.9 and skyrim.value == pytest.approx(0.7)  # window = last 3 epochs


def test_gate_fails_when_skyrim_moving_average_rises_more_than_5_percent():
    result = check_gate("B", {"skyrim": [1.0, 1.0, 1.0, 1.04, 1.08, 1.12], "matsynth": [1.0] * 6}, GATE, BOTH)
    assert not result.passed and "skyrim-val +8.0% (limit +5%): FAILED" in result.message()


def test_gate_tolerates_a_small_skyrim_rise_and_a_noisy_last_epoch_within_the_average():
    assert check_gate("B", {"skyrim": [1.0, 1.0, 1.02, 1.04, 1.06]}, GATE, BOTH).passed  # average +4 %
    assert check_gate("B", {"skyrim": [1.0, 1.0, 0.8, 0.8, 1.1]}, GATE, BOTH).passed  # average -10 %


def test_gate_fails_on_matsynth_forgetting_above_10_percent_but_not_at_10():
    assert not check_gate("C", {"skyrim": [1, 0.9, 0.8, 0.7], "matsynth": [1.0, 1.05, 1.08, 1.11]}, GATE, BOTH).passed
    assert check_gate("C", {"skyrim": [1, 0.9, 0.8, 0.7], "matsynth": [1.0, 1.2, 1.3, 1.1]}, GATE, BOTH).passed


def test_gate_on_a_phase_shorter_than_the_window_uses_the_phase_start():
    result = check_gate("C_prime", {"skyrim": [1.0, 0.99], "matsynth": [1.0, 1.2]}, GATE, BOTH)
    assert result.checks[1].reference == 1.0 and not result.passed


def test_unenforced_domain_is_reported_but_does_not_block():
    result = check_gate("A", {"skyrim": [1.0, 1.5, 2.0, 2.5], "matsynth": [1.0, 0.9, 0.8, 0.7]}, GATE, ("matsynth",))
    assert result.passed and "not enforced" in result.message()
    assert result.to_dict()["checks"][0]["passed"] is False


def test_plateau_counts_epochs_without_a_real_improvement():
    assert epochs_since_improvement([1.0, 0.9, 0.8], 0.001) == 0
    assert epochs_since_improvement([1.0, 0.9, 0.8999, 0.95, 0.9], 0.001) == 3  # 0.8999 is within tolerance


def test_early_stop_after_four_flat_epochs_but_not_before_min_epochs():
    flat = [1.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert should_stop_early(flat, STOP, min_epochs=5)
    assert not should_stop_early(flat[:-1], STOP, min_epochs=3)  # only 3 flat epochs
    assert not should_stop_early(flat, STOP, min_epochs=10)
    assert not should_stop_early([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], STOP, min_epochs=1)
