"""Look-up-table models: a network's latency is the sum of its blocks' table entries.

`lut` (e.g. `note10`): once-for-all's measured Note10 tables, one per input resolution, keys
in the tables' own format (see keys.py). A resolution between two tabulated ones is
interpolated block by block: the block is looked up as it is in the same network at the two
nearest tabulated resolutions r0 < r < r1, and its latency is interpolated linearly in its
input pixel count, t = (P(r) - P(r0)) / (P(r1) - P(r0)) (linearly in r when the pixel counts
are equal). A resolution outside the tables is an error. A key missing from a table is an
error that lists the nearest keys; it is never read as zero.

All table models share: the block signature cache, the error for missing keys, and the fit of
`latency = scale x sum + overhead_ms + per_block_ms x blocks + per_layer_ms x layers` to
measurements (all zero but the scale unless calibrated).

Intervals of a `lut` whose entries carry their measured run-to-run spread (`spread_field:
std`: once-for-all's Note10 tables give count, mean and std per block) and whose profile
states no residuals: a network's variance is the sum of its blocks' variances (blocks timed
apart, so their noise is independent; interpolated like the means), scaled as the means are,
and the interval is the normal one around the prediction. It covers how one run of the
network varies if the sum of blocks were its latency; it does not cover how far the sum of
blocks is from the network timed end to end (no end-to-end measurement of that device is
shipped to take residuals from). A profile's `uncertainty.latency_ms` replaces it.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import yaml

from latency_models.arrays import Part, SpecArrays, SpecBatch, concatenated_ranges
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError, MissingEntryError, UnsupportedSpecError
from latency_models.keys import KEY_FORMATS, BlockSig, rescale
from latency_models.spec import NetworkSpec
from latency_models.uncertainty import DEFAULT_COVERAGE, Residuals

Table = dict[str, float]
# what a table's calibration fits: scale, overhead_ms, per_block_ms, per_layer_ms
TABLE_FIT_PARAMETERS = 4

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_table(
    reader: Reader, key: str, value: Any, base_dir: Path, field: str | None, files: list[Path]
) -> Table:
    """A table given inline (key: number or key: {field: number}) or as a YAML file path
    (appended to `files`, the files the model was read from)."""
    source = reader.source
    if isinstance(value, str):
        path = (base_dir / value).resolve()
        files.append(path)
        try:
            with open(path) as f:
                value = yaml.load(f, Loader=_Loader)
        except (OSError, yaml.YAMLError) as err:
            raise reader.error(key, f"cannot read table {path}: {err}") from None
        source = str(path)
    entries = Reader(value, source, "" if source != reader.source else reader.path(key) + ".")
    table: Table = {}
    for name, entry in entries.data.items():
        if isinstance(entry, Mapping):
            if field is None or field not in entry:
                raise entries.error(str(name), f"entry has no field {field!r}", list(entry))
            entry = entry[field]
        if isinstance(entry, bool) or not isinstance(entry, int | float) or entry < 0:
            raise entries.error(str(name), f"expected a latency in ms >= 0, got {entry!r}")
        table[str(name)] = float(entry)
    if not table:
        raise reader.error(key, "the table is empty")
    return table


def nearest_keys(key: str, table: Mapping[str, float], n: int = 3) -> list[str]:
    return difflib.get_close_matches(key, list(table), n=n, cutoff=0.0)


class BlockTableModel(CostModel):
    """Shared by the table kinds: blocks -> keys -> entries, summed and calibrated.

    Entries are cached per model instance (no global state) under the blocks' `generic` key
    strings, which the spec's arrays hold: strings hash once, so summing a known network is a
    few dictionary look-ups.
    """

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        self.key_format = r.string("key_format", "generic", choices=sorted(KEY_FORMATS))
        self._key = KEY_FORMATS[self.key_format]
        cal = r.mapping("calibration", {})
        self.scale = cal.number("scale", 1.0, positive=True)
        self.overhead_ms = cal.number("overhead_ms", 0.0)
        self.per_block_ms = cal.number("per_block_ms", 0.0)
        self.per_layer_ms = cal.number("per_layer_ms", 0.0)

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("latency_ms", "macs", "params")

    def _read_tables(self, reader: Reader, keys: str, field: str | None) -> dict[int, Table]:
        """The profile's `tables`, each keyed by an integer >= 1 (`keys` says what the keys
        are, for the error), inline or in YAML files beside the profile (read_table)."""
        tables = reader.mapping("tables")
        base_dir = Path(self.source).parent
        read: dict[int, Table] = {}
        for key, value in tables.data.items():
            if isinstance(key, bool) or not isinstance(key, int) or key < 1:
                raise tables.error(str(key), f"table keys must be {keys}")
            read[key] = read_table(tables, str(key), value, base_dir, field, self.files)
        return read

    def key_of(self, sig: BlockSig, first: bool) -> str:
        """The block's key in this table's format (the first block may be named apart)."""
        return self._key(sig, 0 if first else 1)

    def _lookup(self, table: Table, sig: BlockSig, first: bool, context: str) -> float:
        key = self.key_of(sig, first)
        try:
            return table[key]
        except KeyError:
            raise MissingEntryError(self.name, key, nearest_keys(key, table), context) from None

    @staticmethod
    def _entries(first: dict, rest: dict, keys: Sequence[Hashable]) -> list[float]:
        return [first[keys[0]], *map(rest.__getitem__, keys[1:])] if keys else []

    def _cached_entries(
        self,
        segment: SpecArrays | Part,
        first: bool,
        keys: Sequence[Hashable],
        caches: tuple[dict, dict],
        entry: Callable[[BlockSig, bool, Any], float],
    ) -> list[float]:
        """The entries of the segment's blocks under their cache `keys`; `first`: the
        segment holds its network's first block (cached apart: caches is (first, rest)).
        A block not seen yet is worked out once, as entry(sig, first block?, key)."""
        first_cache, rest = caches
        head = first_cache if first else rest
        try:
            return self._entries(head, rest, keys)
        except KeyError:  # blocks this model has not seen yet: look them up once
            for i, (sig, key) in enumerate(zip(segment.blocks, keys, strict=True)):
                cache = head if i == 0 else rest
                if key not in cache:
                    cache[key] = entry(sig, first and i == 0, key)
            return self._entries(head, rest, keys)

    def _sum_exact(
        self,
        segment: SpecArrays | Part,
        first: bool,
        table: Table,
        caches: tuple[dict, dict],
        context: str,
    ) -> list[float]:
        """The entries of a table that holds the segment's blocks as they are; `first`: the
        segment holds its network's first block."""
        return self._cached_entries(
            segment,
            first,
            segment.block_keys,
            caches,
            lambda sig, is_first, _: self._lookup(table, sig, is_first, context),
        )

    def _check(self, batch: SpecBatch) -> None:
        """Refuse what the tables cannot cost (subclasses add theirs): a network without
        blocks."""
        empty = np.flatnonzero(batch.block_counts == 0)
        if len(empty):
            name = batch.arrays[int(empty[0])].name
            raise UnsupportedSpecError(
                f"spec {name or '(unnamed)'!r} has no blocks; look-up tables are keyed "
                "by block (specs from space.to_spec have them; traced specs do not)"
            )

    def _segment_entries(
        self, segment: SpecArrays | Part, first: bool, resolution: int, batch: int
    ) -> list[float]:
        """The table entry of each of a segment's blocks, in a network of that input
        resolution and batch (subclasses pick the table)."""
        raise NotImplementedError

    def _block_sums(self, batch: SpecBatch) -> np.ndarray:
        """Per network, the sum of its blocks' entries. Each distinct segment, at its place
        (first or not) and its network's resolution and batch, is looked up once; every
        network then sums its blocks' entries in order with one reduction, so a network's
        sum does not depend on how its blocks were cut into segments."""
        self._check(batch)
        n = len(batch)
        if not len(batch.segment_ids):
            return np.zeros(n)
        owner = batch.segment_owner
        # one integer per place: (segment, first, resolution, batch), each factorised first
        resolutions, r_code = np.unique(batch.input_shapes[:, 1], return_inverse=True)
        batches, b_code = np.unique(batch.batch.astype(np.int64), return_inverse=True)
        r_code, b_code = r_code.ravel()[owner], b_code.ravel()[owner]
        place = batch.segment_ids * 2 + batch.segment_first
        place = (place * len(resolutions) + r_code) * len(batches) + b_code
        _, at, inverse = np.unique(place, return_index=True, return_inverse=True)
        entries = [
            self._segment_entries(
                batch.segments[int(batch.segment_ids[i])],
                bool(batch.segment_first[i]),
                int(resolutions[r_code[i]]),
                int(batches[b_code[i]]),
            )
            for i in at.tolist()
        ]
        lengths = np.fromiter(map(len, entries), np.int64, len(entries))
        stored = np.fromiter((e for seg in entries for e in seg), float, int(lengths.sum()))
        # the entries of every segment of every network, in order
        inverse = inverse.ravel()
        offset = (np.cumsum(lengths) - lengths)[inverse]
        flat = stored[concatenated_ranges(offset, lengths[inverse])]
        starts = np.cumsum(batch.block_counts) - batch.block_counts
        return np.add.reduceat(flat, starts)

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        sums = self._block_sums(batch)
        blocks = batch.block_counts.astype(float)
        latency = self.scale * sums + self.overhead_ms + self.per_block_ms * blocks
        return {"latency_ms": latency + self.per_layer_ms * batch.counts}

    def fit(
        self, specs: Sequence[NetworkSpec], measured: Mapping[str, np.ndarray], **options: Any
    ) -> Fit:
        """Fit scale, overhead_ms, per_block_ms and per_layer_ms (non-negative) to measured
        latency_ms, minimising the relative error."""
        if "latency_ms" not in measured or not len(specs):
            raise HardwareError("calibrating a table profile needs measured latency_ms values")
        y = np.asarray(measured["latency_ms"], float)
        sums, blocks, layers = self._fit_columns(specs)
        before = self.predict_arrays(specs)["latency_ms"]
        scale, overhead, per_block, per_layer = fit_scale_overhead(sums, blocks, layers, y)
        profile = dict(self.profile)
        calibration = dict(profile.get("calibration") or {})
        calibration.update(
            scale=scale, overhead_ms=overhead, per_block_ms=per_block, per_layer_ms=per_layer
        )
        profile["calibration"] = calibration
        after = scale * sums + overhead + per_block * blocks + per_layer * layers
        return Fit(
            profile, {"latency_ms_mape": mape(before, y)}, {"latency_ms_mape": mape(after, y)}
        )

    def _fit_columns(self, specs: Sequence[NetworkSpec]) -> tuple[np.ndarray, ...]:
        """Per spec: the table sum, blocks and layers, which the calibration weighs."""
        sums = self._block_sums(SpecBatch.of(specs))
        blocks = np.array([len(s.arrays.block_keys) for s in specs], float)
        layers = np.array([len(s.layers) for s in specs], float)
        return sums, blocks, layers

    def leave_one_out(self, specs: Sequence[NetworkSpec], measured: np.ndarray) -> np.ndarray:
        """Each spec's latency as a calibration (`fit`) on the other specs predicts it: the
        out-of-sample residuals of a calibration, at the cost of n tiny least squares."""
        sums, blocks, layers = self._fit_columns(specs)
        y = np.asarray(measured, float)
        out = np.empty(len(y))
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            coef = fit_scale_overhead(sums[keep], blocks[keep], layers[keep], y[keep])
            out[i] = np.dot(coef, [sums[i], 1.0, blocks[i], layers[i]])
        return out


