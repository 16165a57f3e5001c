"""A table of block latencies measured on this machine (`nas latency build-lut`).

latency = scale x sum(block entries) + overhead_ms + per_block_ms x blocks
          + per_layer_ms x layers

The entries are each block timed alone; a network run end to end costs more (the interpreter
between blocks, caches, allocation), so `calibration` holds a scale and overheads fitted on
separate calibration subnets measured end to end. Tables are keyed by batch size; keys are in
the `generic` format (keys.py), so one profile can hold blocks of several spaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from latency_models.arrays import Part, SpecArrays, SpecBatch
from latency_models.base import Reader
from latency_models.errors import UnsupportedSpecError
from latency_models.models.lut import BlockTableModel

TIMING_FIELDS = (
    "device",
    "processor",
    "threads",
    "warmup",
    "repeats",
    "rounds",
    "statistic",
    "torch",
    "spaces",
    "date",
    "seconds",
)


class MeasuredModel(BlockTableModel):
    kind = "measured"
    description_of_kind = "block latencies measured on this machine, calibrated end to end"
    FIELDS = (
        "name",
        "kind",
        "description",
        "reference",
        "key_format",
        "measurement",
        "calibration",
        "tables",
        "uncertainty",
    )

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        r.only(self.FIELDS)
        measurement = r.mapping("measurement", {})
        measurement.only(TIMING_FIELDS)
        self.measurement = dict(measurement.data)
        self.threads = measurement.integer("threads", 1)
        self.warmup = measurement.integer("warmup", 10, minimum=0)
        self.repeats = measurement.integer("repeats", 100)
        self.rounds = measurement.integer("rounds", 10)
        self.statistic = measurement.string("statistic", "median", choices=("median", "min"))
        self.calibration = dict(r.raw("calibration", {}) or {})
        self.tables = self._read_tables(r, "batch sizes (integers >= 1)", None)
        self._caches: dict[int, tuple[dict, dict]] = {b: ({}, {}) for b in self.tables}

    def summary(self) -> dict[str, Any]:
        cal = {k: v for k, v in self.calibration.items() if k != "arch_ids"}
        return {
            **super().summary(),
            "key_format": self.key_format,
            "measurement": self.measurement,
            "entries": {b: len(t) for b, t in self.tables.items()},
            "calibration": cal,
        }

    def _check(self, batch: SpecBatch) -> None:
        super()._check(batch)
        for b in np.unique(batch.batch).astype(int).tolist():
            if b not in self._caches:
                raise UnsupportedSpecError(
                    f"hardware {self.name!r} has no table for batch {b}; allowed: "
                    f"{sorted(self.tables)} (build one with nas latency build-lut --batch)"
                )

    def _segment_entries(
        self, segment: SpecArrays | Part, first: bool, resolution: int, batch: int
    ) -> list[float]:
        return self._sum_exact(
            segment, first, self.tables[batch], self._caches[batch], f"batch {batch}"
        )
