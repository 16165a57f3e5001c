"""GPU roofline model, for the runtime that runs the network (eager PyTorch, torch.compile,
TensorRT).

Per layer, at batch B and a precision p:

    flops   = 2 x MACs x B            (pooling and element-wise: one op per element)
    bytes   = (inputs + output) x B x bytes(p) + weights x bytes(p)
    compute = (flops + half_saturation) / (peak[p] x efficiency[class] x fill)
    memory  = bytes / (bandwidth x memory_efficiency)
    gpu     = max(compute, memory) + transposes + kernels x kernel_launch_us
    host    = kernels x op_overhead_us

where `transposes` is the time of the passes that convert an NCHW network to channels-last
for the tensor cores (16 and 8 bits, TF32), per convolution or once for the network, as the
runtime does it (`layout_conversion`).

At fp32 (CUDA cores), a dense 3x3 stride-1 convolution's flops are divided by
`winograd_speedup`: cuDNN computes it with Winograd's transform.

Dense and pointwise convolutions and linear layers run on tensor cores at `peak_tflops[p]`;
depthwise/grouped convolutions, pooling and element-wise layers run at `vector_tflops[p]`
(the CUDA-core rate). A small layer cannot fill the GPU: `half_saturation_gflop` is the work
at which a layer reaches half its class's efficiency; with `sm_count`, a tensor-core layer's
output tiles also fill the SMs in whole waves (`fill` = tiles / (waves x SMs)).

The runtime decides how many kernels a layer is, and what each costs the host:
* `epilogue: separate` (eager PyTorch): BatchNorm, the activation, a residual add and a
  standalone activation are each a kernel of their own, with a pass over the tensor;
* `fused` (torch.compile): what follows a convolution (BatchNorm, activation, add) is one
  generated kernel and one pass;
* `in_conv` (TensorRT): BatchNorm is folded and activation and add run in the
  convolution's kernel.
It also decides where an NCHW network becomes channels-last: `layout_conversion: per_conv`
(eager: cuDNN transposes each dense or grouped convolution's input and output, two more
kernels) or `once` (torch.compile's layout optimisation, TensorRT: nothing per layer); the
default goes with the epilogue (separate: per_conv).
The host issues kernels one after another (`op_overhead_us` each: framework dispatch, the
module call) while the GPU runs them; a kernel starts when it is issued and its predecessor
is done, so the network takes max over k of (host time to issue kernel k + GPU time from k
on), plus `network_overhead_us`. With a fast GPU and a small batch the host sets the pace.
See profiles/README.md for the assumptions and profiles/gpu/ for the calibrations.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latency_models.arrays import CLASS_CODES, LAYER_CLASSES, OP_CODES, SpecBatch
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError, OptionError, ProfileError
from latency_models.spec import NetworkSpec
from latency_models.uncertainty import Residuals

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
PRECISION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp8": 1}
TENSOR_CLASSES = ("conv", "pointwise", "linear")
EPILOGUES = ("separate", "fused", "in_conv")
LAYOUTS = ("nhwc", "nchw")  # channels_last, or PyTorch's default
HALF_PRECISIONS = ("fp16", "bf16", "int8", "fp8")
# Convolutions on tensor cores (16 and 8 bits, and TF32) run channels-last: an NCHW tensor is
# transposed
CHANNELS_LAST_PRECISIONS = (*HALF_PRECISIONS, "tf32")
RUNTIME_FIELDS = ("epilogue", "kernel_launch_us", "op_overhead_us", "network_overhead_us")
# Where an NCHW network becomes channels-last for the tensor cores: around every convolution
# (eager PyTorch: cuDNN transposes each one's input and output), or once for the whole
# network (torch.compile's layout optimisation, TensorRT's format selection)
LAYOUT_CONVERSIONS = ("per_conv", "once")
# What users time by default: eager PyTorch. Profiles without `runtimes` describe one runtime.
DEFAULT_RUNTIME = "eager"
# Another GPU's memory against this profile's datasheet: 1 in a profile (the scaled bandwidth
# is written instead). Fitted only when adapting to a GPU whose memory may be faster than the
# base's: memory_efficiency cannot pass 1.
DEVICE_SCALES = {"bandwidth_scale": 1.0}
FIELDS = (
    "name",
    "kind",
    "description",
    "reference",
    "peak_tflops",
    "vector_tflops",
    "memory_bandwidth_gbs",
    "default_precision",
    "efficiency",
    "memory_efficiency",
    "half_saturation_gflop",
    "sm_count",
    "tile",
    "winograd_speedup",
    "layout",
    "layout_costs",
    "runtime",
    "runtimes",
    "calibration",
    "uncertainty",  # residuals behind prediction intervals (latency_models.uncertainty)
    # a profile of one runtime (older profiles): these three instead of `runtimes`
    "kernel_launch_us",
    "network_overhead_us",
    "fuse_bn_act",
)
# A GPU's error depends on the batch (at batch 1 the host's costs set the pace, and they
# belong to the harness more than to the GPU), so its `uncertainty` block may hold residuals
# per batch range, under `METRIC@RANGE` (`latency_ms@batch1`); a plain `latency_ms` serves
# every batch whose range has none of its own. Ranges: name -> (lowest, highest batch).
BATCH_RANGES = {"batch1": (1, 1), "batch2-31": (2, 31), "batch32+": (32, 1 << 30)}
_TENSOR = np.array([c in TENSOR_CLASSES for c in LAYER_CLASSES])
_WEIGHTED = CLASS_CODES["linear"]  # classes up to linear carry weights (conv, ..., linear)


def batch_range(batch: int) -> str:
    """The name of the BATCH_RANGES entry that holds `batch`."""
    return next(name for name, (low, high) in BATCH_RANGES.items() if low <= batch <= high)


def uncertainty_key(metric: str, batch_range_name: str) -> str:
    """The `uncertainty` entry of a metric's residuals in one batch range."""
    return f"{metric}@{batch_range_name}"