def fit_scale_overhead(
    sums: np.ndarray, blocks: np.ndarray, layers: np.ndarray, measured: np.ndarray
) -> tuple[float, float, float, float]:
    """Non-negative (scale, overhead_ms, per_block_ms, per_layer_ms) minimising the squared
    relative error of scale x sums + overhead + per_block x blocks + per_layer x layers."""
    from scipy.optimize import lsq_linear  # fitting only

    a = np.stack([sums, np.ones_like(sums), blocks, layers], axis=1) / measured[:, None]
    # the scale stays positive: a table that does not count is not a table model
    lower, upper = [1e-3, 0.0, 0.0, 0.0], [np.inf] * 4
    coef = lsq_linear(a, np.ones_like(measured), bounds=(lower, upper)).x
    return tuple(float(f"{c:.5g}") for c in coef)  # type: ignore[return-value]


@dataclass(frozen=True)
class BlockSpread(Residuals):
    """Per network, the standard deviation (ms) of its summed blocks' run-to-run noise: a
    normal interval around each prediction (see the module docstring)."""

    sd: tuple[float, ...] = ()

    @property
    def is_exact(self) -> bool:
        return False

    def factors(self, coverage: float = DEFAULT_COVERAGE) -> tuple[float, float]:
        raise TypeError("a block spread's width differs per network: use bounds()")

    def bounds(
        self, predicted: np.ndarray, coverage: float = DEFAULT_COVERAGE
    ) -> tuple[np.ndarray, np.ndarray]:
        half = NormalDist().inv_cdf(0.5 + coverage / 2) * np.asarray(self.sd)
        return np.maximum(predicted - half, 0.0), predicted + half


