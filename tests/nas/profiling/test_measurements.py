"""The measurement CSV: rows written by a timing run read back as the same networks, and bad
rows refused with an error that names the file, the line and the column."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models.torch.measure import Timing, TimingResult
from nas import profiling
from nas.errors import UserError
from tests.nas.profiling.helpers import predicted_rows, write_rows

SPACE = supernet.get_space("mnist-mbv3")


def timed_rows(n: int, statistic: str = "median", batch: int = 2) -> tuple[list, list[dict]]:
    """`n` archs of mnist-mbv3 as measurement rows, with made-up timings (no torch run)."""
    archs = profiling.sample_archs(SPACE, n, seed=0, resolutions=[12, 16])
    results = [TimingResult.of([1.0 + i, 3.0 + i, 2.0 + i, 0.5 + i]) for i in range(n)]
    timing = Timing("cpu", "fp32", threads=1, warmup=1, repeats=4)
    return archs, profiling.measurement_rows(SPACE, archs, results, timing, batch, statistic)


def test_measurement_rows_hold_the_chosen_statistic_and_the_network():
    archs, rows = timed_rows(3, statistic="min")
    assert [set(r) for r in rows] == [set(profiling.CSV_FIELDS)] * 3
    assert [r["latency_ms"] for r in rows] == [0.5, 1.5, 2.5]  # min of each
    assert [r["latency_median_ms"] for r in rows] == [1.5, 2.5, 3.5]
    assert [r["arch_id"] for r in rows] == [SPACE.arch_id(a) for a in archs]
    assert rows[0]["statistic"] == "min" and rows[0]["repeats"] == 4 and rows[0]["batch"] == 2
    spec = SPACE.to_spec(archs[0], batch=2)
    assert (rows[0]["macs"], rows[0]["params"]) == (spec.macs, spec.params)


def test_write_then_load_round_trips_the_rows(tmp_path):
    archs, rows = timed_rows(4)
    path = tmp_path / "deeper" / "m.csv"  # write_csv makes the folder
    profiling.write_csv(path, rows)
    with open(path, newline="") as f:
        assert next(csv.reader(f)) == list(profiling.CSV_FIELDS)

    data = profiling.load_measurements([path])
    assert set(data.metrics) == {"latency_ms"}  # the only metric column a timing run fills
    np.testing.assert_allclose(data.metrics["latency_ms"], [r["latency_ms"] for r in rows])
    assert data.arch_ids() == [r["arch_id"] for r in rows]
    assert data.precisions == ["fp32"] * 4
    for spec, arch in zip(data.specs, archs, strict=True):
        expected = SPACE.to_spec(arch, batch=2)
        assert (spec.batch, spec.macs, spec.params) == (2, expected.macs, expected.params)
    np.testing.assert_allclose(data.macs(), [2 * SPACE.to_spec(a).macs for a in archs])

    kept = data.subset([3, 1])
    assert kept.arch_ids() == [rows[3]["arch_id"], rows[1]["arch_id"]]
    np.testing.assert_allclose(kept.metrics["latency_ms"], [r["latency_ms"] for r in rows[3::-2]])


def test_rows_of_several_files_are_read_in_order(tmp_path):
    _, rows = timed_rows(3)
    profiling.write_csv(tmp_path / "a.csv", rows[:1])
    profiling.write_csv(tmp_path / "b.csv", rows[1:])
    data = profiling.load_measurements([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert data.arch_ids() == [r["arch_id"] for r in rows]


def test_each_row_is_predicted_with_its_own_options(tmp_path):
    """A GPU model costs each row at the precision the row names; an empty cell is the default."""
    model = lm.load_hardware("rtx4090")
    assert model.options()["precision"][0] == "fp16"  # the default
    fp32 = predicted_rows("rtx4090", ("resnet50",), 1.0, precision="fp32")
    default = predicted_rows("rtx4090", ("resnet50",), 1.0)
    rows = [fp32[0], {**default[0], "precision": ""}]
    path = write_rows(tmp_path / "m.csv", rows)
    data = profiling.load_measurements([path])
    assert data.options(model) == [{"precision": "fp32"}, {}]
    np.testing.assert_allclose(data.predict(model), [r["latency_ms"] for r in rows])
    assert data.predict(model)[0] > 1.5 * data.predict(model)[1]  # fp32 is slower than fp16


def test_a_metric_missing_from_some_rows_is_left_out(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("network,latency_ms,peak_sram_kb\nmcunet-in0,25,49\nmcunet-in1,56,\n")
    data = profiling.load_measurements([path])
    assert set(data.metrics) == {"latency_ms"}
    np.testing.assert_allclose(data.metrics["latency_ms"], [25, 56])


BAD_ROWS = {
    "text": ("network,latency_ms\nresnet50,1\nresnet50,abc\n", "line 3: column latency_ms: 'abc'"),
    "nan": (
        "network,latency_ms\nresnet50,nan\n",
        "line 2: column latency_ms: must be > 0, got nan",
    ),
    "zero": ("network,flash_kb\nresnet50,0\n", "line 2: column flash_kb: must be > 0, got 0.0"),
    "inf": ("network,latency_ms\nresnet50,inf\n", "line 2: column latency_ms: must be finite"),
    "overflow": ("network,peak_sram_kb\nresnet50,1e999\n", "column peak_sram_kb: must be finite"),
    "negative": ("network,latency_ms\nresnet50,-2\n", "column latency_ms: must be > 0, got -2.0"),
    "batch": ("network,batch,latency_ms\nresnet50,two,1\n", "line 2: column batch: 'two'"),
    "resolution": ("network,resolution,latency_ms\nresnet50,big,1\n", "column resolution: 'big'"),
    "network": (
        "network,latency_ms\nresnet5O,1\n",
        "line 2: column network: unknown reference network 'resnet5O'",
    ),
    "file": ("network,latency_ms\nmissing.onnx,1\n", "line 2: column network:"),
    "arch": ('space,arch,latency_ms\nmnist-mbv3,"{""ks"": [4]}",1\n', "line 2: column arch:"),
    "no metric": ("network,seconds\nresnet50,1\n", "no measured column; expected one of: "),
    "no network": ("model,latency_ms\nresnet50,1\n", "rows must name a network"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_a_bad_row_names_the_file_line_and_column(case, tmp_path):
    text, message = BAD_ROWS[case]
    path = tmp_path / f"{case.replace(' ', '-')}.csv"
    path.write_text(text)
    with pytest.raises(profiling.MeasurementError) as caught:
        profiling.load_measurements([path])
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert isinstance(caught.value, UserError)


def test_files_without_rows_or_without_a_complete_column_are_refused(tmp_path):
    missing = tmp_path / "none.csv"
    with pytest.raises(profiling.MeasurementError, match=r"none\.csv does not exist"):
        profiling.load_measurements([missing])
    empty = tmp_path / "empty.csv"
    empty.write_text("network,latency_ms\n")
    with pytest.raises(profiling.MeasurementError, match=r"no rows in .*empty\.csv"):
        profiling.load_measurements([empty])
    holes = tmp_path / "holes.csv"
    holes.write_text("network,latency_ms,flash_kb\nresnet50,1,\nresnet18,,2\n")
    with pytest.raises(profiling.MeasurementError, match="no measured column is filled in every"):
        profiling.load_measurements([holes])


def test_an_unknown_space_is_a_user_error_naming_the_spaces(tmp_path):
    """Today an unknown space raises the space registry's own error (no file or line)."""
    path = tmp_path / "m.csv"
    path.write_text('space,arch,latency_ms\nnope,"{}",1\n')
    with pytest.raises(supernet.errors.UnknownSpaceError, match="unknown search space 'nope'"):
        profiling.load_measurements([path])


