"""Profile a device: time subnets on this machine, and build, calibrate, fit and validate the
hardware profiles of latency_models from those timings.

    rows = measure("mnist-mbv3", n=20).rows             # end-to-end timings, written as a CSV
    calibrate("a100-sxm", [Path("m.csv")], Path("new.yaml"))
    build_lut("mnist-mbv3")                              # runs/profiles/local-cpu.yaml: this CPU
    report = validate(["local-cpu"], "mnist-mbv3", n=50) # predicted vs measured
    fit_learned([Path("m.csv")], Path("gbdt.yaml"))      # a `learned` profile

Every timing runs on end-to-end networks extracted from the space's supernet
(`supernet.build(space).extract(arch)`), with fixed threads, warm-up runs, and repeats spread
over interleaved rounds, so that a passing disturbance does not hit one network only. Bad input
raises errors deriving from `latency_models.UserError` (HardwareError, MeasurementError, ...).

- measurements: the measurement CSV's columns, writing its rows, reading them back
- timing: sampling archs and timing them end to end; `measure`
- tables: `build_lut`, a `measured` profile of this machine's blocks, calibrated end to end
- fit: `calibrate`, `adapt` and `fit_learned`, profiles fitted to measurement CSVs
- validation: `validate`, profiles' predictions against measurements, and their plot
"""

from latency_models.errors import HardwareError, MeasurementError, UnknownNetworkError
from nas.profiling.fit import (
    ADAPT_DEVICE_PARAMETERS,
    ADAPT_PARTS,
    ADAPT_PRIOR_WEIGHT,
    ADAPT_STACK_PARAMETERS,
    AdaptResult,
    CalibrationResult,
    LearnedResult,
    adapt,
    calibrate,
    fit_learned,
)
from nas.profiling.measurements import (
    CSV_FIELDS,
    METRICS,
    OPTION_COLUMNS,
    STATISTICS,
    Measurements,
    check_statistic,
    load_measurements,
    measurement_rows,
    write_csv,
)
from nas.profiling.tables import LutResult, build_lut, check_profile_name
from nas.profiling.timing import MeasureResult, measure, progress_bar, sample_archs, time_archs
from nas.profiling.validation import (
    HardwareLike,
    Validation,
    ValidationReport,
    plot_validations,
    validate,
)

__all__ = [
    "ADAPT_DEVICE_PARAMETERS",
    "ADAPT_PARTS",
    "ADAPT_PRIOR_WEIGHT",
    "ADAPT_STACK_PARAMETERS",
    "CSV_FIELDS",
    "METRICS",
    "OPTION_COLUMNS",
    "STATISTICS",
    "AdaptResult",
    "CalibrationResult",
    "HardwareError",
    "HardwareLike",
    "LearnedResult",
    "LutResult",
    "MeasureResult",
    "MeasurementError",
    "Measurements",
    "UnknownNetworkError",
    "Validation",
    "ValidationReport",
    "adapt",
    "build_lut",
    "calibrate",
    "check_profile_name",
    "check_statistic",
    "fit_learned",
    "load_measurements",
    "measure",
    "measurement_rows",
    "plot_validations",
    "progress_bar",
    "sample_archs",
    "time_archs",
    "validate",
    "write_csv",
]