@dataclass(frozen=True)
class Runtime:
    """How one runtime runs a network: which ops share a kernel, and what a kernel costs."""

    epilogue: str  # separate | fused | in_conv
    kernel_launch_us: float  # GPU: the minimum time of a kernel (launch and tail)
    op_overhead_us: float  # host: issuing one kernel (framework dispatch, module call)
    network_overhead_us: float  # once per forward: synchronisation, the call itself
    layout_conversion: str = "per_conv"  # NCHW on tensor cores: see LAYOUT_CONVERSIONS

    def to_profile(self) -> dict[str, Any]:
        return {
            "epilogue": self.epilogue,
            "kernel_launch_us": _round(self.kernel_launch_us),
            "op_overhead_us": _round(self.op_overhead_us),
            "network_overhead_us": _round(self.network_overhead_us),
            "layout_conversion": self.layout_conversion,
        }


class GPUModel(CostModel):
    kind = "gpu"
    description_of_kind = (
        "GPU roofline per runtime: max(compute, memory) per layer, kernels issued by the host"
    )

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        r.only(FIELDS)
        self.peak_tflops = r.numbers("peak_tflops", allowed=PRECISIONS)
        self.vector_tflops = r.numbers(
            "vector_tflops", allowed=PRECISIONS, required=list(self.peak_tflops)
        )
        self.bandwidth_gbs = r.number("memory_bandwidth_gbs", positive=True)
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
        self.sm_count = r.integer("sm_count", 0, minimum=0)  # 0: no wave quantization
        tile = r.raw("tile", [128, 128])
        if not (
            isinstance(tile, list)
            and len(tile) == 2
            and all(isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in tile)
        ):
            raise r.error("tile", f"expected [rows, columns] of an output tile, got {tile!r}")
        self.tile = (int(tile[0]), int(tile[1]))
        self.winograd_speedup = r.number("winograd_speedup", 1.0, positive=True)
        if self.winograd_speedup < 1:
            raise r.error("winograd_speedup", f"must be >= 1, got {self.winograd_speedup}")
        self.default_layout = r.string("layout", "nhwc", choices=LAYOUTS)
        self.layout_costs = r.numbers(
            "layout_costs",
            {"nchw_transpose": 1.0, "nhwc_depthwise": 1.0},
            allowed=("nchw_transpose", "nhwc_depthwise"),
            required=("nchw_transpose", "nhwc_depthwise"),
            positive=False,
        )
        self.runtimes = self._read_runtimes(r)
        self.default_runtime = r.string(
            "runtime",
            DEFAULT_RUNTIME if DEFAULT_RUNTIME in self.runtimes else next(iter(self.runtimes)),
            choices=list(self.runtimes),
        )
        r.mapping("calibration", {})
        self._check_uncertainty_keys()

    def _check_uncertainty_keys(self) -> None:
        allowed = [
            *self.metrics[:1],
            *(uncertainty_key(m, b) for m in self.metrics[:1] for b in BATCH_RANGES),
        ]
        for key in self.uncertainty:
            if key not in allowed:
                raise ProfileError(self.source, f"uncertainty.{key}", "unknown entry", allowed)

    def _read_runtimes(self, r: Reader) -> dict[str, Runtime]:
        legacy = [
            k for k in ("kernel_launch_us", "network_overhead_us", "fuse_bn_act") if k in r.data
        ]
        if "runtimes" not in r.data:  # one runtime: fused kernels (TensorRT-like) or eager
            fused = r.boolean("fuse_bn_act", True)
            return {
                "tensorrt" if fused else "eager": Runtime(
                    "in_conv" if fused else "separate",
                    r.number("kernel_launch_us"),
                    0.0,
                    r.number("network_overhead_us", 0.0),
                    "once" if fused else "per_conv",
                )
            }
        if legacy:
            raise r.error(legacy[0], "give it per runtime, under `runtimes`")
        table = r.mapping("runtimes")
        runtimes = {}
        for name in table.data:
            entry = table.mapping(str(name))
            entry.only((*RUNTIME_FIELDS, "layout_conversion"))
            epilogue = entry.string("epilogue", choices=EPILOGUES)
            runtimes[str(name)] = Runtime(
                epilogue,
                entry.number("kernel_launch_us"),
                entry.number("op_overhead_us", 0.0),
                entry.number("network_overhead_us", 0.0),
                # default: eager's separate kernels go with eager's per-conv transposes
                entry.string(
                    "layout_conversion",
                    "per_conv" if epilogue == "separate" else "once",
                    choices=LAYOUT_CONVERSIONS,
                ),
            )
        if not runtimes:
            raise r.error("runtimes", "must name at least one runtime")
        return runtimes

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("latency_ms", "macs", "params")

    def residuals(
        self, metric: str, batch: SpecBatch, options: Mapping[str, Any]
    ) -> Residuals | None:
        """The residuals of the batch's range (BATCH_RANGES), else the profile's plain set.
        Networks of several ranges in one call share the pooled residuals of their ranges."""
        chosen = []
        for size in np.unique(batch.batch):
            key = uncertainty_key(metric, batch_range(int(size)))
            residuals = self.uncertainty.get(key) or self.uncertainty.get(metric)
            if residuals is None:
                return None
            if residuals not in chosen:
                chosen.append(residuals)
        if len(chosen) == 1:
            return chosen[0]
        pooled = tuple(sorted(v for r in chosen for v in r.log_ratios))
        fitted = max(r.fitted_parameters for r in chosen)
        return Residuals(pooled, "; ".join(r.rows for r in chosen), fitted)

    def interval_metrics(self) -> tuple[str, ...]:
        stated = {key.split("@")[0] for key in self.uncertainty}
        return tuple(m for m in self.metrics if m in stated)

    def options(self) -> dict[str, tuple[Any, ...]]:
        precisions = tuple(p for p in self.peak_tflops if p != self.default_precision)
        runtimes = tuple(r for r in self.runtimes if r != self.default_runtime)
        layouts = tuple(lay for lay in LAYOUTS if lay != self.default_layout)
        return {
            "precision": (self.default_precision, *precisions),
            "runtime": (self.default_runtime, *runtimes),
            "layout": (self.default_layout, *layouts),
        }

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key, known, everything in (
            ("precision", self.peak_tflops, PRECISIONS),
            ("runtime", self.runtimes, ("eager", "compiled", "tensorrt")),
        ):
            value = options.get(key)
            if value is not None and not isinstance(value, str):
                raise OptionError(self.name, key, f"must be a name, got {value!r}", list(known))
            if value is not None and value not in known:
                reason = (
                    f"{self.name} has no {value} {'support' if key == 'precision' else 'runtime'} "
                    "in its profile"
                    if value in everything
                    else f"unknown {key} {value!r}"
                )
                raise OptionError(self.name, key, reason, list(known))
        return super().check_options(options)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "peak_tflops": self.peak_tflops,
            "vector_tflops": self.vector_tflops,
            "memory_bandwidth_gbs": self.bandwidth_gbs,
            "efficiency": self.efficiency,
            "memory_efficiency": self.memory_efficiency,
            "half_saturation_gflop": self.half_saturation_gflop,
            "sm_count": self.sm_count,
            "winograd_speedup": self.winograd_speedup,
            "layout_costs": self.layout_costs,
            "runtimes": {name: rt.to_profile() for name, rt in self.runtimes.items()},
        }

    # ----- the model -------------------------------------------------------------------------

    def _work(
        self, b: SpecBatch, precision: str, runtime: Runtime, layout: str
    ) -> dict[str, np.ndarray]:
        """Per-layer work that does not depend on the fitted parameters."""
        cls_, op = b.col("cls"), b.col("op")
        samples = b.per_layer(b.batch)
        elem_bytes = PRECISION_BYTES[precision]
        weighted = cls_ <= _WEIGHTED
        pool = cls_ == CLASS_CODES["pool"]
        ops = np.where(weighted, 2.0 * b.col("macs"), 0.0)
        ops = (
            ops
            + np.where(pool, b.col("in_elems"), 0)
            + np.where(~weighted & ~pool, b.col("out_elems"), 0)
        )
        # fp32 on CUDA cores: cuDNN computes a dense 3x3 stride-1 convolution with Winograd's
        # transform, in `winograd_speedup` times fewer multiplies
        if precision == "fp32":
            winograd = (cls_ == CLASS_CODES["conv"]) & (b.col("kernel") == 3)
            winograd = winograd & (b.col("stride") == 1)
            ops = np.where(winograd, ops / self.winograd_speedup, ops)
        out_elems = b.col("out_elems") * samples
        traffic = (b.col("inputs_elems") * samples + out_elems) * elem_bytes
        traffic = traffic + b.col("weights") * elem_bytes
        kernels = np.ones(len(cls_))
        # what follows a convolution or linear layer: BatchNorm and the activation
        after = np.where(weighted, b.col("bn") + (b.col("act") > 0), 0)
        # a residual add or a standalone activation joins the kernel before it when fused
        joins = (op == OP_CODES["add"]) | (op == OP_CODES["act"])
        if runtime.epilogue == "separate":
            kernels = kernels + after
            traffic = traffic + after * 2 * out_elems * elem_bytes
        else:
            if runtime.epilogue == "fused":
                kernels = kernels + (after > 0)
                traffic = traffic + (after > 0) * 2 * out_elems * elem_bytes
            kernels = np.where(joins, 0, kernels)
            # the joined add still reads its other operand; the output pass is the producer's
            other = (b.col("inputs_elems") - b.col("in_elems")) * samples * elem_bytes
            traffic = np.where(joins, other, traffic)
        # NCHW on tensor cores, converted per convolution (eager): each dense k x k or grouped
        # convolution (cuDNN's) transposes its input and output (two more kernels and
        # passes); `layout_costs.nchw_transpose` scales the passes. A 1x1 convolution is a
        # GEMM in either layout, and PyTorch's own depthwise kernels read NCHW. Converted
        # once (compiled, TensorRT), the network runs channels-last and pays nothing per layer.
        transposed = np.zeros(len(cls_))
        per_conv = runtime.layout_conversion == "per_conv"
        if layout == "nchw" and precision in CHANNELS_LAST_PRECISIONS and per_conv:
            convs = (cls_ == CLASS_CODES["conv"]) | (cls_ == CLASS_CODES["grouped"])
            in_out = (b.col("in_elems") * samples + out_elems) * elem_bytes
            transposed = np.where(convs, 2 * in_out, 0)
            kernels = kernels + 2 * convs
        # channels_last depthwise kernels at 16/8 bits: `layout_costs.nhwc_depthwise` scales
        # their efficiency
        nhwc_depthwise = (cls_ == CLASS_CODES["depthwise"]) & (
            layout == "nhwc" and precision in HALF_PRECISIONS
        )
        tiles = np.ones(len(cls_))
        if self.sm_count:  # output tiles of the implicit GEMM: (B x H x W) x channels
            rows = samples * b.col("hout") * b.col("wout")
            tiles = np.ceil(rows / self.tile[0]) * np.ceil(b.col("cout") / self.tile[1])
        return {
            "cls": cls_,
            "flops": ops * samples,
            "bytes": traffic,
            "transposed": transposed,  # bytes the transposes read and write
            "nhwc_depthwise": nhwc_depthwise,
            "kernels": kernels,
            "tiles": tiles,
        }

    def _fill(self, work: Mapping[str, np.ndarray]) -> np.ndarray:
        """The share of the SMs a tensor-core layer keeps busy over its waves (1: no
        quantization modelled, or a layer of CUDA-core work)."""
        if not self.sm_count:
            return np.ones(len(work["cls"]))
        tiles = work["tiles"]
        waves = np.ceil(tiles / self.sm_count)
        return np.where(_TENSOR[work["cls"]], tiles / (waves * self.sm_count), 1.0)

    def _latency_ms(
        self, b: SpecBatch, work: Mapping[str, np.ndarray], precision: str, params: Mapping
    ) -> np.ndarray:
        cls_ = work["cls"]
        tensor = _TENSOR[cls_]
        peak = np.where(tensor, self.peak_tflops[precision], self.vector_tflops[precision]) * 1e12
        eff = np.array([params["efficiency"][c] for c in LAYER_CLASSES])[cls_]
        half = np.where(tensor, params["half_tensor"], params["half_vector"]) * 1e9
        compute = (work["flops"] + half) / (peak * eff * self._fill(work))
        bandwidth = self.bandwidth_gbs * 1e9 * params["bandwidth_scale"]
        bandwidth = bandwidth * params["memory_efficiency"]
        busy = np.maximum(compute, work["bytes"] / bandwidth)
        # the transposes are kernels of their own: their passes add to the convolution's time
        busy = busy + params["nchw_transpose"] * work["transposed"] / bandwidth
        # channels-last depthwise kernels run at their own speed (faster or slower)
        busy = np.where(work["nhwc_depthwise"], busy / params["nhwc_depthwise"], busy)
        gpu = busy + work["kernels"] * params["launch_us"] * 1e-6
        host = work["kernels"] * params["op_overhead_us"] * 1e-6
        return _pipeline(b, host, gpu) * 1e3 + params["network_overhead_us"] * 1e-3

    def _params(self, runtime: str) -> dict[str, Any]:
        rt = self.runtimes[runtime]
        return {
            "efficiency": self.efficiency,
            "memory_efficiency": self.memory_efficiency,
            "launch_us": rt.kernel_launch_us,
            "op_overhead_us": rt.op_overhead_us,
            "network_overhead_us": rt.network_overhead_us,
            "half_tensor": self.half_saturation_gflop["tensor"],
            "half_vector": self.half_saturation_gflop["vector"],
            **self.layout_costs,
            **DEVICE_SCALES,
        }

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        precision, runtime = options["precision"], options["runtime"]
        work = self._work(batch, precision, self.runtimes[runtime], options["layout"])
        return {"latency_ms": self._latency_ms(batch, work, precision, self._params(runtime))}

    # ----- calibration -----------------------------------------------------------------------

    def fit(
        self,
        specs: Sequence[NetworkSpec],
        measured: Mapping[str, np.ndarray],
        precisions: Sequence[str] | None = None,
        runtimes: Sequence[str] | None = None,
        layouts: Sequence[str] | None = None,
        prior_weight: float = 0.1,
        free: Sequence[str] | None = None,
        rank_groups: Sequence[Hashable | None] | None = None,
        rank_weight: float = 0.0,
        **options: Any,
    ) -> Fit:
        """Fit the profile's free parameters to measured latency_ms (one precision and one
        runtime per spec, default the profile's): the efficiencies, memory efficiency and
        half-saturation work, and per runtime measured its launch, host and network
        overheads. Least squares on log latency, with a pull of `prior_weight` towards the
        current values (in log space), so that what the measurements do not exercise keeps
        its prior. `free` names the parameters to fit (default: all but the device scales);
        see `parameter_names`.

        With `rank_groups` (a key per spec, None for none) and `rank_weight` > 0, the fit
        also orders the specs of each group as measured: a pairwise logistic loss on their
        time per image (`rank_pairs`), `rank_weight` times as heavy in all as the log-latency
        term."""
        from scipy.optimize import least_squares  # fitting only

        if "latency_ms" not in measured or not len(specs):
            raise HardwareError("calibrating a GPU profile needs measured latency_ms values")
        y = np.asarray(measured["latency_ms"], float)
        precisions = list(precisions or [self.default_precision] * len(specs))
        runtimes = list(runtimes or [self.default_runtime] * len(specs))
        layouts = list(layouts or [self.default_layout] * len(specs))
        keys = list(zip(precisions, runtimes, layouts, strict=True))
        groups = []
        for p, rt, lay in sorted(set(keys)):
            self.check_options({"precision": p, "runtime": rt, "layout": lay})
            idx = np.array([i for i, key in enumerate(keys) if key == (p, rt, lay)])
            sub = SpecBatch.of([specs[i] for i in idx])
            groups.append((p, rt, idx, sub, self._work(sub, p, self.runtimes[rt], lay)))
        names = self.parameter_names(sorted(set(runtimes)))
        default = [n for n in names if n not in DEVICE_SCALES]  # the datasheet's, unless asked
        fitted = list(default if free is None else [n for n in names if n in set(free)])
        unknown = sorted(set(free or ()) - set(names))
        if unknown:
            raise HardwareError(f"cannot fit {unknown}; parameters: {names}")
        start = self._parameter_values(names)
        prior = np.log([max(start[n], _floor(n)) for n in fitted])
        upper = np.array([0.0 if _bounded(n) else np.log(1e5) for n in fitted])
        lower = np.full(len(fitted), np.log(1e-6))

        def values(theta: np.ndarray) -> dict[str, float]:
            return {**start, **dict(zip(fitted, np.exp(theta), strict=True))}

        def predict(theta: np.ndarray) -> np.ndarray:
            out = np.empty(len(y))
            v = values(theta)
            for p, rt, idx, sub, work in groups:
                out[idx] = self._latency_ms(sub, work, p, _unpack(v, rt))
            return out

        first, second, scale = rank_pairs(specs, y, rank_groups, rank_weight)
        per_image = np.log([spec.batch for spec in specs])

        def residuals(theta: np.ndarray) -> np.ndarray:
            log_predicted = np.log(predict(theta))
            fit_part = log_predicted - np.log(y)
            # measured slower - faster, predicted: negative when the model swaps the pair
            margin = (log_predicted - per_image)[first] - (log_predicted - per_image)[second]
            ranking = scale * np.sqrt(np.logaddexp(0.0, -margin / RANK_TEMPERATURE))
            return np.concatenate([fit_part, ranking, prior_weight * (theta - prior)])

        before = predict(prior)
        x0 = np.clip(prior, lower + 1e-9, upper - 1e-9)
        result = least_squares(residuals, x0, bounds=(lower, upper), method="trf")
        # A host cost per kernel below the GPU's time per kernel hides behind it (the max in
        # `_pipeline`): no gradient until it sets the pace. A slower host than the start's
        # (another framework, a harness that copies each batch) is found from higher starts.
        host = np.array([n.endswith(".op_overhead_us") for n in fitted])
        if host.any():
            for factor in HOST_RESTARTS:
                x1 = np.clip(x0 + host * np.log(factor), lower + 1e-9, upper - 1e-9)
                other = least_squares(residuals, x1, bounds=(lower, upper), method="trf")
                if other.cost < result.cost:
                    result = other
        after = predict(result.x)
        log.debug("%s: least squares: %d evaluations, %s", self.name, result.nfev, result.message)
        profile = self.profile_with(values(result.x))
        return Fit(
            profile, {"latency_ms_mape": mape(before, y)}, {"latency_ms_mape": mape(after, y)}
        )

    def parameter_names(self, runtimes: Sequence[str] | None = None) -> list[str]:
        """The free parameters: `efficiency.CLASS`, `memory_efficiency`, `half_tensor`,
        `half_vector`, the layout costs, per runtime `RUNTIME.kernel_launch_us`,
        `.op_overhead_us` and `.network_overhead_us`, and `bandwidth_scale` (the datasheet's
        bandwidth times this: fitted when adapting a profile to another GPU)."""
        names = [f"efficiency.{c}" for c in LAYER_CLASSES]
        names += ["memory_efficiency", "half_tensor", "half_vector"]
        names += ["nchw_transpose", "nhwc_depthwise"]
        for rt in runtimes if runtimes is not None else list(self.runtimes):
            names += [f"{rt}.{f}" for f in RUNTIME_FIELDS[1:]]
        return [*names, *DEVICE_SCALES]

    def _parameter_values(self, names: Sequence[str]) -> dict[str, float]:
        values: dict[str, float] = {
            **{f"efficiency.{c}": self.efficiency[c] for c in LAYER_CLASSES},
            "memory_efficiency": self.memory_efficiency,
            "half_tensor": self.half_saturation_gflop["tensor"],
            "half_vector": self.half_saturation_gflop["vector"],
            **self.layout_costs,
            **DEVICE_SCALES,
        }
        for name, rt in self.runtimes.items():
            values.update(
                {
                    f"{name}.kernel_launch_us": rt.kernel_launch_us,
                    f"{name}.op_overhead_us": rt.op_overhead_us,
                    f"{name}.network_overhead_us": rt.network_overhead_us,
                }
            )
        return {n: values[n] for n in names}

    def profile_with(self, values: Mapping[str, float]) -> dict[str, Any]:
        """This profile with some parameters replaced (names as `parameter_names`), in the
        `runtimes` form."""
        v = {**self._parameter_values(self.parameter_names()), **values}
        profile = {k: val for k, val in self.profile.items() if k not in _LEGACY_FIELDS}
        profile["efficiency"] = {c: _round(v[f"efficiency.{c}"]) for c in LAYER_CLASSES}
        profile["memory_efficiency"] = _round(v["memory_efficiency"])
        profile["half_saturation_gflop"] = {
            "tensor": _round(v["half_tensor"]),
            "vector": _round(v["half_vector"]),
        }
        profile["layout_costs"] = {k: _round(v[k]) for k in ("nchw_transpose", "nhwc_depthwise")}
        # adapted to another GPU: its bandwidth is the fitted one from now on
        if v["bandwidth_scale"] != 1:
            profile["memory_bandwidth_gbs"] = _round(self.bandwidth_gbs * v["bandwidth_scale"])
        profile["runtime"] = self.default_runtime
        profile["runtimes"] = {
            name: Runtime(
                rt.epilogue,
                v[f"{name}.kernel_launch_us"],
                v[f"{name}.op_overhead_us"],
                v[f"{name}.network_overhead_us"],
                rt.layout_conversion,
            ).to_profile()
            for name, rt in self.runtimes.items()
        }
        return profile


