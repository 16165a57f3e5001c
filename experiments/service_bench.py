"""What the benches that time the service from outside share (bench_api.py, bench_page.py):
a stored search they reuse between runs, and `nas serve` in a process of its own, on a free
port, started, waited for, and stopped with its search workers (they join its process
group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Search, Store

ROOT = Path(__file__).resolve().parents[1]


def stored_search(url: str, name: str, config: Callable[[], dict[str, Any]]) -> int:
    """The id of the completed search `name` in the database at `url`; when there is none, the
    search `config()` gives is run here first (in-process, its progress on stderr)."""
    store = Store(url)
    try:
        with store.session() as s:
            done = s.scalars(
                select(Search.id).where(Search.name == name, Search.status == "completed")
            ).first()
        if done is not None:
            return done
        started = time.perf_counter()
        raw = {**config(), "name": name, "database": url}
        outcome = launch_search(check_search_config(raw, "bench"), store, progress=True)
        print(
            f"stored search {outcome.search_id}: {outcome.candidates} candidates in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        return outcome.search_id
    finally:
        store.dispose()


class ServeProcess:
    """`nas serve` over sqlite WORKDIR/DB_FILE with WORKDIR as its data folder; its log in
    WORKDIR/server.log. `token` None: reads and writes open (no NAS_API_TOKEN)."""

    def __init__(self, workdir: Path, db_file: str, token: str | None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = (workdir / "server.log").open("ab")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
        env.pop("NAS_API_TOKEN", None)
        if token is not None:
            env["NAS_API_TOKEN"] = token
        command = [sys.executable, "-m", "nas", "serve", "--port", str(port)]
        command += ["--db", f"sqlite:///{workdir / db_file}", "--data-dir", str(workdir)]
        self.proc = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # its search workers join its process group
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/searches", timeout=5).status_code == 200:
                    return
            if self.proc.poll() is not None:
                raise SystemExit(f"nas serve exited with {self.proc.returncode}; see server.log")
            time.sleep(0.2)
        raise SystemExit("nas serve did not answer in 60 s; see server.log")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()
