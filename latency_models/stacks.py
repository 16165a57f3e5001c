"""Software stacks: the framework, runtime and host that run a network on a GPU.

A GPU prediction combines a device profile (peaks, bandwidth, SMs, efficiencies, the GPU-side
time of a kernel) with a stack (profiles/stacks/NAME.yaml):

    name: pytorch-2-eager
    framework: PyTorch 2.x, eager        # what runs the network (framework and version)
    host: a current x86 server CPU       # where its Python and dispatch run
    runtime: eager                       # eager | compiled | tensorrt
    epilogue: separate                   # separate | fused | in_conv (see models/gpu.py)
    layout_conversion: per_conv          # per_conv | once (default: per_conv with separate)
    op_overhead_us: 8                    # host time to issue one kernel
    network_overhead_us: 25              # once per forward pass
    input_copy_gbs: 0                    # > 0: the timed step copies the batch to the GPU

What belongs where. The host's time to issue a kernel (framework dispatch, the module call,
the launch call itself) and the per-forward cost (the call, synchronisation, a harness that
copies the input inside the timed loop) depend on the framework, its version and the host
CPU, not on the GPU: they are the stack's. `kernel_launch_us`, the GPU-side minimum time of a
kernel (launch latency and tail, set by the GPU and its driver), is the device profile's: the
same framework on a faster GPU issues kernels just as fast, but each takes the new GPU's
minimum. Which kernels a layer is (the epilogue, where NCHW becomes channels-last) is the
runtime's, so the stack's too.

A stack is named by `hw.predict(spec, stack="pytorch-2-eager")`; `runtime="compiled"` names
the default stack of that runtime (RUNTIME_STACKS). A profile may carry stacks of its own
under `stacks:` (what `nas latency adapt --only stack` writes), which stand in for the
shipped ones of the same name.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from latency_models.base import Reader
from latency_models.errors import ProfileError, UnknownStackError

STACK_DIR = Path(__file__).resolve().parent / "profiles" / "stacks"
RUNTIMES = ("eager", "compiled", "tensorrt")
EPILOGUES = ("separate", "fused", "in_conv")
# Where an NCHW network becomes channels-last for the tensor cores: around every convolution
# (eager PyTorch: cuDNN transposes each one's input and output), or once for the whole
# network (torch.compile's layout optimisation, TensorRT's format selection)
LAYOUT_CONVERSIONS = ("per_conv", "once")
# What `runtime=` means on a profile without runtimes of its own: the current stack of that
# runtime on a current server host. The first is the default of every GPU prediction.
RUNTIME_STACKS = {
    "eager": "pytorch-2-eager",
    "compiled": "pytorch-2-compiled",
    "tensorrt": "tensorrt",
}
DEFAULT_STACK = RUNTIME_STACKS["eager"]
STACK_FIELDS = (
    "name",
    "description",
    "framework",
    "host",
    "runtime",
    "epilogue",
    "layout_conversion",
    "op_overhead_us",
    "network_overhead_us",
    "input_copy_gbs",
    "sources",
    "calibration",
)
# The host parameters a fit may move (`STACK.FIELD` in GPUModel.parameter_names)
HOST_PARAMETERS = ("op_overhead_us", "network_overhead_us")


@dataclass(frozen=True)
class Stack:
    """How one software stack runs a network: which ops share a kernel, what the host pays."""

    name: str
    runtime: str  # eager | compiled | tensorrt
    epilogue: str  # separate | fused | in_conv
    layout_conversion: str  # per_conv | once
    op_overhead_us: float  # host: issuing one kernel (framework dispatch, module call, launch)
    network_overhead_us: float  # once per forward: synchronisation, the call itself
    input_copy_gbs: float = 0.0  # > 0: each timed step copies the input batch at this rate
    # An older profile's runtime brought its own GPU-side kernel time (its `runtimes:` block);
    # None: the device profile's `kernel_launch_us`
    kernel_launch_us: float | None = None
    info: Mapping[str, Any] | None = None  # framework, host, description, sources, calibration

    def to_profile(self) -> dict[str, Any]:
        """The stack as a stack file's fields (the form `read_stack` reads)."""
        info = dict(self.info or {})
        out: dict[str, Any] = {"name": self.name}
        out.update({k: info[k] for k in ("description", "framework", "host") if k in info})
        out.update(
            runtime=self.runtime,
            epilogue=self.epilogue,
            layout_conversion=self.layout_conversion,
            op_overhead_us=_round(self.op_overhead_us),
            network_overhead_us=_round(self.network_overhead_us),
        )
        if self.input_copy_gbs:
            out["input_copy_gbs"] = _round(self.input_copy_gbs)
        out.update({k: info[k] for k in ("sources", "calibration") if k in info})
        return out

    def with_host(self, values: Mapping[str, float]) -> Stack:
        """This stack with some host parameters replaced (names of HOST_PARAMETERS)."""
        return replace(self, **{k: float(v) for k, v in values.items()})


