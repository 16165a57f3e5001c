"""Progress requests timed while once-for-all launches are in flight (used by
test_event_loop.py and experiments/bench_event_loop.py).

- `write_ofa_files`: a full-size once-for-all MobileNetV3 supernet file (untrained, 43 MB)
  and a predictor fitted on made-up accuracies
- `ServerProcess`: the app `nas serve` builds, in a process of its own (so that the client
  threads timing it do not share its interpreter lock), whose launches start no worker
- `time_progress`: GET /searches/{id} timed, alone or while launches run back to back

A launch here is the whole POST /searches: the config checked (the 43 MB file read and
hashed, the predictor loaded, the devices' models opened) and the search recorded. Its
worker is not started: a worker is another process, and on the 2 cores of the machines
this runs on, the CPU of a worker per launch would be measured instead of the server's
event loop.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np

TOKEN = "load-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OFA_SPACE = "ofa-mbv3-w1.2"  # 3 channels, 1,000 classes: the network the Note10 tables time


def write_ofa_files(folder: Path) -> tuple[Path, Path]:
    """supernet.pt (untrained weights, and a dataset it never reads) and predictor.pt
    (fitted on made-up accuracies) in `folder`: a predictor-driven search runs neither
    network nor data."""
    import supernet
    from supernet.data import DatasetConfig
    from supernet.mbconv.checkpoint import save_supernet
    from supernet.mbconv.predictor import Measurement, fit_predictor

    space = supernet.get_space(OFA_SPACE)
    data_config = DatasetConfig(kind="imagefolder", path=str(folder / "never-read"))
    imagenet_like = SimpleNamespace(
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), classes=list(range(1000))
    )
    path = folder / "supernet.pt"
    sha = save_supernet(supernet.build(space), space, imagenet_like, data_config, path, {})
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(16)]
    measurements = [
        Measurement(dict(a), space.arch_id(a), float(0.5 + 0.02 * a["r"] / 224), 1.0) for a in archs
    ]
    predictor = fit_predictor(space, measurements, sha, held_out=4, epochs=5)
    return path, predictor.save(folder / "predictor.pt")


def ofa_search(files: tuple[Path, Path], name: str) -> dict[str, Any]:
    supernet_path, predictor_path = files
    return {
        "name": name,
        "supernet": str(supernet_path),
        "predictor": str(predictor_path),
        "targets": {"note10": {"latency_ms": 100}, "h100-sxm": {"batch": 64}},
        "algorithm": {"population": 8, "generations": 2},
    }


def _serve_without_workers(db: str, data_dir: str, port: int) -> None:
    import uvicorn

    from nas.service.app import create_app
    from nas.store import Store

    app = create_app(Store(db), Path(data_dir), TOKEN, supervise=False)
    app.state.jobs.start_worker = lambda search_id, force=False: None  # see the docstring
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def server_process(db: str, data_dir: Path) -> Iterator[str]:
    """The server's URL while it runs in a process of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_without_workers, args=(db, str(data_dir), port), daemon=True
    )
    process.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/searches", timeout=5).status_code == 200:
                    break
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {process.exitcode})")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.join(timeout=30)


@dataclass
class Timing:
    """GETs timed (ms), and the launches they ran during, each (sent, answered)."""

    milliseconds: list[float] = field(default_factory=list)
    launches: list[tuple[float, float]] = field(default_factory=list)
    gets_sent: int = 0

    def p99(self) -> float:
        return float(np.percentile(self.milliseconds, 99))

    def summary(self) -> dict[str, Any]:
        seconds = [answered - sent for sent, answered in self.launches]
        return {
            "gets": len(self.milliseconds),
            "p50_ms": round(float(np.median(self.milliseconds)), 1),
            "p99_ms": round(self.p99(), 1),
            "max_ms": round(max(self.milliseconds), 1),
            "launches": len(self.launches),
            **({"launch_median_s": round(float(np.median(seconds)), 3)} if seconds else {}),
        }


def _within(gets: list[tuple[float, float]], launches: list[tuple[float, float]]) -> list[float]:
    """The milliseconds of the GETs sent while a launch was in flight (sent, not yet
    answered), however long they took: one that a launch blocks is answered after it."""
    return [
        (end - start) * 1000
        for start, end in gets
        if any(sent <= start < answered for sent, answered in launches)
    ]


def time_progress(
    url: str,
    search_id: int,
    count: int,
    launching: tuple[Path, Path] | None = None,
    timeout: float = 240,
) -> Timing:
    """`count` GET /searches/{search_id} timed one after another: with no launch in flight,
    or with `launching` (the OFA files) while one launch after another runs (one in flight
    at a time), counting only the GETs sent while a launch was in flight. Fewer than `count`
    if `timeout` seconds pass first; a launch not answered 201 raises."""
    sent: list[float] = []  # every launch's, the one in flight included
    launches: list[tuple[float, float]] = []
    failures: list[str] = []
    done = threading.Event()

    def launch_again_and_again() -> None:
        with httpx.Client(base_url=url, timeout=120) as launcher:
            while not done.is_set():
                sent.append(time.perf_counter())
                config = ofa_search(launching, f"load-{search_id}-{len(sent)}")
                answer = launcher.post("/searches", json=config, headers=AUTH)
                launches.append((sent[-1], time.perf_counter()))
                if answer.status_code != 201:
                    failures.append(f"{answer.status_code}: {answer.text}")
                    return

    gets: list[tuple[float, float]] = []
    loader = threading.Thread(target=launch_again_and_again, daemon=True)
    if launching is not None:
        loader.start()
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline and not failures:
                if launching is None:
                    timed = len(gets)
                else:  # the launch in flight counts as answered later
                    in_flight = [(sent[-1], math.inf)] if len(sent) > len(launches) else []
                    timed = len(_within(gets, launches + in_flight))
                if timed >= count:
                    break
                start = time.perf_counter()
                answer = client.get(f"/searches/{search_id}")
                gets.append((start, time.perf_counter()))
                if answer.status_code != 200 or answer.json()["id"] != search_id:
                    raise AssertionError(f"GET /searches/{search_id}: {answer.text}")
    finally:
        done.set()
        if launching is not None:
            loader.join(timeout=120)
    if failures:
        raise AssertionError(f"a launch failed: {failures[0]}")
    if launching is None:
        return Timing([(end - start) * 1000 for start, end in gets], [], len(gets))
    return Timing(_within(gets, launches), launches, len(gets))  # every launch answered now
