"""The supernet trainer's GPU path, timed: run this once on a machine with a GPU.

Trains a supernet (default `ofa-mbv3-w1.0` at r=224) with the trainer's own sandwich step
(largest, smallest and 2 random subnets, in-place distillation) on synthetic
ImageNet-shaped batches, under the trainer's mixed precision and channels_last, and
prints one JSON object:
  train_images_per_s            images per second through sandwich steps (after warm-up)
  supernet_vs_static_step_ratio one train step of the supernet with its largest arch active
                                against the extracted static network, interleaved
                                (forward, backward, SGD step; the same precision)
  peak_memory_gib               torch.cuda.max_memory_allocated over the sandwich steps
  amp, device, compile, gpu     what ran

    python experiments/gpu_train_check.py [--steps 300] [--batch 64] [--amp auto]
    python experiments/gpu_train_check.py --device cpu --space mnist-mbv3 --resolution 28 \\
        --batch 8 --steps 3 --warmup 1      # a smoke run without a GPU (the test does this)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import supernet
from supernet.device import Precision, resolve_device
from supernet.mbconv.train import PhaseChoices, PhaseConfig, TrainConfig, sandwich_step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def static_step(net: nn.Module, opt, x, y, precision: Precision) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = F.cross_entropy(net(x), y)
        precision.backward(loss)
        precision.step(opt)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa-mbv3-w1.0")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="timed sandwich steps")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ratio-repeats", type=int, default=30)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true", help="compile the static stem/head")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    space = supernet.get_space(args.space)
    c = space.config
    phase = PhaseConfig(
        name="elastic",
        epochs=1,
        lr=0.05,
        ks=list(c.kernel_sizes),
        e=list(c.expand_ratios),
        d=sorted({d for s in c.stages for d in s.depths}),
        r=[args.resolution] if args.resolution in c.resolutions else None,
    )
    config = TrainConfig(space=args.space, phases=[phase], device=args.device, amp=args.amp)
    choices = PhaseChoices.resolve(space, phase, 0)
    torch.manual_seed(0)
    net = supernet.build(space).to(device).to(memory_format=torch.channels_last)
    if args.compile:
        net.compile_static_parts()
    precision = Precision(config.amp, device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    r = args.resolution
    x = torch.randn(args.batch, c.in_channels, r, r, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, c.num_classes, (args.batch,), device=device)
    rng = np.random.default_rng(0)

    def archs() -> list[dict]:
        picks = [choices.largest(space, r), choices.smallest(space, r)]
        return picks + [choices.sample(space, r, rng) for _ in range(config.random_subnets)]

    net.train()
    for _ in range(args.warmup):
        sandwich_step(net, optimizer, x, y, archs(), config, precision=precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(
        lambda: [
            sandwich_step(net, optimizer, x, y, archs(), config, precision=precision)
            for _ in range(args.steps)
        ],
        device,
    )
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    # supernet (largest arch) against its extracted static network, interleaved
    largest = space.largest()
    largest["r"] = r
    net.set_active(largest)
    static = net.extract(largest).to(device).to(memory_format=torch.channels_last).train()
    steps = {
        "supernet": static_step(net, optimizer, x, y, precision),
        "static": static_step(
            static, torch.optim.SGD(static.parameters(), lr=0.05, momentum=0.9), x, y, precision
        ),
    }
    times: dict[str, list[float]] = {"supernet": [], "static": []}
    for step in steps.values():
        for _ in range(max(args.warmup // 2, 1)):
            step()
    for i in range(args.ratio_repeats):
        for name in ("supernet", "static") if i % 2 == 0 else ("static", "supernet"):
            times[name].append(timed(steps[name], device))
    ratio = statistics.median(times["supernet"]) / statistics.median(times["static"])
    print(
        json.dumps(
            {
                "space": args.space,
                "resolution": r,
                "batch": args.batch,
                "steps": args.steps,
                "subnets_per_step": 2 + config.random_subnets,
                "device": str(device),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "amp": precision.name,
                "compile": args.compile,
                "train_images_per_s": round(args.batch * args.steps / seconds, 1),
                "supernet_vs_static_step_ratio": round(ratio, 3),
                "peak_memory_gib": round(peak, 2) if peak is not None else None,
            }
        )
    )


if __name__ == "__main__":
    main()
