"""Microcontroller model (int8 inference, TinyEngine-style runtime).

Peak SRAM, three published definitions (activations of `activation_bytes` each, 1 for int8;
kB = 1024 bytes; weights stay in flash and are never counted). Per layer, "held" means the
other tensors written before the layer and read after it (a residual waiting for its add, the
depthwise output an SE gate will scale); the peak is the maximum over layers.

| layer | `peak_sram_act_kb` (A) | `peak_sram_layerwise_kb` (B) | `peak_sram_kb` (C) |
|---|---|---|---|
| dense conv (stem), 1x1 expand | in + out + held | same as A | same as A |
| depthwise (stride 1 or 2) | in + out + held | in + held (in place) | in + held (in place) |
| 1x1 projection right before a residual add | in + out | same as A | in + out + residual |
| residual add, SE multiply | in1 + in2 + held (in place) | same as A | in1 + in2 + out + held |
| SE pool and 1x1 convs, pooling, linear | in + out + held | same as A | same as A |
| standalone activation | in + held (in place) | same as A | same as A |
| buffers, added once | none | none | largest im2col + largest kernel copy |

The expand conv's input is the residual: it is counted once, as an input. In an SE block the
depthwise output is held from the SE pool to the multiply, and the residual throughout.

* A, MCUNet's "Act" (`count_peak_activation_size` in github.com/mit-han-lab/mcunet; the "Act"
  column of its model zoo): every layer needs its input and its output; the depthwise output is
  a second buffer. The layer right before a residual add (the projection) is counted without
  the residual: it accumulates onto the residual in place. (Recognised by the add coming
  next, with the same shape, as every spec builder here emits it.)
* B, MCUNetV2's analytic per-layer count (Lin et al. 2021, Fig. 1 and Table 1: MobileNetV2-1.0
  at 224 needs 1,372 kB): as A, but a depthwise convolution writes over its input (MCUNet's
  in-place depthwise), so it costs its input, plus the residual held while it runs. A
  stride-2 depthwise still costs its whole input.
* C, TinyEngine's memory plan (its code generator's PEAK_MEM, which the TinyEngine README
  reports for an STM32H743): every tensor lives from the layer that writes it to the last
  layer that reads it, so the residual is held through the expand, the depthwise and the
  projection; an add or an SE multiply writes its own output; an int8 depthwise runs in place
  (after a stride-2 one, the shared buffer counts as its smaller output). Added once, as
  TinyEngine does: the largest scratch buffer (two int16 im2col columns, 4 x k x k x cin/groups
  bytes, for dense convs; 2 x (h + 2p) x (w + 2p) bytes, one padded int16 channel, for an
  in-place depthwise) and the largest 16-bit copy of a k > 1 dense conv's weights (2 x weights
  bytes). The arena is multiplied by `sram_activation_factor` (fragmentation slack; 1: none,
  which TinyEngine's first-fit placement reaches on the MCUNet networks) and the fixed
  `runtime_sram_kb` is added: the profile's runtime overhead (stack, I/O buffers), fitted by
  `fit`.

A depthwise convolution runs in place only when its input is not read again later (not when
that input is a residual); otherwise it costs in + out + held in B and C as in A.
`inplace_depthwise`, `im2col_buffers` and `kernel_buffers` switch C's choices off; A and B
are fixed definitions and do not depend on the profile beyond `activation_bytes`.

* flash_kb: int8 weights, an int32 bias and a per-channel requantisation scale for every output
  channel of every conv/linear layer (BatchNorm is folded), plus the profile's runtime_flash_kb.
* runtime="tflm" (an option where the profile has a `tflm` mapping; "tinyengine", all of the
  above, is the default): the figures of TensorFlow Lite Micro running the full-integer
  flatbuffer `nas export` writes. peak_sram_kb = its arena + runtime_sram_kb, where the arena's
  head is the largest set of live tensors of the graph as the converter writes it (`tflm_graph`:
  explicit PAD ops, unfused activations as ops, nothing in place) and its tail is persistent
  (`TFLMRuntime`: per tensor, per op, per output channel, OpData per op kind). flash_kb = the
  flatbuffer's predicted size + the TFLM runtime's code (`tflm.runtime_flash_kb`, with its
  source). The other metrics do not change with the runtime.
* latency_ms: sum over layers of MACs x cycles_per_mac[class] + elements x
  cycles_per_element[class] + layer_overhead_cycles, divided by the clock. Conv and linear
  layers pay cycles_per_element.output per output element (requantisation, store), pooling
  per input element, adds/multiplies/activations per output element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latency_models.arrays import ACT_CODES, CLASS_CODES, LAYER_CLASSES, OP_CODES, SpecBatch
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError
from latency_models.spec import NetworkSpec
from latency_models.uncertainty import Residuals

MAC_CLASSES = ("conv", "pointwise", "depthwise", "grouped", "linear")
# "output": per output element of a conv/linear layer (requantisation and store);
# "pool" per input element, "elementwise" per output element of adds, multiplies, activations.
ELEMENT_CLASSES = ("output", "pool", "elementwise")
# under `runtime: tflm`, predicted (the arena a board must give, the flatbuffer) rather than
# computed: see MCUModel.residuals
TFLM_PREDICTED = ("peak_sram_kb", "flash_kb")
# what `fit` fits to latency: cycles per MAC and per element of each class
LATENCY_FIT_PARAMETERS = len(MAC_CLASSES) + len(ELEMENT_CLASSES)
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
    "kernel_buffers",
    "calibration",
    "tflm",
    "uncertainty",
)
QUANT_FIELDS = ("activation_bytes", "weight_bytes", "bias_bytes", "scale_bytes_per_channel")
# What each peak-SRAM metric counts (the module docstring has the per-layer table).
PEAK_SRAM_DEFINITIONS: dict[str, str] = {
    "peak_sram_act_kb": "A: MCUNet's analytic 'Act': max over layers of input + output; "
    "depthwise not in place (+ residual); no buffers",
    "peak_sram_layerwise_kb": "B: MCUNetV2's analytic per-layer count: as A, but a depthwise "
    "convolution runs in place (its input, + residual)",
    "peak_sram_kb": "C: TinyEngine's memory plan: tensor lifetimes (residual held until its add), "
    "in-place int8 depthwise, + largest im2col and kernel buffers; "
    "x sram_activation_factor + runtime_sram_kb",
}
_ADD, _ACT = OP_CODES["add"], OP_CODES["act"]
# A and B: element-wise ops write their output over their first input
_INPLACE = np.zeros(len(OP_CODES), bool)
_INPLACE[[OP_CODES["add"], OP_CODES["mul"], OP_CODES["act"]]] = True
_DEPTHWISE = CLASS_CODES["depthwise"]
_IM2COL = np.zeros(len(LAYER_CLASSES), bool)  # classes with an im2col buffer
_IM2COL[[CLASS_CODES["conv"], CLASS_CODES["pointwise"], CLASS_CODES["grouped"]]] = True
_KERNEL_COPY = np.zeros(len(LAYER_CLASSES), bool)  # k x k kernels copied to int16 (k > 1)
_KERNEL_COPY[[CLASS_CODES["conv"], CLASS_CODES["grouped"]]] = True
# `runtime` option: TinyEngine's memory plan (the default) or TensorFlow Lite Micro's
RUNTIMES = ("tinyengine", "tflm")
TFLM_FIELDS = (
    "runtime_flash_kb",
    "runtime_flash_source",
    "eval_tensor_bytes",
    "node_bytes",
    "channel_bytes",
    "opdata_bytes",
    "tail_base_bytes",
    "planning_tensor_bytes",
    "flatbuffer",
    "calibration",
)
OPDATA_KINDS = ("weighted", "other")  # conv / depthwise / fully connected, and the rest
FLATBUFFER_FIELDS = ("tensor_bytes", "op_bytes", "base_bytes", "bias_bytes", "channel_bytes")
# activations TFLite fuses into the conv before them; any other is an op of its own
_FUSED_ACTS = np.zeros(len(ACT_CODES), bool)
_FUSED_ACTS[[ACT_CODES[None], ACT_CODES["relu"], ACT_CODES["relu6"]]] = True
# activations written as an op with a constant operand (h_sigmoid: a MUL by 1/6 after the
# conv, whose +3 and relu6 are folded into it)
_CONST_OPERAND_ACTS = np.zeros(len(ACT_CODES), bool)
_CONST_OPERAND_ACTS[ACT_CODES["h_sigmoid"]] = True
# ops with a constant operand of their own besides weights: MEAN (its axes)
_CONST_OPERAND_OPS = np.zeros(len(OP_CODES), bool)
_CONST_OPERAND_OPS[OP_CODES["global_avgpool"]] = True


class MCUModel(CostModel):
    kind = "mcu"
    description_of_kind = "microcontroller: int8 SRAM/flash accounting, cycles per MAC"
    # the memory plan and the flash image are what the model defines them to be (a runtime's
    # plan, computed): zero-width intervals; latency takes the profile's stated residuals
    exact_metrics = ("peak_sram_kb", "peak_sram_layerwise_kb", "peak_sram_act_kb", "flash_kb")

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
        self.kernel_buffers = r.boolean("kernel_buffers", True)
        r.mapping("calibration", {})  # provenance only; must be a mapping
        self.tflm = TFLMRuntime.read(r.mapping("tflm")) if r.has("tflm") else None
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
            "peak_sram_act_kb",
            "flash_kb",
        )

    def residuals(
        self, metric: str, batch: SpecBatch, options: Mapping[str, Any]
    ) -> Residuals | None:
        """TinyEngine's memory plan and flash image are computed exactly; TFLM's arena and
        flatbuffer are predicted from fitted struct sizes, so under `runtime: tflm` they take
        the residuals of recorded TFLM runs the fit did not see (`METRIC@tflm`)."""
        if options.get("runtime") == "tflm" and metric in TFLM_PREDICTED:
            return self.uncertainty.get(f"{metric}@tflm")
        return super().residuals(metric, batch, options)

    def options(self) -> dict[str, tuple[Any, ...]]:
        # the model costs int8 weights and activations (TinyEngine / CMSIS-NN kernels); a
        # target says `precision: int8` to search on quality after int8 quantization too
        options: dict[str, tuple[Any, ...]] = {"precision": ("int8",)}
        # TFLM's figures need the profile's `tflm` constants (fitted to recorded arenas)
        options["runtime"] = RUNTIMES if self.tflm is not None else RUNTIMES[:1]
        return options

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
            "peak_sram_definitions": dict(PEAK_SRAM_DEFINITIONS),
            **({"tflm": self.profile["tflm"]} if self.tflm is not None else {}),
        }

    # ----- the model -------------------------------------------------------------------------

    def _layer_memory(self, b: SpecBatch) -> dict[str, np.ndarray]:
        """Per layer and sample: elements under A (`act`), B (`layerwise`) and C (`arena`),
        and C's scratch bytes (`im2col`, `kernel`). See the module docstring."""
        op, cls_ = b.col("op"), b.col("cls")
        inputs, out, held = b.col("inputs_elems"), b.col("out_elems"), b.col("held_elems")
        in_elems, kernel = b.col("in_elems"), b.col("kernel")
        dies = b.col("in_dies") == 1
        dw = cls_ == _DEPTHWISE
        inplace_dw = np.maximum(in_elems, out) + held  # the output overwrites the input
        # A and B: the layer right before a residual add (the projection) accumulates onto
        # the residual, so the residual is not counted a second time. The add reads this
        # layer's output (it comes next, with the same shape) and a tensor held meanwhile.
        following_op = np.full_like(op, -1)
        following_op[:-1] = op[1:]
        following_out = np.zeros_like(out)
        following_out[:-1] = out[1:]
        following_op[b.starts + b.counts - 1] = -1  # a spec's last layer: nothing follows
        before_add = (following_op == _ADD) & (following_out == out) & dies
        act = inputs + np.where(_INPLACE[op], 0, out) + held
        act = act - np.where(before_add, np.minimum(held, out), 0)
        layerwise = np.where(dw & dies, inplace_dw, act)
        # C: tensor lifetimes; adds and SE multiplies write their own output
        arena = inputs + np.where(op == _ACT, 0, out) + held
        inplace = dw & dies & self.inplace_depthwise
        if self.inplace_depthwise:
            arena = np.where(inplace, inplace_dw, arena)
        pad = 2 * (kernel // 2)
        channel = 2 * (b.col("hin") + pad) * (b.col("win") + pad)  # one padded int16 channel
        cols = (b.col("cin") // np.maximum(b.col("groups"), 1)) * kernel**2
        im2col = np.where(_IM2COL[cls_], 4 * cols, 0)  # two int16 columns
        im2col = np.where(dw, np.where(inplace, channel, 2 * cols), im2col)
        copy = np.where(_KERNEL_COPY[cls_] & (kernel > 1), 2 * b.col("weights"), 0)
        zeros = np.zeros_like(out)
        return {
            "act": act,
            "layerwise": layerwise,
            "arena": arena,
            "im2col": im2col if self.im2col_buffers else zeros,
            "kernel": copy if self.kernel_buffers else zeros,
        }

    def _memory(self, b: SpecBatch) -> dict[str, np.ndarray]:
        """Peak bytes per spec: `act` (A), `layerwise` (B), C's `arena` (before
        sram_activation_factor) and its `buffers` (largest im2col + largest kernel copy)."""
        layers = self._layer_memory(b)
        per_sample = b.batch * self.activation_bytes
        return {
            "act": b.max(layers["act"]) * per_sample,
            "layerwise": b.max(layers["layerwise"]) * per_sample,
            "arena": b.max(layers["arena"]) * per_sample,
            # scratch is reused from sample to sample
            "buffers": (b.max(layers["im2col"]) + b.max(layers["kernel"])).astype(np.float64),
        }

    def layer_memory(self, spec: NetworkSpec) -> dict[str, np.ndarray]:
        """Bytes per layer of `spec` (one sample, in `spec.layers` order) under each
        definition: `act` (A), `layerwise` (B), `arena` (C's tensors), and C's scratch
        `im2col` and `kernel` buffers (the model adds only the largest of each). Shows which
        layer sets a peak; the metrics are the maxima."""
        layers: dict[str, np.ndarray] = self._layer_memory(SpecBatch.of([spec]))
        for name in ("act", "layerwise", "arena"):
            layers[name] = layers[name] * self.activation_bytes
        return layers

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
        memory = self._memory(batch)
        scheduled = memory["arena"] * self.sram_activation_factor + memory["buffers"]
        columns = {
            "latency_ms": self._cycles(batch) / (self.clock_mhz * 1e3),
            "peak_sram_kb": scheduled / 1024 + self.runtime_sram_kb,
            "peak_sram_layerwise_kb": memory["layerwise"] / 1024,
            "peak_sram_act_kb": memory["act"] / 1024,
            "flash_kb": self._flash_bytes(batch) / 1024 + self.runtime_flash_kb,
        }
        if options.get("runtime") == "tflm":
            assert self.tflm is not None  # options() offers tflm only with its constants
            tflm = self.tflm_memory(batch)
            columns["peak_sram_kb"] = tflm["arena"] / 1024 + self.runtime_sram_kb
            columns["flash_kb"] = tflm["flatbuffer"] / 1024 + self.tflm.runtime_flash_kb
        return columns

    # ----- TensorFlow Lite Micro -------------------------------------------------------------

    def tflm_graph(self, b: SpecBatch) -> dict[str, np.ndarray]:
        """Per spec, the graph as the converter writes it and TFLM runs it: `head` (bytes
        of the largest set of live tensors), and the counts the tail and the flatbuffer
        grow with: `ops`, `tensors`, `weighted_ops` (conv, depthwise, fully connected),
        `channels` (their output channels), `weight_bytes`.

        Each layer is one op, plus: a PAD before a conv with stride > 1 and k > 1 (the
        converter makes PyTorch's symmetric padding explicit, then runs a VALID conv), an
        op after a layer whose activation TFLite does not fuse (HARD_SWISH; a MUL for
        h_sigmoid), and one op reordering the input to NHWC. Every op writes a tensor of
        its own (TFLM's planner shares nothing in place); a tensor lives from the op that
        writes it to the last op that reads it."""
        op, act = b.col("op"), b.col("act")
        inputs, out, held = b.col("inputs_elems"), b.col("out_elems"), b.col("held_elems")
        in_elems, dies = b.col("in_elems"), b.col("in_dies") == 1
        kernel, stride = b.col("kernel"), b.col("stride")
        weighted = (op == OP_CODES["conv"]) | (op == OP_CODES["linear"])
        # TFLite's SAME padding puts the odd pixel after; where PyTorch's symmetric k // 2
        # differs from it, the converter writes an explicit PAD and a VALID conv
        border = 2 * (kernel // 2)
        same_h = (-(-b.col("hin") // stride) - 1) * stride + kernel - b.col("hin")
        same_w = (-(-b.col("win") // stride) - 1) * stride + kernel - b.col("win")
        same = (np.maximum(same_h, 0) == border) & (np.maximum(same_w, 0) == border)
        padded = (op == OP_CODES["conv"]) & (kernel > 1) & ~same
        padded_elems = b.col("cin") * (b.col("hin") + border) * (b.col("win") + border)
        separate_act = ~_FUSED_ACTS[act]
        kept_input = np.where(dies, 0, in_elems)  # read again by a later layer
        live_pad = np.where(padded, inputs + padded_elems + held, 0)
        live_layer = np.where(padded, padded_elems + kept_input, inputs) + out + held
        live_act = np.where(separate_act, 2 * out + held + kept_input, 0)
        live = np.maximum(np.maximum(live_pad, live_layer), live_act)
        network_input = in_elems[b.starts]  # the input and its NHWC copy, live together
        head = np.maximum(b.max(live), 2 * network_input) * b.batch * self.activation_bytes
        ops = b.counts + b.sum(padded) + b.sum(separate_act) + 1
        # the converter writes an identical constant once (MEAN's axes, h_sigmoid's 1/6)
        constants = (
            2 * b.sum(weighted)  # weights and bias (BatchNorm folded into it)
            + b.sum(padded)  # the paddings
            + (b.sum(_CONST_OPERAND_OPS[op]) > 0)
            + (b.sum(separate_act & _CONST_OPERAND_ACTS[act]) > 0)
            + 1  # the input reorder's shape or permutation
        )
        return {
            "head": head.astype(np.float64),
            "ops": ops.astype(np.float64),
            "tensors": (1 + ops + constants).astype(np.float64),  # + the network input
            "weighted_ops": b.sum(weighted).astype(np.float64),
            "channels": b.sum(np.where(weighted, b.col("cout"), 0)).astype(np.float64),
            "weight_bytes": b.sum(b.col("weights") * self.weight_bytes).astype(np.float64),
        }

    def tflm_memory(self, b: SpecBatch) -> dict[str, np.ndarray]:
        """TFLM's arena per spec in bytes and the flatbuffer's size (`flatbuffer`).

        `head` and `tail` are what TFLM's recording allocator reports once the tensors are
        allocated, and `allocated` their sum (its total). While it plans, TFLM also takes
        temporary memory at the head (`planning`), so the smallest arena a file runs in,
        `arena`, is tail + max(head, planning): above the recorded total for nets whose
        tensors are small and many. The TFLMRuntime docstring lists the terms."""
        if self.tflm is None:
            raise HardwareError(f"hardware {self.name!r}: its profile has no tflm constants")
        graph = self.tflm_graph(b)
        tail = self.tflm.tail_bytes(graph)
        planning = self.tflm.planning_bytes(graph)
        return {
            "head": graph["head"],
            "tail": tail,
            "allocated": graph["head"] + tail,
            "planning": planning,
            "arena": np.maximum(graph["head"], planning) + tail,
            "flatbuffer": self.tflm.flatbuffer_bytes(graph),
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
        errors of factor x (C's activation arena) + its buffers + runtime_sram_kb. Flash:
        runtime_flash_kb is the median of measured - model.
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
            memory = self._memory(batch)
            arena, buffers = memory["arena"] / 1024, memory["buffers"] / 1024
            a = np.stack([arena, np.ones_like(arena)], axis=1) / y[:, None]
            (factor, runtime), _ = nnls(a, (y - buffers) / y)
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


@dataclass(frozen=True, kw_only=True)
class TFLMRuntime:
    """TensorFlow Lite Micro's constants in an MCU profile (its `tflm` mapping).

    Arena tail (persistent) = eval_tensor_bytes per tensor (TfLiteEvalTensor) + node_bytes
    per op (NodeAndRegistration) + channel_bytes per output channel of every conv /
    depthwise / fully connected op (its per-channel multiplier and shift) + opdata_bytes
    per op of each kind (the kernels' OpData: `weighted` ops and the `other` ones) +
    tail_base_bytes (the interpreter's structs, its input and output TfLiteTensors).
    Planning (temporary, at the head while TFLM plans the tensors' offsets, so the arena
    must hold it beside the tail) = planning_tensor_bytes per tensor (its allocation record
    and the greedy planner's records).
    Flatbuffer = int8 weights + flatbuffer.bias_bytes and flatbuffer.channel_bytes per
    output channel (an int32 bias; a float32 scale and an int64 zero point for the weights
    and for the bias) + flatbuffer.tensor_bytes per tensor and op_bytes per op (names,
    shapes, options, activation quantization) + base_bytes. runtime_flash_kb: the TFLM
    runtime's code, with its source in runtime_flash_source."""

    runtime_flash_kb: float
    eval_tensor_bytes: float
    node_bytes: float
    channel_bytes: float
    opdata_bytes: dict[str, float]  # by OPDATA_KINDS
    tail_base_bytes: float
    planning_tensor_bytes: float
    flatbuffer: dict[str, float]  # by FLATBUFFER_FIELDS

    @classmethod
    def read(cls, r: Reader) -> TFLMRuntime:
        r.only(TFLM_FIELDS)
        fb = r.mapping("flatbuffer")
        fb.only(FLATBUFFER_FIELDS)
        r.mapping("calibration", {})  # provenance only
        if not r.string("runtime_flash_source").strip():
            raise r.error("runtime_flash_source", "must name where runtime_flash_kb comes from")
        return cls(
            runtime_flash_kb=r.number("runtime_flash_kb"),
            eval_tensor_bytes=r.number("eval_tensor_bytes"),
            node_bytes=r.number("node_bytes"),
            channel_bytes=r.number("channel_bytes"),
            opdata_bytes=r.numbers(
                "opdata_bytes", allowed=OPDATA_KINDS, required=OPDATA_KINDS, positive=False
            ),
            tail_base_bytes=r.number("tail_base_bytes"),
            planning_tensor_bytes=r.number("planning_tensor_bytes"),
            flatbuffer={name: fb.number(name) for name in FLATBUFFER_FIELDS},
        )

    def tail_bytes(self, graph: Mapping[str, np.ndarray]) -> np.ndarray:
        other_ops = graph["ops"] - graph["weighted_ops"]
        return (
            self.eval_tensor_bytes * graph["tensors"]
            + self.node_bytes * graph["ops"]
            + self.channel_bytes * graph["channels"]
            + self.opdata_bytes["weighted"] * graph["weighted_ops"]
            + self.opdata_bytes["other"] * other_ops
            + self.tail_base_bytes
        )

    def planning_bytes(self, graph: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.planning_tensor_bytes * graph["tensors"]

    def flatbuffer_bytes(self, graph: Mapping[str, np.ndarray]) -> np.ndarray:
        fb = self.flatbuffer
        return (
            graph["weight_bytes"]
            + (fb["bias_bytes"] + fb["channel_bytes"]) * graph["channels"]
            + fb["tensor_bytes"] * graph["tensors"]
            + fb["op_bytes"] * graph["ops"]
            + fb["base_bytes"]
        )


def _round(value: float) -> float:
    return float(f"{value:.4g}")