def test_check_statistic():
    for statistic in profiling.STATISTICS:
        profiling.check_statistic(statistic)
    with pytest.raises(
        profiling.HardwareError, match="'mean' is not allowed; allowed: min, median"
    ):
        profiling.check_statistic("mean")


def test_a_file_that_is_not_utf8_text_is_refused_naming_it(tmp_path):
    binary = tmp_path / "m.csv"
    binary.write_bytes(b"network,latency_ms\n\xff\xfe\x00\x81,1\n")
    with pytest.raises(profiling.MeasurementError) as caught:
        profiling.load_measurements([binary])
    assert str(caught.value) == f"{binary} is not a UTF-8 CSV file"
    header = tmp_path / "header.csv"
    header.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(profiling.MeasurementError, match="is not a UTF-8 CSV file"):
        profiling.load_measurements([header])
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"network,latency_ms\nresnet50\x00,1\n")
    with pytest.raises(profiling.MeasurementError, match=r"nul\.csv line 2: "):
        profiling.load_measurements([nul])


def test_a_fit_or_a_validation_needs_two_measured_rows(tmp_path):
    one = write_rows(tmp_path / "one.csv", predicted_rows("rtx4090", ("resnet50",), 1.0))
    assert len(profiling.load_measurements([one]).specs) == 1  # reading one row is fine
    out = tmp_path / "out.yaml"
    for call in (
        lambda: profiling.calibrate("rtx4090", [one], out),
        lambda: profiling.adapt("rtx4090", [one], out),
        lambda: profiling.fit_learned([one], out),
        lambda: profiling.validate(["rtx4090"], None, measurements=one),
    ):
        with pytest.raises(profiling.MeasurementError) as caught:
            call()
        assert str(caught.value) == f"{one}: 1 measured row; at least 2 are needed"
    assert not out.exists()
    two = write_rows(tmp_path / "two.csv", predicted_rows("rtx4090", ("resnet18",), 1.0))
    profiling.adapt("rtx4090", [one, two], out)  # the rows of all files count
    assert out.is_file()
