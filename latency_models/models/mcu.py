"""Microcontroller model (int8 inference, TinyEngine-style runtime).

Per layer, with activations of `activation_bytes` (1 for int8):

* peak_sram_layerwise_kb: MCUNet's count. A layer needs its inputs, its output and every other
  tensor still alive (a residual input waiting for its add); the peak is the maximum over
  layers. Element-wise adds and multiplies write in place (their output is their input).
* peak_sram_kb: the scheduled estimate that constraints use. As the layer-wise count, but a
  depthwise convolution whose input is not read later runs in place (TinyEngine): it needs
  max(input, output) plus one padded channel of buffer instead of input + output; dense
  convolutions add their im2col buffer (two int16 columns). The activation peak is multiplied
  by sram_activation_factor (the planner's slack) and the fixed runtime_sram_kb is added.
* flash_kb: int8 weights, an int32 bias and a per-channel requantisation scale for every output
  channel of every conv/linear layer (BatchNorm is folded), plus the profile's runtime_flash_kb.
* latency_ms: sum over layers of MACs x cycles_per_mac[class] + elements x
  cycles_per_element[class] + layer_overhead_cycles, divided by the clock. Conv and linear
  layers pay cycles_per_element.output per output element (requantisation, store), pooling
  per input element, adds/multiplies/activations per output element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latency_models.arrays import CLASS_CODES, LAYER_CLASSES, OP_CODES, SpecBatch
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError
from latency_models.spec import NetworkSpec

MAC_CLASSES = ("conv", "pointwise", "depthwise", "grouped", "linear")
# "output": per output element of a conv/linear layer (requantisation and store);
# "pool" per input element, "elementwise" per output element of adds, multiplies, activations.
ELEMENT_CLASSES = ("output", "pool", "elementwise")
FIELDS = (
    "name",
    "kind",
    "description",
    "reference",
    "clock_mhz",
    "sram_kb",
    "flash_kb",
    "cycles_per_mac",
    "cycles_per_element",
    "layer_overhead_cycles",
    "runtime_sram_kb",
    "sram_activation_factor",
    "runtime_flash_kb",
    "quantization",
    "inplace_depthwise",
    "im2col_buffers",
    "calibration",
)
QUANT_FIELDS = ("activation_bytes", "weight_bytes", "bias_bytes", "scale_bytes_per_channel")
# element-wise ops write their output over their first input
_INPLACE = np.zeros(len(OP_CODES), bool)
_INPLACE[[OP_CODES["add"], OP_CODES["mul"], OP_CODES["act"]]] = True
_DENSE = np.zeros(len(LAYER_CLASSES), bool)  # classes with an im2col buffer
_DENSE[[CLASS_CODES["conv"], CLASS_CODES["pointwise"]]] = True


class MCUModel(CostModel):
    kind = "mcu"
    description_of_kind = "microcontroller: int8 SRAM/flash accounting, cycles per MAC"

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        r.only(FIELDS)
        self.clock_mhz = r.number("clock_mhz", positive=True)
        self.sram_kb = r.number("sram_kb", positive=True)
        self.flash_kb = r.number("flash_kb", positive=True)
        self.cycles_per_mac = r.numbers(
            "cycles_per_mac", allowed=MAC_CLASSES, required=MAC_CLASSES, positive=False
        )
        self.cycles_per_element = r.numbers(
            "cycles_per_element", allowed=ELEMENT_CLASSES, required=ELEMENT_CLASSES, positive=False
        )
        self.layer_overhead_cycles = r.number("layer_overhead_cycles", 0.0)
        self.runtime_sram_kb = r.number("runtime_sram_kb", 0.0)
        # the runtime's memory planner packs tensors with some slack (alignment, fragmentation)
        self.sram_activation_factor = r.number("sram_activation_factor", 1.0, positive=True)
        self.runtime_flash_kb = r.number("runtime_flash_kb", 0.0)
        q = r.mapping("quantization", {})
        q.only(QUANT_FIELDS)
        self.activation_bytes = q.number("activation_bytes", 1, positive=True)
        self.weight_bytes = q.number("weight_bytes", 1, positive=True)
        self.bias_bytes = q.number("bias_bytes", 4)
        self.scale_bytes = q.number("scale_bytes_per_channel", 8)
        self.inplace_depthwise = r.boolean("inplace_depthwise", True)
        self.im2col_buffers = r.boolean("im2col_buffers", True)
        r.mapping("calibration", {})  # provenance only; must be a mapping
        self._cpm = np.array([self.cycles_per_mac.get(c, 0.0) for c in LAYER_CLASSES])
        self._cpe = np.array(
            [self.cycles_per_element["output" if c in MAC_CLASSES else c] for c in LAYER_CLASSES]
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        return (
            "latency_ms",
            "macs",
            "params",
            "peak_sram_kb",
            "peak_sram_layerwise_kb",
            "flash_kb",
        )

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "clock_mhz": self.clock_mhz,
            "sram_kb": self.sram_kb,
            "flash_kb": self.flash_kb,
            "cycles_per_mac": self.cycles_per_mac,
            "cycles_per_element": self.cycles_per_element,
            "runtime_sram_kb": self.runtime_sram_kb,
            "sram_activation_factor": self.sram_activation_factor,
            "runtime_flash_kb": self.runtime_flash_kb,
        }

    # ----- the model -------------------------------------------------------------------------

    def _memory(self, b: SpecBatch) -> tuple[np.ndarray, np.ndarray]:
        """Peak activation bytes per spec: (scheduled, layer-wise), without the runtime."""
        op, cls_ = b.col("op"), b.col("cls")
        inputs, out, held = b.col("inputs_elems"), b.col("out_elems"), b.col("held_elems")
        out_term = np.where(_INPLACE[op], 0, out)
        layerwise = inputs + out_term + held
        scheduled = layerwise.astype(np.float64)
        if self.inplace_depthwise:
            # in place only when no later layer still reads the input (a residual would)
            dw = (cls_ == CLASS_CODES["depthwise"]) & (b.col("in_dies") == 1)
            pad = 2 * (b.col("kernel") // 2)
            buffer = (b.col("hin") + pad) * (b.col("win") + pad)
            inplace = np.maximum(b.col("in_elems"), out) + buffer + held
            scheduled = np.where(dw, inplace, scheduled)
        scheduled = scheduled * self.activation_bytes
        if self.im2col_buffers:
            dense = _DENSE[cls_]
            cols = (b.col("cin") // np.maximum(b.col("groups"), 1)) * b.col("kernel") ** 2
            scheduled = scheduled + np.where(dense, 2 * 2 * cols, 0)  # two int16 columns
        per_sample = b.batch
        return (
            b.max(scheduled) * per_sample,
            b.max(layerwise * self.activation_bytes) * per_sample,
        )

    def _flash_bytes(self, b: SpecBatch) -> np.ndarray:
        weighted = b.col("cls") <= CLASS_CODES["linear"]
        per_channel = (self.bias_bytes + self.scale_bytes) * b.col("cout")
        # other layers store nothing, except a const (a generator's input): int8 values
        stored = b.col("weights") * self.weight_bytes
        return b.sum(np.where(weighted, stored + per_channel, stored))

    def _cycles(self, b: SpecBatch) -> np.ndarray:
        cls_ = b.col("cls")
        elements = np.where(cls_ == CLASS_CODES["pool"], b.col("in_elems"), b.col("out_elems"))
        per_layer = b.col("macs") * self._cpm[cls_] + elements * self._cpe[cls_]
        return (b.sum(per_layer) + self.layer_overhead_cycles * b.counts) * b.batch

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        scheduled, layerwise = self._memory(batch)
        return {
            "latency_ms": self._cycles(batch) / (self.clock_mhz * 1e3),
            "peak_sram_kb": scheduled / 1024 * self.sram_activation_factor + self.runtime_sram_kb,
            "peak_sram_layerwise_kb": layerwise / 1024,
            "flash_kb": self._flash_bytes(batch) / 1024 + self.runtime_flash_kb,
        }

    # ----- calibration -----------------------------------------------------------------------

    def fit(
        self,
        specs: Sequence[NetworkSpec],
        measured: Mapping[str, np.ndarray],
        prior_weight: float = 0.03,
        **options: Any,
    ) -> Fit:
        """Fit cycles per MAC / element to measured latency_ms, and the runtime SRAM and flash
        to measured peak_sram_kb and flash_kb (any subset of the three).

        Latency: non-negative least squares on relative errors, pulled towards the current
        profile's values with weight `prior_weight` (a handful of published networks cannot
        pin down eight coefficients alone). SRAM: non-negative least squares on relative
        errors of factor x activations + runtime_sram_kb. Flash: runtime_flash_kb is the median
        of measured - model.
        """
        from scipy.optimize import nnls  # fitting only: predicting needs numpy alone

        if not specs:
            raise HardwareError("fit needs at least one measured network")
        batch = SpecBatch.of(specs)
        before = self.predict_arrays(specs)
        profile = dict(self.profile)
        calibration = dict(profile.get("calibration") or {})
        calibration.setdefault(
            "prior",
            {
                "cycles_per_mac": dict(self.cycles_per_mac),
                "cycles_per_element": dict(self.cycles_per_element),
            },
        )
        calibration["prior_weight"] = prior_weight
        profile["calibration"] = calibration
        errors_before: dict[str, float] = {}
        errors_after: dict[str, float] = {}
        if "latency_ms" in measured:
            y = np.asarray(measured["latency_ms"], float)
            coef = self._fit_cycles(batch, y, prior_weight)
            profile["cycles_per_mac"] = {c: _round(coef[c]) for c in MAC_CLASSES}
            profile["cycles_per_element"] = {c: _round(coef[c]) for c in ELEMENT_CLASSES}
            errors_before["latency_ms_mape"] = mape(before["latency_ms"], y)
        if "peak_sram_kb" in measured:
            y = np.asarray(measured["peak_sram_kb"], float)
            activations = self._memory(batch)[0] / 1024
            a = np.stack([activations, np.ones_like(activations)], axis=1) / y[:, None]
            (factor, runtime), _ = nnls(a, np.ones_like(y))
            profile["sram_activation_factor"] = _round(factor)
            profile["runtime_sram_kb"] = _round(runtime)
            errors_before["peak_sram_kb_mape"] = mape(before["peak_sram_kb"], y)
        if "flash_kb" in measured:
            y = np.asarray(measured["flash_kb"], float)
            weights = self._flash_bytes(batch) / 1024
            profile["runtime_flash_kb"] = _round(max(0.0, float(np.median(y - weights))))
            errors_before["flash_kb_mape"] = mape(before["flash_kb"], y)
        new = MCUModel(self.name, profile, self.source)
        after = new.predict_arrays(specs)
        for metric in ("latency_ms", "peak_sram_kb", "flash_kb"):
            if metric in measured:
                errors_after[f"{metric}_mape"] = mape(after[metric], measured[metric])
        return Fit(profile, errors_before, errors_after)

    def _fit_cycles(self, b: SpecBatch, y: np.ndarray, prior_weight: float) -> dict[str, float]:
        cls_ = b.col("cls")
        elements = np.where(cls_ == CLASS_CODES["pool"], b.col("in_elems"), b.col("out_elems"))
        names = [*MAC_CLASSES, *ELEMENT_CLASSES]
        weighted = cls_ <= CLASS_CODES["linear"]
        columns = []
        for name in names:
            if name == "output":
                work = np.where(weighted, b.col("out_elems"), 0)
            elif name in MAC_CLASSES:
                work = np.where(cls_ == CLASS_CODES[name], b.col("macs"), 0)
            else:
                work = np.where(cls_ == CLASS_CODES[name], elements, 0)
            columns.append(b.sum(work) * b.batch)
        # cycles = X @ theta + overhead; in ms: divide by clock
        x = np.stack(columns, axis=1) / (self.clock_mhz * 1e3)
        offset = self.layer_overhead_cycles * b.counts * b.batch / (self.clock_mhz * 1e3)
        # a profile's calibration.prior (the values before any fit) keeps refits repeatable
        stored = self.profile.get("calibration", {}).get("prior", {})
        merged = {
            **self.cycles_per_mac,
            **self.cycles_per_element,
            **stored.get("cycles_per_mac", {}),
            **stored.get("cycles_per_element", {}),
        }
        prior = np.array([float(merged[n]) for n in names])
        scale = np.where(prior > 0, prior, 1.0)  # fit theta / prior: all unknowns of order 1
        a = x * scale / y[:, None]
        rhs = (y - offset) / y
        reg = prior_weight * np.eye(len(names))
        reg_rhs = prior_weight * np.where(prior > 0, 1.0, 0.0)
        from scipy.optimize import nnls

        sol, _ = nnls(np.vstack([a, reg]), np.concatenate([rhs, reg_rhs]))
        return dict(zip(names, (sol * scale).tolist(), strict=True))


def _round(value: float) -> float:
    return float(f"{value:.4g}")
