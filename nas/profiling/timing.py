"""Timing subnets end to end on this machine: sample distinct archs, time their extracted
networks with the repeats spread over interleaved rounds, and `measure`, which writes the
timings as a measurement CSV."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import supernet
from latency_models.errors import HardwareError
from latency_models.torch.measure import Timing, TimingResult, device_name, time_module
from nas.profiling.measurements import CSV_FIELDS, check_statistic, measurement_rows, write_csv
from supernet import Arch, SearchSpace

log = logging.getLogger(__name__)


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """A transient rich progress bar on stderr; yields advance(n=1)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not enabled) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def sample_archs(
    space: SearchSpace,
    n: int,
    seed: int,
    exclude: set[str] | frozenset[str] = frozenset(),
    resolutions: Sequence[int] | None = None,
) -> list[Arch]:
    """`n` distinct random archs whose ids are not in `exclude` (at one of `resolutions`, if
    given)."""
    rng = np.random.default_rng(seed)
    archs: dict[str, Arch] = {}
    for _ in range(100 * n + 100):
        arch = space.sample(rng)
        if resolutions:
            arch = space.at_resolution(arch, int(rng.choice(list(resolutions))))
        aid = space.arch_id(arch)
        if aid not in exclude and aid not in archs:
            archs[aid] = arch
            if len(archs) == n:
                return list(archs.values())
    raise HardwareError(
        f"could not sample {n} distinct archs of {space.name!r} outside the excluded ones"
    )


def time_archs(
    space: SearchSpace,
    archs: Sequence[Arch],
    timing: Timing,
    batch: int,
    rounds: int,
    description: str = "timing subnets",
    instances: int = 1,
    progress: bool = True,
) -> list[list[TimingResult]]:
    """Time each arch's extracted network end to end. The repeats are split over `rounds`
    passes through all networks (each pass re-warms every network), so that a passing
    disturbance spreads over all of them. With `instances` > 1, each arch is also timed as
    other, separately extracted copies, interleaved: their agreement is the noise floor.
    Returns one list of results per instance."""
    import torch

    torch.manual_seed(0)
    net = supernet.build(space)
    copies = [[net.extract(arch).eval() for arch in archs] for _ in range(instances)]
    shapes = [space.input_shape(arch, batch) for arch in archs]
    per_round = Timing(
        timing.device,
        timing.precision,
        timing.threads,
        max(1, timing.warmup // rounds),
        max(1, math.ceil(timing.repeats / rounds)),
    )
    times: list[list[list[float]]] = [[[] for _ in archs] for _ in copies]
    total = rounds * len(archs) * instances
    with progress_bar(description, total, progress) as advance:
        for _ in range(rounds):
            for i, shape in enumerate(shapes):
                for c, nets in enumerate(copies):
                    times[c][i].extend(time_module(nets[i], shape, per_round).times_ms)
                    advance(1)
    log.info("timed %d subnets of %s (%d round(s))", len(archs), space.name, rounds)
    return [[TimingResult.of(t) for t in per_copy] for per_copy in times]


def _space(space: SearchSpace | str) -> SearchSpace:
    return supernet.get_space(space) if isinstance(space, str) else space


# ----- measure ----------------------------------------------------------------------------------


@dataclass
class MeasureResult:
    path: Path
    rows: list[dict[str, Any]]
    processor: str  # the processor that ran the timings

    @property
    def latencies(self) -> np.ndarray:
        return np.array([r["latency_ms"] for r in self.rows])


def measure(
    space: SearchSpace | str,
    device: str = "cpu",
    n: int = 20,
    batch: int = 1,
    precision: str = "fp32",
    seed: int = 0,
    resolutions: Sequence[int] | None = None,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    rounds: int = 10,
    statistic: str = "median",
    out: Path | None = None,
    progress: bool = True,
) -> MeasureResult:
    """Time `n` random subnets end to end and write a CSV (one row per subnet); the default
    path is runs/latency/SPACE-DEVICE-bBATCH-PRECISION.csv."""
    s = _space(space)
    timing = Timing(device, precision, threads, warmup, repeats)
    check_statistic(statistic)
    archs = sample_archs(s, n, seed, resolutions=resolutions)
    (results,) = time_archs(s, archs, timing, batch, rounds, f"timing {n} subnets", 1, progress)
    rows = measurement_rows(s, archs, results, timing, batch, statistic)
    path = out or Path("runs/latency") / f"{s.name}-{device}-b{batch}-{precision}.csv"
    write_csv(path, rows, CSV_FIELDS)
    log.info("wrote %d measured subnets to %s", len(rows), path)
    return MeasureResult(path, rows, device_name(device))
