"""Where a trainer computes: its device, its mixed precision, and host-to-device copies.

A training config says `device: auto | cpu | cuda` and `amp: auto | off | bf16 | fp16`.
`auto` picks CUDA when torch sees a GPU, and then bf16 autocast where the GPU supports it
(fp16 with a gradient scaler where it does not); on a CPU `auto` trains in float32. bf16 and
fp16 can be asked for on a CPU too (torch's CPU autocast), which is how the tests exercise
this path on machines without a GPU. Checkpoints always hold CPU float32 tensors, so a run
trained on a GPU is read, resumed, searched and exported anywhere.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
from torch import Tensor

from supernet.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]
AmpName = Literal["auto", "off", "bf16", "fp16"]


def resolve_device(name: DeviceName) -> torch.device:
    """The torch device of a config's `device` (CUDA's current device for `cuda`)."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device: cuda, but torch sees no CUDA GPU here; use auto or cpu")
    return torch.device("cuda", torch.cuda.current_device())


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """`x` on `device`; a host batch bound for a GPU goes through pinned memory and is
    copied without blocking, so the copy overlaps the work already queued."""
    if device.type != "cuda":
        return x
    return x.pin_memory().to(device, non_blocking=True)


def cpu_copy(obj: Any) -> Any:
    """`obj` (tensors in dicts, lists and tuples, as a state_dict) with every tensor on the
    CPU: what checkpoints store, whatever the training device."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {key: cpu_copy(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(value) for value in obj)
    return obj


class Precision:
    """Mixed precision for one device: `autocast()` around forward passes, `backward(loss)`
    and `step(optimizer)` (through a gradient scaler for fp16, whose float range needs
    it), and the scaler's state for checkpoints."""

    def __init__(self, amp: AmpName, device: torch.device) -> None:
        self.device = device
        if amp == "auto":
            if device.type != "cuda":
                amp = "off"
            else:
                amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.name = amp
        self.dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; with a scaler, skipped when a gradient overflowed (every
        rank sees the same all-reduced gradients, so every rank skips alike)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