_LEGACY_FIELDS = ("kernel_launch_us", "network_overhead_us", "fuse_bn_act")
# The ranking term of a fit: a pair's loss is log(1 + exp(-margin / RANK_TEMPERATURE)), its
# margin the predicted log ratio of the slower one's time per image to the faster one's; pairs
# measured within RANK_MIN_GAP (log ratio) of each other are timing noise, left out.
RANK_TEMPERATURE = 0.05
RANK_MIN_GAP = 0.02


def rank_pairs(
    specs: Sequence[NetworkSpec],
    measured_ms: np.ndarray,
    groups: Sequence[Hashable | None] | None,
    weight: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The pairs the ranking term orders: (slower, faster) indices of specs of one group
    measured at least RANK_MIN_GAP apart in time per image, and each pair residual's scale,
    sqrt(weight x specs / pairs), so that the term weighs `weight` times the log-latency
    term's (one residual per spec) whatever the number of pairs."""
    none = np.zeros(0, dtype=int)
    if groups is None or weight <= 0:
        return none, none, 0.0
    if len(groups) != len(specs):
        raise HardwareError(f"rank_groups: {len(groups)} keys for {len(specs)} measurements")
    per_image = np.log(measured_ms) - np.log([spec.batch for spec in specs])
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups):
        if key is not None:
            members.setdefault(key, []).append(i)
    slower, faster = [], []
    for idx in members.values():
        i, j = np.triu_indices(len(idx), k=1)
        a, b = np.asarray(idx)[i], np.asarray(idx)[j]
        gap = per_image[a] - per_image[b]
        keep = np.abs(gap) >= RANK_MIN_GAP
        slower.append(np.where(gap > 0, a, b)[keep])
        faster.append(np.where(gap > 0, b, a)[keep])
    first = np.concatenate(slower) if slower else none
    second = np.concatenate(faster) if faster else none
    if not len(first):
        return none, none, 0.0
    return first, second, float(np.sqrt(weight * len(specs) / len(first)))


