"""Timing on this machine with torch: the primitives behind `nas latency build-lut`,
`measure` and `validate`.

* `spec_to_module(spec)` builds a runnable torch module (random weights) from any NetworkSpec
  or from one block of it, with torch.fx, so a block can be timed alone.
* `time_module` times a module: fixed threads, warm-up runs, then `repeats` timed runs; it
  returns the median and the minimum (batch-1 timings are noisy, see DESIGN.md).
* `measure_block_table` times every distinct block a set of specs needs, for a `measured`
  profile.

This module imports torch; the cost models never do.
"""

from __future__ import annotations

import contextlib
import operator
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from latency_models.errors import HardwareError
from latency_models.spec import LayerSpec, NetworkSpec

ACT_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "h_swish": nn.Hardswish,
    "h_sigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "lrelu": lambda: nn.LeakyReLU(0.2),
}
DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
DEVICE_PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32", "tf32", "fp16", "bf16")}


@dataclass(frozen=True)
class Timing:
    """How to time: on which device, in which precision, with how many runs."""

    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    warmup: int = 10
    repeats: int = 30

    def __post_init__(self) -> None:
        if self.device not in DEVICE_PRECISIONS:
            raise HardwareError(
                f"device {self.device!r} is not supported; allowed: {', '.join(DEVICE_PRECISIONS)}"
            )
        if self.precision not in DEVICE_PRECISIONS[self.device]:
            raise HardwareError(
                f"precision {self.precision!r} is not measured on {self.device}; allowed: "
                f"{', '.join(DEVICE_PRECISIONS[self.device])}"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise HardwareError("device 'cuda' requested but torch sees no CUDA GPU here")
        if self.threads < 1 or self.repeats < 1 or self.warmup < 0:
            raise HardwareError("threads and repeats must be >= 1 and warmup >= 0")


@dataclass(frozen=True)
class TimingResult:
    median_ms: float
    min_ms: float
    mean_ms: float
    repeats: int
    times_ms: tuple[float, ...] = ()

    @classmethod
    def of(cls, times_ms: Sequence[float]) -> TimingResult:
        times = tuple(times_ms)
        return cls(statistics.median(times), min(times), statistics.fmean(times), len(times), times)

    def stat(self, name: str) -> float:
        if name not in ("median", "min", "mean"):
            raise HardwareError(f"unknown statistic {name!r}; allowed: median, min, mean")
        return float(getattr(self, f"{name}_ms"))


def device_name(device: str) -> str:
    """A readable name of the processor that runs the timings."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def time_module(module: nn.Module, input_shape: Sequence[int], timing: Timing) -> TimingResult:
    """Time module(x) for x of `input_shape` (batch included), after `timing.warmup` runs."""
    dtype = DTYPES[timing.precision]
    module = module.eval().to(device=timing.device, dtype=dtype)
    x = torch.randn(*input_shape, device=timing.device, dtype=dtype)
    cuda = timing.device == "cuda"
    times: list[float] = []
    with torch_threads(timing.threads), torch.inference_mode(), _tf32(timing.precision == "tf32"):
        for _ in range(timing.warmup):
            module(x)
        if cuda:
            torch.cuda.synchronize()
        for _ in range(timing.repeats):
            start = time.perf_counter()
            module(x)
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    return TimingResult.of(times)


# ----- a NetworkSpec as a torch module --------------------------------------------------------


class _Fixed(nn.Module):
    """A fixed tensor repeated over the batch of the module's input: a `const` layer (a
    generator's learned input), or a tensor from outside a timed block that does not have
    the block's input shape (a generator's style vector, a skip connection's image)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("value", torch.randn(1, *shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], *self.value.shape[1:])


def _layer_module(layer: LayerSpec) -> nn.Module | None:
    c_in, c_out = layer.in_shape[0], layer.out_shape[0]
    if layer.op == "conv":
        parts: list[nn.Module] = [
            nn.Conv2d(
                c_in,
                c_out,
                layer.kernel,
                layer.stride,
                layer.kernel // 2,
                groups=layer.groups,
                bias=layer.bias,
            )
        ]
        if layer.bn:
            parts.append(nn.BatchNorm2d(c_out))
        if layer.act:
            parts.append(ACT_MODULES[layer.act]())
        return parts[0] if len(parts) == 1 else nn.Sequential(*parts)
    if layer.op == "linear":
        return nn.Linear(c_in, c_out, bias=layer.bias)
    if layer.op == "avgpool":
        return nn.AvgPool2d(layer.kernel, layer.stride, layer.kernel // 2)
    if layer.op == "maxpool":
        return nn.MaxPool2d(layer.kernel, layer.stride, layer.kernel // 2)
    if layer.op == "act":
        return ACT_MODULES[layer.act or "relu"]()
    if layer.op == "const":
        return _Fixed(layer.out_shape)
    return None


def layers_to_module(
    layers: Sequence[LayerSpec],
    outside: Mapping[str, tuple[int, ...]] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> fx.GraphModule:
    """A module running `layers` in order. Inputs named outside `layers` (or none) read the
    module's single input (of `input_shape`), so one block of a spec can run alone; an outside
    input of another shape (`outside`: name -> shape) is a fixed tensor."""
    root = nn.Module()
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[str, fx.Node] = {}
    for src, shape in (outside or {}).items():
        if tuple(shape) != tuple(input_shape or ()):
            target = f"outside_{len(env)}"
            root.add_module(target, _Fixed(tuple(shape)))
            env[src] = graph.call_module(target, (x,))
    readers: dict[str, int] = {}
    for layer in layers:
        for src in layer.inputs:
            readers[src] = readers.get(src, 0) + 1
    used: set[str] = set()
    for layer in layers:
        args = [env.get(src, x) for src in layer.inputs] or [x]
        target = layer.name.replace(".", "_")
        while target in used:
            target += "_"
        used.add(target)
        module = _layer_module(layer)
        if layer.op == "linear":
            assert module is not None
            root.add_module(target, module)
            flat = graph.call_function(torch.flatten, (args[0], 1))
            node = graph.call_module(target, (flat,))
            if readers.get(layer.name):
                node = graph.call_method("reshape", (node, (-1, layer.out_shape[0], 1, 1)))
        elif module is not None:
            root.add_module(target, module)
            node = graph.call_module(target, (args[0],))
        elif layer.op == "global_avgpool":
            node = graph.call_method("mean", (args[0], (2, 3)), {"keepdim": True})
        elif layer.op == "add":
            node = graph.call_function(operator.add, (args[0], args[1]))
        elif layer.op == "mul":
            node = graph.call_function(operator.mul, (args[0], args[1]))
        elif layer.op == "resize":
            size = layer.out_shape[1:]
            node = graph.call_function(
                F.interpolate, (args[0],), {"size": size, "mode": "bilinear"}
            )
        else:  # pragma: no cover - every op of spec.OPS is handled above
            raise HardwareError(f"layer {layer.name!r}: op {layer.op!r} cannot be built")
        env[layer.name] = node
    graph.output(env[layers[-1].name])
    return fx.GraphModule(root, graph)


def spec_to_module(spec: NetworkSpec, block: str | None = None) -> fx.GraphModule:
    """The whole spec, or one of its blocks, as a torch module with random weights."""
    if block is None:
        return layers_to_module(spec.layers)
    layers = spec.layers_of(block)
    if not layers:
        raise HardwareError(f"spec {spec.name!r} has no block {block!r}")
    shapes = {layer.name: layer.out_shape for layer in spec.layers}
    inside = {layer.name for layer in layers}
    outside = {
        src: shapes[src]
        for layer in layers
        for src in layer.inputs
        if src not in inside and src in shapes
    }
    (info,) = [b for b in spec.blocks if b.name == block]
    return layers_to_module(layers, outside, info.in_shape)


def measure_block_table(
    entries: Mapping[str, tuple[NetworkSpec, int]],
    timing: Timing,
    rounds: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Time each entry's block alone: key -> (spec, index of the block in spec.blocks).

    The repeats are split over `rounds` passes through all blocks, so that a passing
    disturbance spreads over many blocks instead of hitting a few; an entry is the median of
    all its repeats. Returns key -> milliseconds.
    """
    modules = {}
    for key, (spec, index) in entries.items():
        block = spec.blocks[index]
        modules[key] = (spec_to_module(spec, block.name), (spec.batch, *block.in_shape))
    per_round = Timing(
        timing.device,
        timing.precision,
        timing.threads,
        max(1, timing.warmup // rounds),
        max(1, -(-timing.repeats // rounds)),
    )
    times: dict[str, list[float]] = {key: [] for key in modules}
    done = 0
    for _ in range(rounds):
        for key, (module, shape) in modules.items():
            times[key].extend(time_module(module, shape, per_round).times_ms)
            done += 1
            if progress is not None:
                progress(done, rounds * len(modules))
    return {key: round(statistics.median(t), 5) for key, t in times.items()}