class LUTModel(BlockTableModel):
    kind = "lut"
    description_of_kind = "measured per-block look-up tables, one per input resolution"
    FIELDS = (
        "name",
        "kind",
        "description",
        "reference",
        "key_format",
        "value_field",
        "batch",
        "tables",
        "calibration",
        "covers",
        "uncertainty",
        "spread_field",
    )

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        r.only(self.FIELDS)
        self.batch = r.integer("batch", 1)
        field = r.string("value_field", "mean")
        self.tables = self._read_tables(r, "input resolutions (integers)", field)
        if not self.tables:
            raise r.error("tables", "must name at least one resolution")
        self.resolutions = sorted(self.tables)
        # per resolution: entries of the first block, of the others (see BlockTableModel)
        self._exact: dict[int, tuple[dict, dict]] = {r: ({}, {}) for r in self.tables}
        self._between: dict[int, tuple[dict, dict]] = {}
        # the same tables holding each entry's variance, summed as the means are
        self._variances: LUTModel | None = None
        spread_field = r.string("spread_field", "")
        if spread_field:
            spreads = self._read_tables(r, "input resolutions (integers)", spread_field)
            if set(spreads) != set(self.tables):
                raise r.error("spread_field", "every table needs its spread")
            self._variances = copy.copy(self)
            self._variances.tables = {
                res: {k: v * v for k, v in table.items()} for res, table in spreads.items()
            }
            self._variances._exact = {res: ({}, {}) for res in self.tables}
            self._variances._between = {}

    def residuals(
        self, metric: str, batch: SpecBatch, options: Mapping[str, Any]
    ) -> Residuals | None:
        stated = super().residuals(metric, batch, options)
        if stated is not None or metric != "latency_ms" or self._variances is None:
            return stated
        sd = self.scale * np.sqrt(self._variances._block_sums(batch))
        return BlockSpread((), "run-to-run spread of the measured blocks", sd=tuple(sd))

    def interval_metrics(self) -> tuple[str, ...]:
        spread = ("latency_ms",) if self._variances is not None else ()
        return tuple(dict.fromkeys((*super().interval_metrics(), *spread)))

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "key_format": self.key_format,
            "batch": self.batch,
            "resolutions": self.resolutions,
            "entries": {r: len(t) for r, t in self.tables.items()},
            "calibration": {
                "scale": self.scale,
                "overhead_ms": self.overhead_ms,
                "per_block_ms": self.per_block_ms,
                "per_layer_ms": self.per_layer_ms,
            },
        }

    def input_resolutions(self) -> tuple[int, int]:
        """Between the smallest and the largest table: in between, block latencies are
        interpolated; outside, nothing was measured to interpolate from."""
        return self.resolutions[0], self.resolutions[-1]

    def _check(self, batch: SpecBatch) -> None:
        super()._check(batch)
        _, h, w = batch.input_shapes.T
        if np.any(h != w):
            raise UnsupportedSpecError(f"hardware {self.name!r}: tables are for square inputs")
        other = batch.batch[batch.batch != self.batch]
        if len(other):
            raise UnsupportedSpecError(
                f"hardware {self.name!r}: spec batch {int(other[0])} is not tabulated; "
                f"allowed: {self.batch}"
            )

    def _segment_entries(
        self, segment: SpecArrays | Part, first: bool, resolution: int, batch: int
    ) -> list[float]:
        r = resolution
        if r in self._exact:
            return self._sum_exact(segment, first, self.tables[r], self._exact[r], f"r={r}")
        if not self.resolutions[0] < r < self.resolutions[-1]:
            raise UnsupportedSpecError(
                f"hardware {self.name!r}: resolution {r} is outside its tables "
                f"({self.resolutions[0]}..{self.resolutions[-1]}); tabulated: {self.resolutions}"
            )
        # a block's size at another resolution depends on the strides before it
        keys = list(zip(segment.block_keys, segment.block_strides, strict=True))
        return self._cached_entries(
            segment,
            first,
            keys,
            self._between.setdefault(r, ({}, {})),
            lambda sig, is_first, key: self._interpolate(r, sig, is_first, key[1]),
        )

    def _interpolate(self, r: int, sig: BlockSig, first: bool, stride_before: int) -> float:
        r0 = max(x for x in self.resolutions if x < r)
        r1 = min(x for x in self.resolutions if x > r)
        sig0, p0 = rescale(sig, stride_before, r0)
        sig1, p1 = rescale(sig, stride_before, r1)
        _, p = rescale(sig, stride_before, r)
        v0 = self._lookup(self.tables[r0], sig0, first, f"r={r0}, to interpolate r={r}")
        v1 = self._lookup(self.tables[r1], sig1, first, f"r={r1}, to interpolate r={r}")
        t = (p - p0) / (p1 - p0) if p1 != p0 else (r - r0) / (r1 - r0)
        return v0 + t * (v1 - v0)
