"""GPU roofline model.

Per layer, at batch B and a precision p:

    flops   = 2 x MACs x B            (pooling and element-wise: one op per element)
    bytes   = (inputs + output) x B x bytes(p) + weights x bytes(p)
    compute = (flops + half_saturation) / (peak[p] x efficiency[class])
    memory  = bytes / (bandwidth x memory_efficiency)
    time    = max(compute, memory) + kernels x kernel_launch_us

summed over layers, plus network_overhead_us. Dense and pointwise convolutions and linear
layers run on tensor cores at `peak_tflops[p]`; depthwise/grouped convolutions, pooling and
element-wise layers do not, and run at `vector_tflops[p]` (the CUDA-core rate). A small layer
cannot fill the GPU: `half_saturation_gflop` is the work at which a layer reaches half its
class's efficiency (time = (flops + half) / rate), so tiny layers cost about a fixed time and
only large ones approach the peak. With `fuse_bn_act` (TensorRT/cuDNN inference), BatchNorm
and the activation are part of the layer's kernel; without it each adds a kernel and a pass
over the output. See profiles/README.md for where each number comes from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latency_models.arrays import CLASS_CODES, LAYER_CLASSES, SpecBatch
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError, OptionError
from latency_models.spec import NetworkSpec

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
PRECISION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp8": 1}
TENSOR_CLASSES = ("conv", "pointwise", "linear")
FIELDS = (
    "name",
    "kind",
    "description",
    "reference",
    "peak_tflops",
    "vector_tflops",
    "memory_bandwidth_gbs",
    "kernel_launch_us",
    "network_overhead_us",
    "default_precision",
    "efficiency",
    "memory_efficiency",
    "half_saturation_gflop",
    "fuse_bn_act",
    "calibration",
)
_TENSOR = np.array([c in TENSOR_CLASSES for c in LAYER_CLASSES])


class GPUModel(CostModel):
    kind = "gpu"
    description_of_kind = "GPU roofline: max(compute, memory) per layer plus launch overhead"

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        r.only(FIELDS)
        self.peak_tflops = r.numbers("peak_tflops", allowed=PRECISIONS)
        self.vector_tflops = r.numbers(
            "vector_tflops", allowed=PRECISIONS, required=list(self.peak_tflops)
        )
        self.bandwidth_gbs = r.number("memory_bandwidth_gbs", positive=True)
        self.launch_us = r.number("kernel_launch_us")
        self.network_overhead_us = r.number("network_overhead_us", 0.0)
        self.default_precision = r.string(
            "default_precision", next(iter(self.peak_tflops)), choices=list(self.peak_tflops)
        )
        self.efficiency = r.numbers(
            "efficiency", allowed=LAYER_CLASSES, required=LAYER_CLASSES, positive=True
        )
        for cls_name, value in self.efficiency.items():
            if value > 1:
                raise r.error(f"efficiency.{cls_name}", f"must be <= 1, got {value}")
        self.memory_efficiency = r.number("memory_efficiency", 1.0, positive=True)
        if self.memory_efficiency > 1:
            raise r.error("memory_efficiency", f"must be <= 1, got {self.memory_efficiency}")
        half = r.numbers(
            "half_saturation_gflop",
            {"tensor": 0.0, "vector": 0.0},
            allowed=("tensor", "vector"),
            required=("tensor", "vector"),
            positive=False,
        )
        self.half_saturation_gflop = half
        self.fuse_bn_act = r.boolean("fuse_bn_act", True)
        r.mapping("calibration", {})

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("latency_ms", "macs", "params")

    def options(self) -> dict[str, tuple[Any, ...]]:
        others = tuple(p for p in self.peak_tflops if p != self.default_precision)
        return {"precision": (self.default_precision, *others)}

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        precision = options.get("precision")
        if precision is not None and not isinstance(precision, str):
            raise OptionError(
                self.name, "precision", f"must be a name, got {precision!r}", list(self.peak_tflops)
            )
        if precision is not None and precision not in self.peak_tflops:
            reason = (
                f"{self.name} has no {precision} support in its profile"
                if precision in PRECISIONS
                else f"unknown precision {precision!r}"
            )
            raise OptionError(self.name, "precision", reason, list(self.peak_tflops))
        return super().check_options(options)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "peak_tflops": self.peak_tflops,
            "vector_tflops": self.vector_tflops,
            "memory_bandwidth_gbs": self.bandwidth_gbs,
            "kernel_launch_us": self.launch_us,
            "efficiency": self.efficiency,
            "memory_efficiency": self.memory_efficiency,
            "half_saturation_gflop": self.half_saturation_gflop,
        }

    # ----- the model -------------------------------------------------------------------------

    def _work(self, b: SpecBatch, precision: str) -> dict[str, np.ndarray]:
        """Per-layer work that does not depend on the fitted parameters."""
        cls_ = b.col("cls")
        samples = b.per_layer(b.batch)
        elem_bytes = PRECISION_BYTES[precision]
        weighted = cls_ <= CLASS_CODES["linear"]
        pool = cls_ == CLASS_CODES["pool"]
        ops = np.where(weighted, 2.0 * b.col("macs"), 0.0)
        ops = (
            ops
            + np.where(pool, b.col("in_elems"), 0)
            + np.where(~weighted & ~pool, b.col("out_elems"), 0)
        )
        flops = ops * samples
        traffic = (b.col("inputs_elems") + b.col("out_elems")) * samples * elem_bytes
        traffic = traffic + b.col("weights") * elem_bytes
        kernels = np.ones(len(cls_))
        if not self.fuse_bn_act:
            extra = b.col("bn") + (b.col("act") > 0)
            kernels = kernels + extra
            traffic = traffic + extra * 2 * b.col("out_elems") * samples * elem_bytes
        return {"cls": cls_, "flops": flops, "bytes": traffic, "kernels": kernels}

    def _latency_ms(
        self, b: SpecBatch, work: Mapping[str, np.ndarray], precision: str, params: Mapping
    ) -> np.ndarray:
        cls_ = work["cls"]
        tensor = _TENSOR[cls_]
        peak = np.where(tensor, self.peak_tflops[precision], self.vector_tflops[precision]) * 1e12
        eff = np.array([params["efficiency"][c] for c in LAYER_CLASSES])[cls_]
        half = np.where(tensor, params["half_tensor"], params["half_vector"]) * 1e9
        compute = (work["flops"] + half) / (peak * eff)
        memory = work["bytes"] / (self.bandwidth_gbs * 1e9 * params["memory_efficiency"])
        seconds = np.maximum(compute, memory) + work["kernels"] * params["launch_us"] * 1e-6
        return b.sum(seconds) * 1e3 + params["network_overhead_us"] * 1e-3

    def _params(self) -> dict[str, Any]:
        return {
            "efficiency": self.efficiency,
            "memory_efficiency": self.memory_efficiency,
            "launch_us": self.launch_us,
            "network_overhead_us": self.network_overhead_us,
            "half_tensor": self.half_saturation_gflop["tensor"],
            "half_vector": self.half_saturation_gflop["vector"],
        }

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        precision = options["precision"]
        work = self._work(batch, precision)
        return {"latency_ms": self._latency_ms(batch, work, precision, self._params())}

    # ----- calibration -----------------------------------------------------------------------

    def fit(
        self,
        specs: Sequence[NetworkSpec],
        measured: Mapping[str, np.ndarray],
        precisions: Sequence[str] | None = None,
        prior_weight: float = 0.1,
        **options: Any,
    ) -> Fit:
        """Fit the efficiencies, memory efficiency, launch and network overheads and the
        half-saturation work to measured latency_ms (one precision per spec, default the
        profile's). Least squares on log latency, with a weak pull towards the current values
        (in log space) so that classes the measurements do not exercise keep their prior."""
        from scipy.optimize import least_squares  # fitting only

        if "latency_ms" not in measured or not len(specs):
            raise HardwareError("calibrating a GPU profile needs measured latency_ms values")
        y = np.asarray(measured["latency_ms"], float)
        precisions = list(precisions or [self.default_precision] * len(specs))
        for p in set(precisions):
            self.check_options({"precision": p})
        groups = []
        for p in sorted(set(precisions)):
            idx = np.array([i for i, q in enumerate(precisions) if q == p])
            sub = SpecBatch.of([specs[i] for i in idx])
            groups.append((p, idx, sub, self._work(sub, p)))
        names = [f"eff.{c}" for c in LAYER_CLASSES] + [
            "memory_efficiency",
            "launch_us",
            "network_overhead_us",
            "half_tensor",
            "half_vector",
        ]
        start = self._params()
        prior = np.log(
            np.maximum(
                [start["efficiency"][c] for c in LAYER_CLASSES]
                + [start[k] for k in names[len(LAYER_CLASSES) :]],
                1e-6,
            )
        )
        upper = np.array([0.0] * (len(LAYER_CLASSES) + 1) + [np.log(1e5)] * 4)
        lower = np.array([np.log(1e-6)] * len(names))

        def unpack(theta: np.ndarray) -> dict[str, Any]:
            v = np.exp(theta)
            return {
                "efficiency": dict(zip(LAYER_CLASSES, v[: len(LAYER_CLASSES)], strict=True)),
                **dict(zip(names[len(LAYER_CLASSES) :], v[len(LAYER_CLASSES) :], strict=True)),
            }

        def predict(theta: np.ndarray) -> np.ndarray:
            out = np.empty(len(y))
            params = unpack(theta)
            for p, idx, sub, work in groups:
                out[idx] = self._latency_ms(sub, work, p, params)
            return out

        def residuals(theta: np.ndarray) -> np.ndarray:
            fit_part = np.log(predict(theta)) - np.log(y)
            return np.concatenate([fit_part, prior_weight * (theta - prior)])

        before = predict(prior)
        x0 = np.clip(prior, lower + 1e-9, upper - 1e-9)
        result = least_squares(residuals, x0, bounds=(lower, upper), method="trf")
        params = unpack(result.x)
        after = predict(result.x)
        profile = dict(self.profile)
        profile["efficiency"] = {c: _round(params["efficiency"][c]) for c in LAYER_CLASSES}
        profile["memory_efficiency"] = _round(params["memory_efficiency"])
        profile["kernel_launch_us"] = _round(params["launch_us"])
        profile["network_overhead_us"] = _round(params["network_overhead_us"])
        profile["half_saturation_gflop"] = {
            "tensor": _round(params["half_tensor"]),
            "vector": _round(params["half_vector"]),
        }
        log.debug("%s: least squares: %d evaluations, %s", self.name, result.nfev, result.message)
        return Fit(
            profile, {"latency_ms_mape": mape(before, y)}, {"latency_ms_mape": mape(after, y)}
        )


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")