HOST_RESTARTS = (4.0, 16.0)  # the fit restarts with host costs this many times the start's


def _floor(name: str) -> float:
    """Where the fit starts a parameter the profile sets to 0 (the log-space fit cannot move
    from 0): 0.5 us for an overhead, 1 MFLOP for a half-saturation work."""
    if name.endswith("_us"):
        return 0.5
    if name.startswith("half_"):
        return 1e-3
    return 1e-6


def _bounded(name: str) -> bool:
    """Efficiencies are fractions of a peak: at most 1."""
    return name.startswith("efficiency.") or name == "memory_efficiency"


def _unpack(values: Mapping[str, float], runtime: str) -> dict[str, Any]:
    return {
        "efficiency": {c: values[f"efficiency.{c}"] for c in LAYER_CLASSES},
        "memory_efficiency": values["memory_efficiency"],
        "half_tensor": values["half_tensor"],
        "half_vector": values["half_vector"],
        "nchw_transpose": values["nchw_transpose"],
        "nhwc_depthwise": values["nhwc_depthwise"],
        "bandwidth_scale": values["bandwidth_scale"],
        "launch_us": values[f"{runtime}.kernel_launch_us"],
        "op_overhead_us": values[f"{runtime}.op_overhead_us"],
        "network_overhead_us": values[f"{runtime}.network_overhead_us"],
    }


