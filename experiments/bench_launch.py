"""Launching a search through `nas serve`: how long POST /searches takes, and where Ray runs.

Prints one JSON object per figure:
  launch_post_seconds          POST /searches of a search with `workers: 2` (Ray actors): the
                               slowest of --repeats (the first, if the server started Ray)
                               and the median; the median of the same search with
                               `workers: 0`, measured in turn (the baseline), and the ratio of
                               the medians (goal: under 1 s, and a ratio near 1: recording a
                               search starts no Ray)
  server_ray_processes         Ray processes (raylet, gcs_server, ...) whose parent is the
                               server process, after the searches ran (goal: 0)
  worker_ray_searches          of the `workers: 2` searches, how many completed in their
                               worker process (each started its own local Ray)

    python experiments/bench_launch.py [--repeats 3]

A small supernet and its predictor are trained here the first time (a few seconds, shared
with bench_api.py in WORKDIR/supernet), and a `nas serve` process is started on a free port.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import TOKEN, Server, prepare, search_config

ROOT = Path(__file__).resolve().parents[1]
RAY_NAMES = ("raylet", "gcs_server", "ray::", "dashboard", "log_monitor", "monitor.py")


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            name = text[text.index("(") + 1 : text.rindex(")")]
            found.append((int(stat.parent.name), f"{name}: {command.strip()}"))
    return found


def ray_processes(pid: int) -> list[str]:
    return [c for _, c in children(pid) if any(n in c for n in RAY_NAMES)]


def post(server: Server, config: dict[str, Any]) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    created = httpx.post(server.url + "/searches", json=config, headers=headers, timeout=120)
    elapsed = time.perf_counter() - started
    created.raise_for_status()
    return created.json()["id"], elapsed


def wait(server: Server, search_id: int, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(f"{server.url}/searches/{search_id}", timeout=60).json()
        if info["finished"]:
            return info
        time.sleep(0.5)
    raise SystemExit(f"search {search_id} did not finish in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_launch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    prepare(args.workdir, 100)  # the trained files (and a stored search of 100)
    server = Server(args.workdir)
    seconds: dict[int, list[float]] = {0: [], 2: []}
    ray_searches: list[int] = []
    ray_children: list[str] = []
    try:
        for repeat in range(args.repeats):
            for workers in (2, 0) if repeat % 2 else (0, 2):  # in turn: noise hits both
                name = f"launch-{workers}-{repeat}"
                config = {**search_config(args.workdir, name, 8, 1), "workers": workers}
                search_id, elapsed = post(server, config)
                seconds[workers].append(elapsed)
                ray_children += ray_processes(server.proc.pid)
                info = wait(server, search_id)
                if workers and info["status"] == "completed":
                    ray_searches.append(search_id)
        ray_children += ray_processes(server.proc.pid)
    finally:
        server.stop()
    with_ray, without = statistics.median(seconds[2]), statistics.median(seconds[0])
    emit(
        "launch_post_seconds",
        round(max(seconds[2]), 3),
        "s",
        median=round(with_ray, 3),
        baseline_workers_0_median=round(without, 3),
        ratio_of_medians_vs_workers_0=round(with_ray / without, 2),
        runs={str(k): [round(v, 3) for v in vs] for k, vs in seconds.items()},
        goal="< 1 s",
    )
    names = sorted({command.split(":")[0] for command in ray_children})  # not the long commands
    emit("server_ray_processes", len(set(ray_children)), "processes", names=names)
    emit("worker_ray_searches", len(ray_searches), "searches", of=args.repeats)


if __name__ == "__main__":
    main()
