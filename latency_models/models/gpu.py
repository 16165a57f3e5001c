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
on), plus `network_overhead_us` (and the input's copy, for a harness that times it). With a
fast GPU and a small batch the host sets the pace.

Device and software stack. The runtime (epilogue, layout conversion) and the host's costs
(`op_overhead_us`, `network_overhead_us`, `input_copy_gbs`) belong to the software stack
that runs the network, a file of its own (latency_models/stacks.py, profiles/stacks/); a
prediction names it with `stack=` (default: `stack` in the profile, else the current
PyTorch eager on a current server host), or with `runtime=`, the default stack of that
runtime. The device profile keeps what the GPU and its driver set: the peaks, bandwidth,
efficiencies and `kernel_launch_us`, the GPU-side minimum time of a kernel. Older profiles
give their host costs per runtime (`runtimes:`, with a `kernel_launch_us` each, or one
runtime at the top level); they still load, their runtimes as stacks of their own.
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
from latency_models.stacks import (
    DEFAULT_STACK,
    EPILOGUES,
    HOST_PARAMETERS,
    LAYOUT_CONVERSIONS,
    RUNTIME_STACKS,
    RUNTIMES,
    Stack,
    read_stack,
    shipped_stacks,
    stack_path,
)
from latency_models.uncertainty import Residuals

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
PRECISION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp8": 1}
TENSOR_CLASSES = ("conv", "pointwise", "linear")
LAYOUTS = ("nhwc", "nchw")  # channels_last, or PyTorch's default
HALF_PRECISIONS = ("fp16", "bf16", "int8", "fp8")
# Convolutions on tensor cores (16 and 8 bits, and TF32) run channels-last: an NCHW tensor is
# transposed
CHANNELS_LAST_PRECISIONS = (*HALF_PRECISIONS, "tf32")
# An older profile's runtime: these fields under `runtimes: NAME:` (and layout_conversion)
RUNTIME_FIELDS = ("epilogue", "kernel_launch_us", "op_overhead_us", "network_overhead_us")
# What users time by default: eager PyTorch (an older profile's runtime of that name)
DEFAULT_RUNTIME = "eager"
# The GPU-side minimum time of a kernel is the device's and its driver's, a few us on every
# recent NVIDIA GPU: the fit pulls it towards its prior this many times harder than the
# rest, so that a slow host's per-kernel cost is charged to the stack that has it
KERNEL_LAUNCH_PRIOR_SCALE = 10.0
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
    "kernel_launch_us",  # the GPU-side minimum time of a kernel (with `stack`)
    "stack",  # the default software stack (profiles/stacks/); names a profile of this form
    "stacks",  # stacks of this profile's own (as stack files), besides the shipped ones
    "runtime",
    "runtimes",
    "calibration",
    "uncertainty",  # residuals behind prediction intervals (latency_models.uncertainty)
    # a profile of one runtime (older profiles): these with kernel_launch_us, no `stack`
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


Runtime = Stack  # what an older profile's `runtimes:` entry is read as


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
        self.stacks, self.runtimes, self.kernel_launch_us = self._read_stacks(r)
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

    def _read_stacks(self, r: Reader) -> tuple[dict[str, Stack], dict[str, str], float]:
        """The stacks this profile can run (the shipped ones, its own `stacks:`, an older
        profile's runtimes), which stack each runtime name means, and the device's kernel
        time. Sets `default_stack`."""
        stacks = dict(shipped_stacks())
        # a rewritten stack file is read again, as a rewritten profile is (load_hardware)
        self.files += [stack_path(name) for name in stacks]
        if "stacks" in r.data:
            table = r.mapping("stacks")
            for name in table.data:
                stacks[str(name)] = read_stack(
                    table.data[name], r.source, str(name), f"{table.prefix}{name}."
                )
        legacy = self._read_runtimes(r) if "stack" not in r.data else {}
        self.legacy = bool(legacy)
        for name in legacy:
            if "stacks" in r.data and name in r.data["stacks"]:
                raise r.error(f"stacks.{name}", "is also a runtime of this profile")
        stacks.update(legacy)
        if legacy:  # an older profile: its runtimes, and the shipped stacks on its kernel time
            self.default_stack = r.string(
                "runtime",
                DEFAULT_RUNTIME if DEFAULT_RUNTIME in legacy else next(iter(legacy)),
                choices=list(legacy),
            )
            launch = legacy[self.default_stack].kernel_launch_us or 0.0
            return stacks, {name: name for name in legacy}, launch
        for key in ("runtimes", "network_overhead_us", "fuse_bn_act", "runtime"):
            if key in r.data:
                raise r.error(key, "a profile that names its `stack` takes host costs from it")
        self.default_stack = r.string("stack", DEFAULT_STACK, choices=list(stacks))
        default = stacks[self.default_stack]
        runtimes = {rt: RUNTIME_STACKS[rt] for rt in RUNTIMES if RUNTIME_STACKS[rt] in stacks}
        runtimes[default.runtime] = default.name  # the profile's own stack runs its runtime
        return stacks, runtimes, r.number("kernel_launch_us")

    def _read_runtimes(self, r: Reader) -> dict[str, Stack]:
        """An older profile's host costs: per runtime under `runtimes`, or one runtime."""
        legacy = [
            k for k in ("kernel_launch_us", "network_overhead_us", "fuse_bn_act") if k in r.data
        ]
        if "runtimes" not in r.data:  # one runtime: fused kernels (TensorRT-like) or eager
            fused = r.boolean("fuse_bn_act", True)
            name = "tensorrt" if fused else "eager"
            return {
                name: Stack(
                    name,
                    name,
                    "in_conv" if fused else "separate",
                    "once" if fused else "per_conv",
                    0.0,
                    r.number("network_overhead_us", 0.0),
                    kernel_launch_us=r.number("kernel_launch_us"),
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
            runtimes[str(name)] = Stack(
                str(name),
                str(name) if name in RUNTIMES else "eager",
                epilogue,
                # default: eager's separate kernels go with eager's per-conv transposes
                entry.string(
                    "layout_conversion",
                    "per_conv" if epilogue == "separate" else "once",
                    choices=LAYOUT_CONVERSIONS,
                ),
                entry.number("op_overhead_us", 0.0),
                entry.number("network_overhead_us", 0.0),
                kernel_launch_us=entry.number("kernel_launch_us"),
            )
        if not runtimes:
            raise r.error("runtimes", "must name at least one runtime")
        return runtimes

    @property
    def default_runtime(self) -> str:
        return self._runtime_of(self.default_stack)

    def _runtime_of(self, stack: str) -> str:
        """The runtime name a stack goes by here (an older profile's runtime: its own name)."""
        return stack if self.legacy and stack in self.runtimes else self.stacks[stack].runtime

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
        stacks = tuple(s for s in self.stacks if s != self.default_stack)
        layouts = tuple(lay for lay in LAYOUTS if lay != self.default_layout)
        return {
            "precision": (self.default_precision, *precisions),
            "runtime": (self.default_runtime, *runtimes),
            "stack": (self.default_stack, *stacks),
            "layout": (self.default_layout, *layouts),
        }

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for key, known, everything in (
            ("precision", self.peak_tflops, PRECISIONS),
            ("runtime", self.runtimes, RUNTIMES),
            ("stack", self.stacks, ()),
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
        resolved = self._resolve_stack(options)
        runtime = resolved.pop("runtime")  # the stack's: no second choice to check
        return {**super().check_options(resolved), "runtime": runtime}

    def _resolve_stack(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """`stack` and `runtime` agree: a stack runs its runtime, and a runtime alone means
        this profile's stack of that runtime."""
        stack, runtime = options.get("stack"), options.get("runtime")
        if stack is None:
            stack = self.runtimes[runtime] if runtime is not None else self.default_stack
        ran = self._runtime_of(stack)
        if runtime is not None and runtime != ran:
            raise OptionError(
                self.name, "runtime", f"stack {stack} runs {ran}, not {runtime}", [ran]
            )
        return {**options, "stack": stack, "runtime": ran}

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
            "kernel_launch_us": self.kernel_launch_us,
            "stack": self.default_stack,
            "stacks": {  # the host costs of the stacks `runtime=` names (all: options)
                name: {
                    "runtime": self.stacks[name].runtime,
                    "op_overhead_us": self.stacks[name].op_overhead_us,
                    "network_overhead_us": self.stacks[name].network_overhead_us,
                }
                for name in dict.fromkeys(self.runtimes.values())
            },
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
        ms = _pipeline(b, host, gpu) * 1e3 + params["network_overhead_us"] * 1e-3
        if params["input_copy_gbs"]:  # a harness that copies the batch inside the timed step
            first = b.col("in_elems")[b.starts] * b.batch * PRECISION_BYTES[precision]
            ms = ms + first / (params["input_copy_gbs"] * 1e9) * 1e3
        return ms

    def _params(self, stack: str) -> dict[str, Any]:
        values = self._parameter_values(self.parameter_names([stack]))
        return _unpack(values, "", self.stacks[stack], "", self.kernel_launch_us)

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        precision, stack = options["precision"], options["stack"]
        work = self._work(batch, precision, self.stacks[stack], options["layout"])
        return {"latency_ms": self._latency_ms(batch, work, precision, self._params(stack))}

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
        stacks: Sequence[str] | None = None,
        **options: Any,
    ) -> Fit:
        """Fit the profile's free parameters to measured latency_ms (one precision and one
        stack per spec, default the profile's; `runtimes` names each row's stack by its
        runtime instead): the efficiencies, memory efficiency, half-saturation work and kernel
        time of the device, and the host costs of each stack measured. Least squares on log
        latency, with a pull of `prior_weight` towards the current values (in log space), so
        that what the measurements do not exercise keeps its prior. `free` names the
        parameters to fit (default: all but the device scales); see `parameter_names`.
        The new profile carries the stacks whose host costs moved under `stacks:`.

        With `rank_groups` (a key per spec, None for none) and `rank_weight` > 0, the fit
        also orders the specs of each group as measured: a pairwise logistic loss on their
        time per image (`rank_pairs`), `rank_weight` times as heavy in all as the log-latency
        term."""
        if "latency_ms" not in measured or not len(specs):
            raise HardwareError("calibrating a GPU profile needs measured latency_ms values")
        rows = FitRows(
            self, specs, measured["latency_ms"], precisions, runtimes, layouts, stacks, rank_groups
        )
        result = fit_jointly([rows], prior_weight, free, rank_weight=rank_weight)
        profile = result.profiles[0]
        if result.stacks:  # the shipped stacks it moved: this profile's own from now on
            own = {k: _without_name(st.to_profile()) for k, st in result.stacks.items()}
            profile["stacks"] = {**profile.get("stacks", {}), **own}
        return Fit(profile, result.before[0], result.after[0])

    def stack_of(self, runtime: str | None = None, stack: str | None = None) -> str:
        """The stack a prediction with these options runs (checked as predict checks)."""
        opts = {k: v for k, v in (("runtime", runtime), ("stack", stack)) if v is not None}
        return str(self.check_options(opts)["stack"])

    def parameter_names(self, stacks: Sequence[str] | None = None) -> list[str]:
        """The free parameters: the device's `efficiency.CLASS`, `memory_efficiency`,
        `half_tensor`, `half_vector`, the layout costs and `kernel_launch_us`; per stack
        (default: this profile's runtimes' stacks) `STACK.op_overhead_us` and
        `.network_overhead_us` (an older profile's runtime also `.kernel_launch_us`); and
        `bandwidth_scale` (the datasheet's bandwidth times this: fitted when adapting a
        profile to another GPU)."""
        names = [f"efficiency.{c}" for c in LAYER_CLASSES]
        names += ["memory_efficiency", "half_tensor", "half_vector"]
        names += ["nchw_transpose", "nhwc_depthwise"]
        if not self.legacy:
            names.append("kernel_launch_us")
        for stack in stacks if stacks is not None else list(dict.fromkeys(self.runtimes.values())):
            names += [f"{stack}.{f}" for f in HOST_PARAMETERS]
            if self.stacks[stack].kernel_launch_us is not None:
                names.append(f"{stack}.kernel_launch_us")
        return [*names, *DEVICE_SCALES]

    def _parameter_values(self, names: Sequence[str]) -> dict[str, float]:
        values: dict[str, float] = {
            **{f"efficiency.{c}": self.efficiency[c] for c in LAYER_CLASSES},
            "memory_efficiency": self.memory_efficiency,
            "half_tensor": self.half_saturation_gflop["tensor"],
            "half_vector": self.half_saturation_gflop["vector"],
            "kernel_launch_us": self.kernel_launch_us,
            **self.layout_costs,
            **DEVICE_SCALES,
        }
        out = {}
        for n in names:
            stack, _, field = n.rpartition(".")
            if stack in self.stacks and field in (*HOST_PARAMETERS, "kernel_launch_us"):
                out[n] = getattr(self.stacks[stack], field)
            else:
                out[n] = values[n]
        return out

    def profile_with(self, values: Mapping[str, float]) -> dict[str, Any]:
        """This profile with some parameters replaced (names as `parameter_names`): an older
        profile in the `runtimes` form; a shipped stack whose host costs moved goes under
        `stacks:`, as a stack of the profile's own."""
        current = self._parameter_values([n for n in values if n.rpartition(".")[0] in self.stacks])
        moved = {n.rpartition(".")[0] for n, val in current.items() if values[n] != val}
        own = [s for s in self.stacks if s in self.runtimes.values() and self.legacy]
        own += [s for s in self.profile.get("stacks") or {} if s not in own]
        fitted = [s for s in self.stacks if s in moved and s not in own]
        v = {**self._parameter_values(self.parameter_names([*own, *fitted])), **values}
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

        def host(stack: str) -> Stack:
            fields = [*HOST_PARAMETERS]
            if self.stacks[stack].kernel_launch_us is not None:
                fields.append("kernel_launch_us")
            return self.stacks[stack].with_host({f: v[f"{stack}.{f}"] for f in fields})

        if self.legacy:
            profile["runtime"] = self.default_stack
            profile["runtimes"] = {
                name: _runtime_entry(host(name)) for name in self.runtimes if name in own
            }
        else:
            profile["kernel_launch_us"] = _round(v["kernel_launch_us"])
            profile["stack"] = self.default_stack
        stacks = {
            name: host(name).to_profile()
            for name in own + fitted
            if name not in (self.runtimes if self.legacy else ())
        }
        if stacks:
            profile["stacks"] = {name: _without_name(entry) for name, entry in stacks.items()}
        return profile


@dataclass
class FitRows:
    """One GPU's measured rows in a fit: per row a precision, a layout and the stack (or the
    runtime, which names the profile's stack of it) that timed it."""

    model: GPUModel
    specs: Sequence[NetworkSpec]
    latency_ms: Sequence[float] | np.ndarray
    precisions: Sequence[str] | None = None
    runtimes: Sequence[str] | None = None
    layouts: Sequence[str] | None = None
    stacks: Sequence[str] | None = None
    rank_groups: Sequence[Hashable | None] | None = None  # per row: its family, for ranking
    # parameters its rows cannot tell apart from others, held at their start (names as its
    # `parameter_names`; a shared stack's then held for every GPU of the fit)
    fixed: Sequence[str] = ()


@dataclass
class JointFit:
    """Per GPU (in the order given): its new profile and MAPE before and after; and the
    stacks shared by several of them, with their fitted host costs."""

    profiles: list[dict[str, Any]]
    before: list[dict[str, float]]
    after: list[dict[str, float]]
    stacks: dict[str, Stack]


def fit_jointly(
    parts: Sequence[FitRows],
    prior_weight: float = 0.1,
    free: Sequence[str] | None = None,
    stack_priors: Mapping[str, Stack] | None = None,
    rank_weight: float = 0.0,
) -> JointFit:
    """Fit several GPUs at once: the device parameters of each GPU, and the host costs of
    each stack once, shared by every GPU whose rows that stack timed (a profile's own stacks
    stay its own). One least-squares problem on log latency, each parameter pulled towards
    its start by `prior_weight` (the device's kernel time KERNEL_LAUNCH_PRIOR_SCALE times
    harder). Names: with one GPU as `parameter_names` gives them; with several, a device
    parameter as `GPU:NAME`, a shared stack's as `STACK.FIELD`; `free` picks among them.
    `stack_priors`: where shared stacks' host costs start (default: the stack files), so
    that a fit that rewrites the files starts from the same place each time.

    `rank_weight` > 0: a pairwise ranking term within each GPU's `rank_groups` (a group never
    spans two GPUs: their times per image are not comparable), weighing `rank_weight` times
    that GPU's log-latency term (`rank_pairs`)."""
    from scipy.optimize import least_squares  # fitting only

    joint = len(parts) > 1
    groups: list[tuple[int, str, str, np.ndarray, SpecBatch, dict[str, np.ndarray]]] = []
    start: dict[str, float] = {}
    ys: list[np.ndarray] = []
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (slower, faster, scale)
    offset = 0
    for i, part in enumerate(parts):
        model, n = part.model, len(part.specs)
        y = np.asarray(part.latency_ms, float)
        if len(y) != n:
            raise HardwareError(f"{model.name}: {n} specs but {len(y)} measured latencies")
        precisions = list(part.precisions or [model.default_precision] * n)
        layouts = list(part.layouts or [model.default_layout] * n)
        chosen = part.stacks or [None] * n
        runtimes = part.runtimes or [None] * n
        stacks = [model.stack_of(rt, st) for rt, st in zip(runtimes, chosen, strict=True)]
        keys = list(zip(precisions, stacks, layouts, strict=True))
        for p, st, lay in sorted(set(keys)):
            model.check_options({"precision": p, "stack": st, "layout": lay})
            idx = offset + np.array([j for j, key in enumerate(keys) if key == (p, st, lay)])
            sub = SpecBatch.of([part.specs[j - offset] for j in idx])
            groups.append((i, p, st, idx, sub, model._work(sub, p, model.stacks[st], lay)))
        for name, value in model._parameter_values(
            model.parameter_names(sorted(set(stacks)))
        ).items():
            key = _joint_name(model, i, name, joint)
            stack, _, field = name.rpartition(".")
            if stack_priors and stack in stack_priors and _shared(model, stack):
                value = getattr(stack_priors[stack], field)
            if key in start and start[key] != value:
                raise HardwareError(
                    f"stack {name.rpartition('.')[0]} has other host costs in {model.name}'s "
                    "profile than in another GPU's of this fit"
                )
            start[key] = value
        first, second, scale = rank_pairs(part.specs, y, part.rank_groups, rank_weight)
        pairs.append((offset + first, offset + second, np.full(len(first), scale)))
        ys.append(y)
        offset += n
    y = np.concatenate(ys)
    slower, faster, scales = (np.concatenate(column) for column in zip(*pairs, strict=True))
    per_image = np.log(np.concatenate([[s.batch for s in part.specs] for part in parts]))
    names = list(start)
    default = [n for n in names if n.rpartition(":")[2] not in DEVICE_SCALES]
    held = {_joint_name(p.model, i, n, joint) for i, p in enumerate(parts) for n in p.fixed}
    chosen = default if free is None else [n for n in names if n in set(free)]
    fitted = [n for n in chosen if n not in held]
    for asked, verb in ((free or (), "fit"), (held, "hold")):
        unknown = sorted(set(asked) - set(names))
        if unknown:
            raise HardwareError(f"cannot {verb} {unknown}; parameters: {names}")
    prior = np.log([max(start[n], _floor(n)) for n in fitted])
    upper = np.array([0.0 if _bounded(n) else np.log(1e5) for n in fitted])
    lower = np.full(len(fitted), np.log(1e-6))
    pull = prior_weight * np.array(
        [KERNEL_LAUNCH_PRIOR_SCALE if n.endswith(":kernel_launch_us") or n == "kernel_launch_us"
         else 1.0 for n in fitted]
    )  # fmt: skip

    def values(theta: np.ndarray) -> dict[str, float]:
        return {**start, **dict(zip(fitted, np.exp(theta), strict=True))}

    def predict(theta: np.ndarray) -> np.ndarray:
        out = np.empty(len(y))
        v = values(theta)
        for i, p, st, idx, sub, work in groups:
            model = parts[i].model
            prefix, stack = _prefix(model, i, joint), model.stacks[st]
            at = _stack_prefix(model, i, st, joint)
            params = _unpack(v, prefix, stack, at, model.kernel_launch_us)
            out[idx] = model._latency_ms(sub, work, p, params)
        return out

    def residuals(theta: np.ndarray) -> np.ndarray:
        log_predicted = np.log(predict(theta))
        fit_part = log_predicted - np.log(y)
        # measured slower - faster, predicted: negative when the model swaps the pair
        margin = (log_predicted - per_image)[slower] - (log_predicted - per_image)[faster]
        ranking = scales * np.sqrt(np.logaddexp(0.0, -margin / RANK_TEMPERATURE))
        return np.concatenate([fit_part, ranking, pull * (theta - prior)])

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
    v = values(result.x)
    out = JointFit([], [], [], {})
    bounds = np.cumsum([0, *(len(part.specs) for part in parts)])
    for i, part in enumerate(parts):
        model = part.model
        mine = {
            name: v[_joint_name(model, i, name, joint)]
            for name in model._parameter_values(model.parameter_names(
                sorted({g[2] for g in groups if g[0] == i})
            ))
        }  # fmt: skip
        profile = model.profile_with(mine)
        # the shipped stacks it moved are the fit's (shared by the GPUs they timed)
        for s in [s for s in profile.get("stacks", {}) if _shared(model, s)]:
            at = _stack_prefix(model, i, s, joint)
            fields = {f: v[f"{at}{s}.{f}"] for f in HOST_PARAMETERS}
            out.stacks[s] = model.stacks[s].with_host(fields)
            del profile["stacks"][s]
        if not profile.get("stacks"):
            profile.pop("stacks", None)
        out.profiles.append(profile)
        rows = slice(bounds[i], bounds[i + 1])
        out.before.append({"latency_ms_mape": mape(before[rows], y[rows])})
        out.after.append({"latency_ms_mape": mape(after[rows], y[rows])})
    log.debug("joint fit: %d evaluations, %s", result.nfev, result.message)
    return out


def _shared(model: GPUModel, stack: str) -> bool:
    """A shipped stack, not one of the profile's own (its `stacks:`, an older runtime)."""
    return stack not in (model.profile.get("stacks") or {}) and not (
        model.legacy and stack in model.runtimes
    )


def _prefix(model: GPUModel, index: int, joint: bool) -> str:
    return f"{model.name}#{index}:" if joint else ""


def _stack_prefix(model: GPUModel, index: int, stack: str, joint: bool) -> str:
    return "" if not joint or _shared(model, stack) else _prefix(model, index, joint)


def _joint_name(model: GPUModel, index: int, name: str, joint: bool) -> str:
    stack = name.rpartition(".")[0]
    if stack in model.stacks and name.rpartition(".")[2] in (*HOST_PARAMETERS, "kernel_launch_us"):
        return _stack_prefix(model, index, stack, joint) + name
    return _prefix(model, index, joint) + name


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
    name = name.rpartition(":")[2]
    if name.endswith("_us"):
        return 0.5
    if name.startswith("half_"):
        return 1e-3
    return 1e-6


def _bounded(name: str) -> bool:
    """Efficiencies are fractions of a peak: at most 1."""
    name = name.rpartition(":")[2]
    return name.startswith("efficiency.") or name == "memory_efficiency"


def _unpack(
    values: Mapping[str, float], prefix: str, stack: Stack, stack_prefix: str, launch: float
) -> dict[str, Any]:
    """The parameters `_latency_ms` takes for one GPU (its names start with `prefix` in a
    joint fit) and one stack (`stack_prefix`); `launch`: the device's kernel time where the
    fit has none (an older profile run on a shipped stack)."""
    d = {k[len(prefix) :]: val for k, val in values.items() if k.startswith(prefix)}
    at = f"{stack_prefix}{stack.name}."
    return {
        "efficiency": {c: d[f"efficiency.{c}"] for c in LAYER_CLASSES},
        "memory_efficiency": d["memory_efficiency"],
        "half_tensor": d["half_tensor"],
        "half_vector": d["half_vector"],
        "nchw_transpose": d["nchw_transpose"],
        "nhwc_depthwise": d["nhwc_depthwise"],
        "bandwidth_scale": d["bandwidth_scale"],
        "launch_us": values.get(f"{at}kernel_launch_us", d.get("kernel_launch_us", launch)),
        "op_overhead_us": values[f"{at}op_overhead_us"],
        "network_overhead_us": values[f"{at}network_overhead_us"],
        "input_copy_gbs": stack.input_copy_gbs,  # a property of the harness: not fitted
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


def _runtime_entry(stack: Stack) -> dict[str, Any]:
    """An older profile's `runtimes:` entry."""
    return {
        "epilogue": stack.epilogue,
        "kernel_launch_us": _round(stack.kernel_launch_us or 0.0),
        "op_overhead_us": _round(stack.op_overhead_us),
        "network_overhead_us": _round(stack.network_overhead_us),
        "layout_conversion": stack.layout_conversion,
    }


def _without_name(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "name"}