def _pipeline(b: SpecBatch, host: np.ndarray, gpu: np.ndarray) -> np.ndarray:
    """Seconds per spec for a host that issues the layers' kernels in order (`host` seconds
    each) to a GPU that runs them in order (`gpu` seconds each): the last kernel ends at
    max over k of (host time up to and including k + GPU time from k on).

    Each spec's running sums are taken over its own layers alone (a row of a padded matrix),
    so a spec costs the same, to the last bit, whatever other specs share the batch."""
    if not len(b):
        return np.zeros(0)
    if not np.any(host):  # no host cost: the GPU's work, summed as every model sums
        return b.sum(gpu)
    spec = np.repeat(np.arange(len(b)), b.counts)
    position = np.arange(len(host)) - np.repeat(b.starts, b.counts)
    width = int(b.counts.max())
    issued = np.zeros((len(b), width))
    remaining = np.zeros((len(b), width))
    issued[spec, position] = host
    remaining[spec, width - 1 - position] = gpu  # reversed: a running sum is a suffix sum
    issued = np.cumsum(issued, axis=1)
    remaining = np.cumsum(remaining, axis=1)[:, ::-1]  # remaining[k]: GPU time from k on
    ends = issued[spec, position] + remaining[spec, position]
    return b.max(ends)


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")
