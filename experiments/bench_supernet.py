"""Cost of weight sharing: the supernet with its largest arch active against the extracted
static largest network, on the same input, timed interleaved.

Prints one JSON object per figure:
  train_step_ratio_supernet_vs_static   forward + backward + SGD step, train mode (goal <= 1.15)
  eval_forward_ratio_supernet_vs_static forward under no_grad, eval mode
each for both memory layouts (channels_last is 2-3x faster for training on CPU).

    python experiments/bench_supernet.py [--spaces mnist-mbv3:32,ofa-mbv3-w1.0:160] [--batch 64]

A space may carry ":RESOLUTION"; without it the space's largest resolution is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import supernet


def train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def eval_forward(net: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            net(x)

    return forward


def interleaved_ms(a: Callable[[], None], b: Callable[[], None], repeats: int, warmup: int):
    """Median milliseconds of a and of b, alternating which runs first to cancel drift."""
    for _ in range(warmup):
        a(), b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(repeats):
        order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for key, fn in order:
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1e3)
    return statistics.median(times["a"]), statistics.median(times["b"])


def bench_space(
    name: str,
    batch: int,
    resolution: int | None,
    memory_format: str,
    repeats: int,
    warmup: int,
):
    space = supernet.get_space(name)
    torch.manual_seed(0)
    net = supernet.build(space)
    arch = space.largest()
    if resolution is not None:
        arch["r"] = resolution
    net.set_active(arch)
    static = net.extract(arch)
    c = space.config
    x = torch.randn(batch, c.in_channels, arch["r"], arch["r"])
    y = torch.randint(0, c.num_classes, (batch,))
    if memory_format == "channels_last":
        net, static = (m.to(memory_format=torch.channels_last) for m in (net, static))
        x = x.to(memory_format=torch.channels_last)
    context = {
        "space": name,
        "arch": "largest",
        "batch": batch,
        "resolution": arch["r"],
        "memory_format": memory_format,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }

    net.train(), static.train()
    opt_super = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    opt_static = torch.optim.SGD(static.parameters(), lr=1e-3, momentum=0.9)
    super_ms, static_ms = interleaved_ms(
        train_step(net, opt_super, x, y), train_step(static, opt_static, x, y), repeats, warmup
    )
    yield {
        "name": "train_step_ratio_supernet_vs_static",
        "value": round(super_ms / static_ms, 4),
        "unit": "ratio",
        "goal": "<= 1.15",
        "supernet_ms": round(super_ms, 2),
        "static_ms": round(static_ms, 2),
        **context,
    }

    net.eval(), static.eval()
    super_ms, static_ms = interleaved_ms(
        eval_forward(net, x), eval_forward(static, x), repeats, warmup
    )
    yield {
        "name": "eval_forward_ratio_supernet_vs_static",
        "value": round(super_ms / static_ms, 4),
        "unit": "ratio",
        "supernet_ms": round(super_ms, 2),
        "static_ms": round(static_ms, 2),
        **context,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spaces",
        default="mnist-mbv3:32,mcu-mbv2:128,ofa-mbv3-w1.0:128",
        help="comma-separated SPACE[:RESOLUTION]",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--memory-formats", default="contiguous,channels_last")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    for item in args.spaces.split(","):
        name, _, res = item.partition(":")
        for memory_format in args.memory_formats.split(","):
            records = bench_space(
                name,
                args.batch,
                int(res) if res else None,
                memory_format,
                args.repeats,
                args.warmup,
            )
            for record in records:
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
