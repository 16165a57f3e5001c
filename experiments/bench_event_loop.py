"""The server's event loop while once-for-all searches are launched: progress requests stay
fast because a launch's checks (the 43 MB supernet read and hashed, the predictor loaded)
and its SQL run off the loop.

Prints one JSON object per figure:
  api_progress_p99_ms_during_launch  GET /searches/{id}, one after another, counting those
                                     sent while a POST /searches of the once-for-all
                                     supernet (ofa-mbv3-w1.2, 43 MB) was in flight (one
                                     launch at a time, back to back); goal: < 100 ms.
                                     With p50, max, the launches and their median
  api_progress_p99_ms_idle           the same GETs with no launch in flight (the baseline),
                                     measured in turn with the loaded ones, --rounds times

    python experiments/bench_event_loop.py [--gets 600] [--rounds 3]

The server is the app `nas serve` builds, on a SQLite file, in a process of its own; its
launches record their searches but start no worker process (on 2 cores a worker's CPU
would be measured instead of the loop: see tests/nas/service/launch_load.py, shared with
the test of this figure). The supernet file is untrained (its weights are not used by a
predictor-driven launch); it is written to WORKDIR once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.nas.service.launch_load

from tests.nas.service.launch_load import (
    AUTH,
    Timing,
    ofa_search,
    server_process,
    time_progress,
    write_ofa_files,
)

ROOT = Path(__file__).resolve().parents[1]


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_event_loop")
    parser.add_argument("--gets", type=int, default=600, help="GETs timed of each kind")
    parser.add_argument("--rounds", type=int, default=3, help="idle and loaded, in turn")
    args = parser.parse_args()
    ofa = args.workdir / "ofa"
    ofa.mkdir(parents=True, exist_ok=True)
    files = (ofa / "supernet.pt", ofa / "predictor.pt")
    if not all(f.is_file() for f in files):
        files = write_ofa_files(ofa)
    database = args.workdir / "loop.db"
    database.unlink(missing_ok=True)  # each run on a new database
    idle, loaded = Timing(), Timing()
    with server_process(f"sqlite:///{database}", args.workdir / "data") as url:
        first = httpx.post(
            url + "/searches", json=ofa_search(files, "first"), headers=AUTH, timeout=120
        )
        first.raise_for_status()
        search_id = first.json()["id"]
        per_round = max(1, args.gets // args.rounds)
        for _ in range(args.rounds):  # in turn: the host's other load hits both
            for timing, launching in ((idle, None), (loaded, files)):
                part = time_progress(url, search_id, per_round, launching=launching)
                timing.milliseconds += part.milliseconds
                timing.launches += part.launches
                timing.gets_sent += part.gets_sent
    emit(
        "api_progress_p99_ms_during_launch",
        round(loaded.p99(), 1),
        "ms",
        **loaded.summary(),
        gets_sent=loaded.gets_sent,
        idle_p99_ms=round(idle.p99(), 1),
        goal="< 100 ms",
        supernet_mb=round(files[0].stat().st_size / 1e6, 1),
    )
    emit("api_progress_p99_ms_idle", round(idle.p99(), 1), "ms", **idle.summary())


if __name__ == "__main__":
    main()
