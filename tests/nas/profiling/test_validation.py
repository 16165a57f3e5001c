"""Validation figures from known numbers, validation of rows measured elsewhere, and the plot."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import latency_models as lm
from nas import profiling
from nas.profiling.validation import _calibration_archs, _excluded, _timing_settings
from tests.nas.profiling.helpers import NETWORKS, predicted_rows, write_rows

MEASURED = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
# errors +25%, -50%, 0, +3.125%, +6.25%: the first two swap places, one pair of ten
PREDICTED = np.array([1.25, 1.0, 4.0, 8.25, 17.0])


def test_figures_of_known_numbers():
    figures = profiling.Validation("x", PREDICTED, MEASURED, macs=MEASURED[::-1]).figures()
    assert figures == pytest.approx(
        {
            "n": 5,
            "within_5pct": 2 / 5,
            "within_10pct": 3 / 5,
            "mape": (0.25 + 0.5 + 0 + 0.03125 + 0.0625) / 5,
            "max_error": 0.5,
            "bias": (0.25 - 0.5 + 0 + 0.03125 + 0.0625) / 5,
            "kendall_tau": (9 - 1) / 10,
            "macs_kendall_tau": -1.0,  # MACs that rank every pair the wrong way
        }
    )


def test_figures_without_macs_and_of_a_perfect_prediction():
    figures = profiling.Validation("x", MEASURED, MEASURED).figures()
    assert "macs_kendall_tau" not in figures
    assert figures["mape"] == 0 and figures["within_5pct"] == 1
    assert figures["kendall_tau"] == pytest.approx(1)


def test_a_report_lists_profiles_then_rescaled_then_the_noise_floor():
    a, b, c = (profiling.Validation(n, MEASURED, MEASURED) for n in "abc")
    report = profiling.ValidationReport("space", 5, [a], rescaled=[b], floor=[c])
    assert report.rows == [a, b, c]
    assert profiling.ValidationReport("space", 5, [a]).rows == [a]


def test_validate_rows_measured_elsewhere(tmp_path):
    """Rows timed at half of rtx4090's predictions: it predicts each at twice its time."""
    csv = write_rows(tmp_path / "m.csv", predicted_rows("rtx4090", NETWORKS, 0.5))
    report = profiling.validate(["rtx4090", "a100-sxm"], None, measurements=csv)
    assert report.space == "" and report.subnets == len(NETWORKS)
    assert [v.hardware for v in report.validations] == ["rtx4090", "a100-sxm"]
    assert report.rescaled == [] and report.floor == []
    figures = report.validations[0].figures()
    assert figures["mape"] == pytest.approx(1.0) and figures["bias"] == pytest.approx(1.0)
    assert figures["kendall_tau"] == pytest.approx(1.0) and figures["within_10pct"] == 0
    macs = [lm.reference_spec(n, batch=64).macs * 64 for n in NETWORKS]
    np.testing.assert_allclose(report.validations[0].macs, macs)


def test_validate_refuses_rows_without_latency(tmp_path):
    csv = tmp_path / "sram.csv"
    csv.write_text("network,peak_sram_kb\nmcunet-in0,49\n")
    with pytest.raises(profiling.MeasurementError, match=r"sram\.csv: no latency_ms column"):
        profiling.validate(["stm32h743"], "mnist-mbv3", measurements=csv)


def test_plot_validations_writes_a_png(tmp_path):
    rows = [profiling.Validation("a", PREDICTED, MEASURED),
            profiling.Validation("b", MEASURED * 1.05, MEASURED)]  # fmt: skip
    path = tmp_path / "plots" / "v.png"
    profiling.plot_validations(rows, "mnist-mbv3", path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def profile(kind: str = "gpu", **fields) -> SimpleNamespace:
    return SimpleNamespace(name=f"a-{kind}", kind=kind, profile=fields)


def test_validation_subnets_exclude_what_any_profile_was_fitted_on():
    models = [
        profile(calibration={"arch_ids": ["a", "b"]}),
        profile(trained_on={"arch_ids": ["c"]}, calibration={}),
        profile(),
    ]
    assert _excluded(models) == {"a", "b", "c"}


def test_timing_settings_default_unless_given():
    defaults = {"threads": 1, "warmup": 10, "repeats": 100, "rounds": 10, "statistic": "median"}
    assert _timing_settings([profile()], None, None, None, None) == defaults
    given = _timing_settings([profile()], 2, 5, 1, "min")
    assert given == {**defaults, "threads": 2, "repeats": 5, "rounds": 1, "statistic": "min"}
    with pytest.raises(profiling.HardwareError, match="statistic 'mean' is not allowed"):
        _timing_settings([], None, None, None, "mean")


def test_recalibrating_needs_a_measured_profile_of_the_space():
    import supernet

    space = supernet.get_space("mnist-mbv3")
    with pytest.raises(profiling.HardwareError, match="--recalibrate needs a measured profile"):
        _calibration_archs([lm.load_hardware("a100-sxm")], space)
