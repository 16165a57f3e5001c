"""Speed and accuracy figures of the cost models (latency_models).

Prints one JSON object per figure:

  predict_many_specs_per_s        per device: hw.predict_many over N distinct specs whose
                                  numeric arrays are already built (as in a search, where every
                                  device shares them), by a model that has already costed N
                                  other subnets of the space (goal >= 50,000/s)
  predict_loop_specs_per_s        baseline in the same run: a Python loop of hw.predict
  predict_many_speedup_vs_loop    the ratio of the two
  predict_many_first_call_specs_per_s  the same by a freshly loaded model (empty caches)
  predict_many_cold_specs_per_s   a fresh model on brand-new spec objects: includes building
                                  each spec's arrays once
  spec_arrays_specs_per_s         building the arrays alone (once per spec, shared by devices)
  to_spec_specs_per_s             space.to_spec, for scale (what a search pays to get a spec)
  new_archs_to_costs_per_s        a search's path for a generation of new archs: the space
                                  assembles their layer rows from stored parts (no NetworkSpec
                                  per arch), three devices cost them (goal >= 20,000/s)
  new_archs_via_specs_per_s       baseline in the same run: to_spec per arch, then the devices
  new_archs_speedup_vs_specs      the ratio of the two
  mcu_*_error                     stm32h743 against TinyEngine's published STM32H743
                                  measurements, per network: in-sample, and leave-one-out
                                  (fitted without that network)

    python experiments/bench_latency.py [--n 2000] [--repeats 3] [--skip-mcu]

Each throughput is the best of --repeats runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import latency_models as lm
import supernet

# device kind -> (space, batch, resolutions or None) of the specs it is timed on
WORKLOADS: dict[str, tuple[str, int, tuple[int, ...] | None]] = {
    "mcu": ("mcu-mbv2", 1, None),
    "lut": ("ofa-mbv3-w1.2", 1, tuple(range(160, 225, 4))),
    "gpu": ("ofa-mbv3-w1.0", 64, None),
    "measured": ("mnist-mbv3", 1, None),
    "learned": ("mnist-mbv3", 1, None),
}


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def best_seconds(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None):
    best = float("inf")
    for _ in range(repeats):
        arg = setup() if setup else None
        start = time.perf_counter()
        fn() if arg is None else fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def make_specs(space_name: str, n: int, batch: int, resolutions: Sequence[int] | None, seed: int):
    space = supernet.get_space(space_name)
    rng = np.random.default_rng(seed)
    archs: dict[str, dict] = {}
    while len(archs) < n:
        arch = space.sample(rng)
        if resolutions:
            arch["r"] = int(rng.choice(resolutions))
        archs.setdefault(space.arch_id(arch), arch)
    start = time.perf_counter()
    specs = [space.to_spec(a, batch=batch) for a in archs.values()]
    return specs, time.perf_counter() - start


def fresh(specs: Sequence[lm.NetworkSpec]) -> list[lm.NetworkSpec]:
    """Equal specs without their cached arrays."""
    return [lm.NetworkSpec(s.layers, s.input_shape, s.batch, s.name, s.blocks) for s in specs]


def bench_devices(n: int, repeats: int) -> None:
    pools: dict[tuple, tuple[list[lm.NetworkSpec], list[lm.NetworkSpec]]] = {}
    for name in lm.list_hardware():
        hw = lm.load_hardware(name)
        space, batch, resolutions = WORKLOADS[hw.kind]
        spaces = hw.profile.get("measurement", {}).get("spaces") or [space]
        if hw.kind == "measured" and space not in spaces:
            space = spaces[0]  # a table holds only the blocks of the spaces it was built on
        key = (space, batch, resolutions)
        context = {
            "hardware": name,
            "kind": hw.kind,
            "space": space,
            "batch": batch,
            "n_specs": n,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        }
        if key not in pools:
            specs, seconds = make_specs(space, n, batch, resolutions, seed=0)
            warmup, _ = make_specs(space, n, batch, resolutions, seed=1)
            pools[key] = (specs, warmup)
            shared = {**context, "hardware": None, "kind": None}
            shared["mean_layers"] = round(float(np.mean([len(s.layers) for s in specs])), 1)
            emit({"name": "to_spec_specs_per_s", "value": round(n / seconds), "unit": "specs/s",
                  **shared})  # fmt: skip
            build = best_seconds(
                lambda new: [s.arrays for s in new], repeats, setup=lambda s=specs: fresh(s)
            )
            emit({"name": "spec_arrays_specs_per_s", "value": round(n / build), "unit": "specs/s",
                  **shared})  # fmt: skip
            for s in [*specs, *warmup]:
                s.arrays  # noqa: B018 (built once, shared by every device, as in a search)
        specs, warmup = pools[key]
        for record in bench_device(name, specs, warmup, repeats):
            emit({**record, **context})


def bench_device(
    name: str, specs: list[lm.NetworkSpec], warmup: list[lm.NetworkSpec], repeats: int
) -> list[dict[str, Any]]:
    n = len(specs)

    def steady() -> lm.CostModel:
        model = lm.load_hardware(name)
        model.predict_many(warmup)  # other subnets of the space: the model is in use
        return model

    many = best_seconds(lambda model: model.predict_many(specs), repeats, setup=steady)
    first = best_seconds(
        lambda model: model.predict_many(specs), repeats, setup=lambda: lm.load_hardware(name)
    )
    cold = best_seconds(
        lambda new: lm.load_hardware(name).predict_many(new), repeats, setup=lambda: fresh(specs)
    )
    model = steady()
    loop = best_seconds(lambda: [model.predict(s) for s in specs], repeats)
    many_rate, loop_rate = n / many, n / loop
    return [
        {"name": "predict_many_specs_per_s", "value": round(many_rate), "unit": "specs/s",
         "goal": ">= 50000"},
        {"name": "predict_loop_specs_per_s", "value": round(loop_rate), "unit": "specs/s"},
        {"name": "predict_many_speedup_vs_loop", "value": round(many_rate / loop_rate, 2),
         "unit": "ratio"},
        {"name": "predict_many_first_call_specs_per_s", "value": round(n / first),
         "unit": "specs/s"},
        {"name": "predict_many_cold_specs_per_s", "value": round(n / cold), "unit": "specs/s"},
    ]  # fmt: skip


# space -> the devices a search of it costs (name, batch, options), as the demo's search does
SEARCHES: dict[str, list[tuple[str, int, dict[str, str]]]] = {
    "mnist-mbv3": [
        ("stm32f746", 1, {}),
        ("h100-sxm", 64, {"precision": "fp16", "runtime": "tensorrt"}),
        ("local-cpu", 1, {}),
    ],
    "ofa-mbv3-w1.0": [
        ("stm32f746", 1, {}),
        ("h100-sxm", 64, {"precision": "fp16", "runtime": "tensorrt"}),
        ("rtx4090", 1, {}),
    ],
}


def bench_new_archs(n: int, repeats: int) -> None:
    for space_name, devices in SEARCHES.items():
        bench_new_archs_of(space_name, devices, n, repeats)


def bench_new_archs_of(
    space_name: str, devices: list[tuple[str, int, dict[str, str]]], n: int, repeats: int
) -> None:
    """Arch -> every device's metrics for archs the search has not seen, after a few warm-up
    generations (so the parts they are made of are stored, as in a running search)."""
    space = supernet.get_space(space_name)
    models = [(lm.load_hardware(d), b, o) for d, b, o in devices]
    rng = np.random.default_rng(0)
    for _ in range(3):  # warm-up generations: parts stored, tables' entries cached
        warm = [space.sample(rng) for _ in range(n)]
        networks = space.spec_batch(warm)
        for hw, b, o in models:
            hw.predict_arrays(networks.with_batch(b), **o)
            hw.predict_arrays([space.to_spec(a, b) for a in warm[:200]], **o)

    def new_archs() -> list:
        return [space.sample(rng) for _ in range(n)]

    def assembled(archs: list) -> None:
        networks = space.spec_batch(archs)
        for hw, b, o in models:
            hw.predict_arrays(networks if b == 1 else networks.with_batch(b), **o)

    def via_specs(archs: list) -> None:
        specs = [space.to_spec(a) for a in archs]
        for hw, b, o in models:
            hw.predict_arrays(specs if b == 1 else [s.with_batch(b) for s in specs], **o)

    fast = n / best_seconds(assembled, repeats, setup=new_archs)
    slow = n / best_seconds(via_specs, repeats, setup=new_archs)
    context = {"space": space_name, "devices": [d for d, _, _ in devices], "archs": n}
    emit({"name": "new_archs_to_costs_per_s", "value": round(fast), "unit": "archs/s",
          "goal": ">= 20000", **context})  # fmt: skip
    emit({"name": "new_archs_via_specs_per_s", "value": round(slow), "unit": "archs/s",
          **context})  # fmt: skip
    emit({"name": "new_archs_speedup_vs_specs", "value": round(fast / slow, 2),
          "unit": "ratio", **context})  # fmt: skip


def bench_mcu() -> None:
    path = Path(lm.PROFILE_DIR) / "mcu" / "tinyengine-stm32h743.csv"
    rows = list(csv.DictReader(path.read_text().splitlines()))
    specs = [lm.zoo_spec(r["network"]) for r in rows]
    metrics = ("latency_ms", "peak_sram_kb", "flash_kb")
    measured = {m: np.array([float(r[m]) for r in rows]) for m in metrics}
    hw = lm.load_hardware("stm32h743")
    fitted = hw.predict_arrays(specs)
    loo = {m: np.zeros(len(rows)) for m in metrics}
    for i in range(len(rows)):
        keep = [j for j in range(len(rows)) if j != i]
        fit = hw.fit([specs[j] for j in keep], {m: v[keep] for m, v in measured.items()})
        cost = lm.from_profile(fit.profile, "loo").predict(specs[i])
        for m in metrics:
            loo[m][i] = cost[m]
    for m in metrics:
        short = m.removesuffix("_ms").removesuffix("_kb").removeprefix("peak_")
        for kind, predicted in (("in_sample", fitted[m]), ("leave_one_out", loo[m])):
            errors = predicted / measured[m] - 1
            for row, err, p in zip(rows, errors, predicted, strict=True):
                emit({"name": f"mcu_{short}_error", "value": round(float(err), 4),
                      "unit": "relative", "fit": kind, "network": row["network"],
                      "predicted": round(float(p), 2), "measured": float(row[m]),
                      "hardware": "stm32h743", "source": "TinyEngine README"})  # fmt: skip
            emit({"name": f"mcu_{short}_mape", "value": round(float(np.mean(np.abs(errors))), 4),
                  "unit": "relative", "fit": kind, "networks": len(rows),
                  "hardware": "stm32h743"})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="distinct specs per workload")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-mcu", action="store_true", help="no MCU calibration figures")
    parser.add_argument("--only-new-archs", action="store_true", help="new_archs_* figures only")
    args = parser.parse_args()
    bench_new_archs(args.n, max(args.repeats, 5))
    if args.only_new_archs:
        return
    bench_devices(args.n, args.repeats)
    if not args.skip_mcu:
        bench_mcu()


if __name__ == "__main__":
    main()
