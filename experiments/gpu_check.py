"""Measure a GPU the way users time networks, and check a profile against it before and after
adapting it: one prepared script for a machine with an NVIDIA GPU.

    python experiments/gpu_check.py --profile h100-sxm --out runs/gpu-check   # on the GPU machine

It times --n extracted subnets of ofa-mbv3-w1.2 (seeded, resolutions 160-224) and a few
reference CNNs, at batch 1 and 64, in fp16 and bf16, eager and torch.compile, channels-last,
each the median of --repeats timed runs after warm-up (CUDA events around each forward,
the GPU synchronised after each). It writes OUT/gpu-measurements.csv in the format
`nas latency validate --measurements` and `nas latency adapt` read, then prints one JSON
object per figure:

  gpu_check_profile_error   the profile's Kendall tau, MAPE and share within ±10% on every
                            measured setting (per batch, precision and runtime)
  gpu_check_adapted_error   the same after `nas latency adapt` on --adapt subnets, on the
                            other subnets only (the profile never saw them)

With --device cpu it runs the same steps on this machine's CPU (fp32, eager only, a few
subnets): a check that the script works, not a GPU figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latency_models as lm
import supernet
from nas import profiling

SPACE = "ofa-mbv3-w1.2"
REFERENCE = ("resnet50", "mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_b0")
FIELDS = (
    "space",
    "arch",
    "network",
    "resolution",
    "batch",
    "precision",
    "runtime",
    "layout",
    "latency_ms",
    "device",
    "torch",
)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def time_forward(
    module: torch.nn.Module, shape: tuple[int, ...], device: str, dtype: torch.dtype, repeats: int
) -> float:
    """Median milliseconds of module(x), after warm-up (which also compiles)."""
    x = torch.randn(*shape, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for _ in range(10):
            module(x)
        if device == "cuda":
            torch.cuda.synchronize()
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                start.record()
                module(x)
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(repeats):
                began = time.perf_counter()
                module(x)
                times.append((time.perf_counter() - began) * 1e3)
    return float(np.median(times))


def prepared(module: torch.nn.Module, device: str, dtype: torch.dtype, runtime: str):
    module = module.eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)
    return torch.compile(module) if runtime == "compiled" else module


def measure(args: argparse.Namespace) -> Path:
    space = supernet.get_space(SPACE)
    net = supernet.build(space)
    rng = np.random.default_rng(args.seed)
    resolutions = [r for r in range(160, 225, 16)]
    archs = [
        space.validate({**space.sample(rng), "r": int(rng.choice(resolutions))})
        for _ in range(args.n)
    ]
    cpu = args.device == "cpu"
    settings = [
        (batch, precision, runtime)
        for batch in ((1, 4) if cpu else (1, 64))
        for precision in (("fp32",) if cpu else ("fp16", "bf16"))
        for runtime in (("eager",) if cpu else ("eager", "compiled"))
    ]
    rows: list[dict[str, Any]] = []
    for batch, precision, runtime in settings:
        dtype = DTYPES[precision]
        for arch in archs:
            module = prepared(net.extract(arch), args.device, dtype, runtime)
            ms = time_forward(
                module, (batch, 3, arch["r"], arch["r"]), args.device, dtype, args.repeats
            )
            rows.append(
                {
                    "space": SPACE,
                    "arch": json.dumps(dict(arch)),
                    "batch": batch,
                    "precision": precision,
                    "runtime": runtime,
                    "layout": "nhwc",
                    "latency_ms": round(ms, 5),
                }
            )
        for name in () if cpu else REFERENCE:
            spec = lm.reference_spec(name)
            from latency_models.torch.measure import spec_to_module

            module = prepared(spec_to_module(spec), args.device, dtype, runtime)
            r = spec.input_shape[1]
            ms = time_forward(module, (batch, 3, r, r), args.device, dtype, args.repeats)
            rows.append(
                {
                    "network": name,
                    "resolution": r,
                    "batch": batch,
                    "precision": precision,
                    "runtime": runtime,
                    "layout": "nhwc",
                    "latency_ms": round(ms, 5),
                }
            )
        print(json.dumps({"measured": [batch, precision, runtime], "rows": len(rows)}), flush=True)
    device = torch.cuda.get_device_name() if not cpu else "cpu"
    out = args.out / "gpu-measurements.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "device": device, "torch": torch.__version__})
    return out


def check(args: argparse.Namespace, measured: Path) -> None:
    model = lm.load_hardware(args.profile)
    with open(measured, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = sorted({(r["batch"], r["precision"], r["runtime"]) for r in rows})
    subnets = sorted({r["arch"] for r in rows if r["arch"]})
    few = set(subnets[: args.adapt])  # the first subnets adapt the profile, the others check it
    adapt_rows = [r for r in rows if r["arch"] in few]
    check_rows = [r for r in rows if r["arch"] and r["arch"] not in few]

    def write(part: list[dict[str, str]], name: str) -> Path:
        path = args.out / name
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(part)
        return path

    adapted_path = profiling.adapt(
        model.name, [write(adapt_rows, "adapt.csv")], args.out / f"{model.name}-adapted.yaml"
    ).path
    adapted = lm.load_hardware(str(adapted_path))
    for key in keys:
        batch, precision, runtime = key
        part = [r for r in check_rows if (r["batch"], r["precision"], r["runtime"]) == key]
        if len(part) < 3 or precision not in model.options()["precision"]:
            continue
        path = write(part, f"check-{batch}-{precision}-{runtime}.csv")
        data = profiling.load_measurements([path])
        y = data.metrics["latency_ms"]
        for name, m in (("gpu_check_profile_error", model), ("gpu_check_adapted_error", adapted)):
            figures = profiling.Validation(m.name, data.predict(m), y, data.macs()).figures()
            print(
                json.dumps(
                    {
                        "name": name,
                        "profile": model.name,
                        "batch": int(batch),
                        "precision": precision,
                        "runtime": runtime,
                        "adapted_on": len(few),
                        **{
                            k: round(v, 4) if isinstance(v, float) else v
                            for k, v in figures.items()
                        },
                    }
                ),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="h100-sxm", help="the profile to check")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--n", type=int, default=30, help="subnets of ofa-mbv3-w1.2")
    parser.add_argument("--adapt", type=int, default=20, help="of them, to adapt the profile")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run it on the GPU machine (or --device cpu)")
    check(args, measure(args))


if __name__ == "__main__":
    main()
