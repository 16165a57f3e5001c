"""`runtime:` in a search's target for an MCU: TFLite Micro's arena and flash as its limits."""

from __future__ import annotations

import pytest

from nas.errors import SearchConfigError
from nas.pareto import load_candidates
from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Store


def test_an_mcu_target_searches_on_tflm_and_refuses_unknown_runtimes(raw_config):
    raw = raw_config()
    raw["targets"]["stm32f746"]["runtime"] = "cmsis-nn"
    with pytest.raises(
        SearchConfigError,
        match=r"targets\.stm32f746: .*'runtime': value 'cmsis-nn' is not supported; "
        r"allowed: tinyengine, tflm",
    ):
        check_search_config(raw, "t")
    raw = raw_config(algorithm={"population": 4, "generations": 1, "seed": 0})
    # TFLM's tail alone is tens of kB: a limit above the TinyEngine figures of the tiny net
    raw["targets"]["stm32f746"] = {"runtime": "tflm", "peak_sram_kb": 60, "flash_kb": 2000}
    checked = check_search_config(raw, "t")
    target, hw = checked.resources.devices[0]
    assert target.options == {"runtime": "tflm"}
    store = Store(checked.config.database)
    rows = load_candidates(store, launch_search(checked, store, progress=False).search_id)
    space = checked.resources.artifact.space
    assert rows
    for row in rows:
        spec = space.to_spec(row.arch, batch=1)
        tflm, tinyengine = hw.predict(spec, runtime="tflm"), hw.predict(spec)
        assert row.metrics["stm32f746.peak_sram_kb"] == pytest.approx(tflm["peak_sram_kb"])
        assert row.metrics["stm32f746.flash_kb"] == pytest.approx(tflm["flash_kb"])
        assert tflm["peak_sram_kb"] > tinyengine["peak_sram_kb"]
