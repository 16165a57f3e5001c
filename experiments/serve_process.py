"""`nas serve` in a process of its own, on a free port, for the benches that time the
service from outside (bench_api.py, bench_page.py): started, waited for, stopped with its
search workers (they join its process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


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