def read_stack(data: Any, source: str, name: str | None = None, prefix: str = "") -> Stack:
    """A stack from its mapping (a stack file, or an entry of a profile's `stacks:`); errors
    name the file and the field."""
    r = Reader(data, source, prefix)
    r.only(STACK_FIELDS)
    runtime = r.string("runtime", choices=list(RUNTIMES))
    default_epilogue = {"eager": "separate", "compiled": "fused", "tensorrt": "in_conv"}[runtime]
    epilogue = r.string("epilogue", default_epilogue, choices=list(EPILOGUES))
    stack_name = r.string("name", name or Path(source).stem)
    if name is not None and stack_name != name:
        raise r.error("name", f"is {stack_name!r}, but the stack is listed as {name!r}")
    info = {k: r.data[k] for k in ("description", "framework", "host") if k in r.data}
    for key in ("description", "framework", "host"):
        if key in info:
            r.string(key)
    info.update({k: r.data[k] for k in ("sources", "calibration") if k in r.data})
    sources = r.raw("sources", [])
    if not isinstance(sources, list):
        raise r.error(
            "sources", f"expected a list of {{file, framework, runtime}}, got {sources!r}"
        )
    for i, source in enumerate(sources):
        entry = Reader(source, r.source, f"{r.prefix}sources[{i}].")
        entry.only(("file", "framework", "runtime"))
        entry.string("file")
        entry.string("framework", "")
        entry.string("runtime", runtime, choices=list(RUNTIMES))
    return Stack(
        stack_name,
        runtime,
        epilogue,
        # eager's separate kernels go with eager's per-conv transposes
        r.string(
            "layout_conversion",
            "per_conv" if epilogue == "separate" else "once",
            choices=list(LAYOUT_CONVERSIONS),
        ),
        r.number("op_overhead_us"),
        r.number("network_overhead_us", 0.0),
        r.number("input_copy_gbs", 0.0),
        info=info,
    )


def list_stacks() -> list[str]:
    """Names of the shipped stacks (profiles/stacks/*.yaml)."""
    return sorted(p.stem for p in STACK_DIR.glob("*.yaml"))


def stack_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        path = STACK_DIR / f"{text}.yaml"
    else:
        path = Path(text).expanduser()
    if not path.is_file():
        raise UnknownStackError(text, list_stacks())
    return path


def load_stack(name_or_path: str | Path) -> Stack:
    """A shipped stack by name (see `list_stacks()`), or a stack file by path."""
    path = stack_path(name_or_path)
    return _load(path, path.stat().st_mtime_ns, path.stat().st_size)


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int, size: int) -> Stack:
    """A memo of parsed stack files, keyed by their stamp (a rewritten file is read again)."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(str(path), None, f"not valid YAML: {err}") from None
    return read_stack(data, str(path))


def shipped_stacks() -> dict[str, Stack]:
    """Every shipped stack, by name."""
    return {name: load_stack(name) for name in list_stacks()}


def dump_stack(stack: Stack, path: Path) -> None:
    from latency_models.hardware import dump_profile  # the same YAML style as profiles

    dump_profile(stack.to_profile(), path)


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")
