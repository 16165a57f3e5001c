"""The HTTP service under load: front queries on a large stored search, with a search running.

Prints one JSON object per figure:
  api_pareto_cold_ms         the first query of each kind of front on the stored search (no
                             front kept yet): the work of one query, median and worst
  api_pareto_p50_ms          GET /searches/{id}/pareto on the stored search of --candidates
  api_pareto_p99_ms          candidates, from --clients concurrent clients, while a search runs
                             (goal: p50 <= 150 ms)
  api_progress_p50_ms        GET /searches/{id} of the running search, same clients
  api_error_rate             failed requests (non-2xx, or no answer) over all requests (goal: 0)
  search_slowdown_under_api_load
                             wall time of a search launched through the API while the clients
                             run, over the mean of the same search with no load before and
                             after it (goal: <= 1.2)

    python experiments/bench_api.py [--candidates 100000] [--clients 20] [--think 0.5]

Each client loops: poll the running search's progress, query one front of the stored search
(the search's objectives, one device, one device with a tighter limit, or the measured
ranking, in turn) and, every fourth time, the running search's front; then it waits
--think seconds, as a page polling a search does (the web page polls every 2 s).

The stored search is a real one: a small supernet and its accuracy predictor are trained
here (a few seconds), then a search of --candidates candidates is run and stored in
WORKDIR/api.db (about 3 minutes for 100,000); both are reused by later runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from service_bench import ServeProcess, stored_search

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
FRONT_QUERIES = [
    {},
    {"target": "stm32f746"},
    {"target": "stm32f746", "where": "peak_sram_kb<=6"},
    {"measured": "true"},
]


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def search_config(workdir: Path, name: str, population: int, generations: int) -> dict:
    return {
        "name": name,
        "supernet": str(workdir / "supernet" / "supernet.pt"),
        "predictor": str(workdir / "supernet" / "predictor.pt"),
        "objectives": [
            {"metric": "top1", "goal": "maximize"},
            {"metric": "stm32f746.latency_ms", "goal": "minimize"},
            {"metric": "h100-sxm.latency_ms", "goal": "minimize"},
        ],
        "targets": {
            "stm32f746": {"peak_sram_kb": 8, "flash_kb": 450, "latency_ms": 20},
            "h100-sxm": {
                "latency_ms": 0.28,
                "batch": 64,
                "precision": "fp16",
                "runtime": "tensorrt",
            },
        },
        "algorithm": {"population": population, "generations": generations, "seed": 0},
        "evaluation": "predictor",
    }


def prepare(workdir: Path, candidates: int) -> int:
    """A trained supernet and predictor, and a completed search of `candidates` stored in
    WORKDIR/api.db; returns the search's id (reused when it is already there)."""

    from supernet.mbconv.checkpoint import load_supernet
    from supernet.mbconv.predictor import fit_predictor, measure_archs
    from supernet.mbconv.train import TrainConfig, train_supernet

    out = workdir / "supernet"
    if not (out / "predictor.pt").is_file():
        config = TrainConfig(
            space="mnist-mbv3",
            data={"kind": "mnist", "limit": 64},
            out_dir=str(out),
            batch_size=16,
            bn_recalibration_images=16,
            phases=[{"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5, 7]}],
        )
        trained = load_supernet(train_supernet(config, progress=False).path)
        measured = measure_archs(trained, 40, seed=0, progress=False)
        predictor = fit_predictor(trained.space, measured, trained.sha256, held_out=5, epochs=20)
        predictor.save(out / "predictor.pt")
    name = f"stored-{candidates}"
    population = 100
    url = f"sqlite:///{workdir / 'api.db'}"
    return stored_search(
        url, name, lambda: search_config(workdir, name, population, candidates // population)
    )


def run_search(server: ServeProcess, workdir: Path, name: str, population: int, generations: int):
    """POST a search and wait for it; returns (its id, wall seconds from its row: created
    to finished, which includes starting its worker process)."""
    config = search_config(workdir, name, population, generations)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    created = httpx.post(server.url + "/searches", json=config, headers=headers, timeout=60)
    created.raise_for_status()
    search_id = created.json()["id"]
    while True:
        info = httpx.get(f"{server.url}/searches/{search_id}", timeout=60).json()
        if info["status"] not in ("running", "cancelling"):
            break
        time.sleep(0.2)
    if info["status"] != "completed":
        raise SystemExit(f"search {search_id} ended {info['status']}: {info['message']}")
    wall = datetime.fromisoformat(info["finished_at"]) - datetime.fromisoformat(info["created_at"])
    return search_id, wall.total_seconds()


class Clients:
    """`n` threads polling progress and querying fronts until stopped."""

    def __init__(self, server: ServeProcess, n: int, stored: int, think: float) -> None:
        self.server, self.stored, self.think = server, stored, think
        self.running: int | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pareto_ms: list[float] = []
        self.progress_ms: list[float] = []
        self.requests = self.errors = 0
        self.first_error = ""
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(n)]

    def get(self, client: httpx.Client, path: str, params: dict | None = None) -> float:
        started = time.perf_counter()
        ok, why = False, ""
        try:
            response = client.get(path, params=params)
            response.read()  # the whole body, unparsed: the clients measure the server
            ok, why = response.status_code == 200, f"{path}: {response.status_code}"
        except httpx.HTTPError as err:
            why = f"{path}: {type(err).__name__} {err}"
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.requests += 1
            if not ok:
                self.errors += 1
                self.first_error = self.first_error or why
        return elapsed

    def loop(self, index: int) -> None:
        with httpx.Client(base_url=self.server.url, timeout=60) as client:
            turn = index
            while not self.stop.is_set():
                running = self.running
                if running is not None:
                    elapsed = self.get(client, f"/searches/{running}")
                    with self.lock:
                        self.progress_ms.append(elapsed)
                query = FRONT_QUERIES[turn % len(FRONT_QUERIES)]
                elapsed = self.get(client, f"/searches/{self.stored}/pareto", query)
                with self.lock:
                    self.pareto_ms.append(elapsed)
                if running is not None and turn % 4 == 0:
                    self.get(client, f"/searches/{running}/pareto")
                turn += 1
                self.stop.wait(self.think)

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_api")
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--think", type=float, default=0.5, help="seconds between a client's polls")
    parser.add_argument("--population", type=int, default=64, help="the timed search's")
    parser.add_argument("--generations", type=int, default=150, help="the timed search's")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    stored = prepare(args.workdir, args.candidates)
    shutil.rmtree(args.workdir / "logs", ignore_errors=True)
    server = ServeProcess(args.workdir, "api.db", TOKEN)
    try:
        cold = []
        for query in FRONT_QUERIES:
            started = time.perf_counter()
            response = httpx.get(
                f"{server.url}/searches/{stored}/pareto", params=query, timeout=120
            )
            response.raise_for_status()
            cold.append((time.perf_counter() - started) * 1000)
        front = httpx.get(f"{server.url}/searches/{stored}/pareto", timeout=120).json()
        emit(
            "api_pareto_cold_ms",
            round(statistics.median(cold), 1),
            "ms",
            worst=round(max(cold), 1),
            each={json.dumps(q): round(ms, 1) for q, ms in zip(FRONT_QUERIES, cold, strict=True)},
            candidates=args.candidates,
            front_points=len(front["front"]),
            note="the first query of each kind: the front is computed, none is kept yet",
        )
        timed = (args.population, args.generations)
        _, before = run_search(server, args.workdir, "alone-before", *timed)
        with Clients(server, args.clients, stored, args.think) as clients:
            running, loaded = None, 0.0
            clients.running = None

            def launch() -> None:
                nonlocal running, loaded
                running, loaded = run_search(server, args.workdir, "under-load", *timed)

            # the clients poll the stored search until the loaded search exists, then it too
            launcher = threading.Thread(target=launch)
            launcher.start()
            while launcher.is_alive():
                if clients.running is None:
                    with contextlib.suppress(httpx.HTTPError):
                        items = httpx.get(f"{server.url}/searches?offset=0&limit=500").json()
                        ids = [s["id"] for s in items["items"] if s["name"] == "under-load"]
                        clients.running = ids[-1] if ids else None
                time.sleep(0.1)
            launcher.join()
        _, after = run_search(server, args.workdir, "alone-after", *timed)
    finally:
        server.stop()
    context = {
        "clients": args.clients,
        "think_s": args.think,
        "requests": clients.requests,
        "candidates": args.candidates,
        "front_points": len(front["front"]),
        "timed_search": f"{args.population} x {args.generations}",
    }
    pareto = clients.pareto_ms
    emit("api_pareto_p50_ms", round(percentile(pareto, 0.5), 1), "ms", goal="<= 150", **context)
    emit("api_pareto_p99_ms", round(percentile(pareto, 0.99), 1), "ms", **context)
    emit(
        "api_progress_p50_ms",
        round(percentile(clients.progress_ms, 0.5), 1),
        "ms",
        p99=round(percentile(clients.progress_ms, 0.99), 1),
        **context,
    )
    emit(
        "api_error_rate",
        clients.errors / max(clients.requests, 1),
        "ratio",
        goal="0",
        errors=clients.errors,
        first_error=clients.first_error,
        **context,
    )
    baseline = (before + after) / 2
    emit(
        "search_slowdown_under_api_load",
        round(loaded / baseline, 3),
        "ratio",
        goal="<= 1.2",
        loaded_s=round(loaded, 2),
        alone_before_s=round(before, 2),
        alone_after_s=round(after, 2),
        **context,
    )


if __name__ == "__main__":
    main()
