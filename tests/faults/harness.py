"""Shared machinery of the fault suite (also used by experiments/bench_faults.py).

- a search driver started as a real process, with hooks to hang inside a generation's
  transaction (so that a SIGKILL lands while it is open) or to slow every generation down
- checks that a search's stored candidates are whole generations, with contiguous trials
- the kill -9 / resume loop, and 4 searches launched at once
- seeded fuzzers of search configs and of arch dicts (no new dependencies)
- a live `nas serve` process on a free port (the HTTP API's fuzz, tests/faults/api_fuzz.py,
  runs against one)
- an export worker killed while its files are staged
- filesystem faults: a write that fails half way (any errno), and as mounts (root only): a
  small tmpfs as a full disk, a read-only bind mount
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]

# A driver process: the `nas` CLI, with two hooks on every SQL statement it runs.
# FAULT_HANG_AT=k: on the k-th INSERT INTO metrics (the k-th generation written by this
# process, inside its transaction, before the commit) write FAULT_MARKER and hang there.
# FAULT_SLOW_S=s: sleep s seconds after each such insert (still inside the transaction).
DRIVER_CODE = r"""
import os, sys, time
from pathlib import Path
from sqlalchemy import event
from sqlalchemy.engine import Engine
hang_at = int(os.environ.get("FAULT_HANG_AT", "0") or 0)
slow = float(os.environ.get("FAULT_SLOW_S", "0") or 0)
marker = os.environ.get("FAULT_MARKER")
seen = [0]

@event.listens_for(Engine, "after_cursor_execute")
def _fault_hook(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("INSERT INTO METRICS"):
        seen[0] += 1
        if slow:
            time.sleep(slow)
        if hang_at and seen[0] == hang_at:
            if marker:
                Path(marker).write_text(str(os.getpid()))
            time.sleep(3600)

from nas.cli import app
sys.argv = ["nas", *sys.argv[1:]]
app()
"""


def driver_env(**extra: Any) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NAS_DATABASE_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_driver(
    args: list[str], log: Path, code: str = DRIVER_CODE, **env: Any
) -> subprocess.Popen:
    """`nas ARGS` in a new process (stdout and stderr to `log`), with the hooks of `code`."""
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=driver_env(**env),
        cwd=ROOT,
    )


def write_config(raw: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


# ----- what a search has stored -------------------------------------------------------------


@dataclass
class Stored:
    generations_done: int
    status: str
    rows: list[tuple[int, int, str]]  # (trial, generation, arch_id)

    @property
    def pairs(self) -> set[tuple[int, str]]:
        return {(t, a) for t, _, a in self.rows}


def stored(store, search_id: int) -> Stored:
    from nas.store import Candidate, Search

    with store.session() as s:
        row = s.get(Search, search_id)
        rows = s.execute(
            select(Candidate.trial, Candidate.generation, Candidate.arch_id).where(
                Candidate.search_id == search_id
            )
        ).all()
        return Stored(row.generations_done, row.status, [tuple(r) for r in rows])


def problems_of(state: Stored, population: int | Callable[[int], int]) -> list[str]:
    """What is wrong with a search's rows: not whole generations, gaps, duplicates.
    `population`: every generation's size, or the size of generation g (an active search's
    rounds: `generation_sizes`)."""
    size = population if callable(population) else (lambda g: population)
    out = []
    trials = sorted(t for t, _, _ in state.rows)
    n = len(trials)
    expected = sum(size(g) for g in range(state.generations_done))
    if n != expected:
        out.append(f"{n} candidates for {state.generations_done} generations ({expected} expected)")
    if trials != list(range(n)):
        dup = [t for t, c in Counter(trials).items() if c > 1]
        out.append(f"trials not 0..{n - 1}: duplicates {dup[:10]}, first {trials[:5]}...")
    per = Counter(g for _, g, _ in state.rows)
    if per != {g: size(g) for g in range(state.generations_done)}:
        out.append(f"generation sizes {dict(sorted(per.items()))}")
    return out


def generation_sizes(raw_config: dict[str, Any]) -> tuple[Callable[[int], int], int]:
    """The size of each generation of a search and its total: population x generations, or an
    active search's rounds (its initial sample, then batches up to the budget)."""
    from nas.config import active_plan, read_search_config

    config = read_search_config(raw_config)
    if config.evaluation != "active":
        a = config.algorithm
        return (lambda g: a.population), a.population * a.generations
    plan = active_plan(config)

    def size(g: int) -> int:
        left = plan.budget - plan.initial - plan.batch * (g - 1)
        return plan.initial if g == 0 else min(plan.batch, left)

    return size, plan.budget


def search_id_by_name(store, name: str) -> int | None:
    from nas.store import Search

    with store.session() as s:
        return s.scalar(select(Search.id).where(Search.name == name))


# ----- kill -9 and resume ---------------------------------------------------------------------


@dataclass
class KillReport:
    kills_tried: int = 0
    kills_survived: int = 0
    in_transaction_kills: int = 0
    candidates_lost: int = 0
    candidates_duplicated: int = 0
    final_candidates: int = 0
    expected_candidates: int = 0
    modes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _wait(predicate, proc: subprocess.Popen, timeout: float, what: str, log: Path) -> bool:
    """Poll until `predicate()`; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


def kill_resume_loop(
    url: str,
    raw_config: dict[str, Any],
    workdir: Path,
    kills: int,
    seed: int,
    slow_s: float = 0.1,  # 30 generations outlast any kill moment below
    timeout: float = 180.0,
) -> KillReport:
    """Launch the search of `raw_config` as a real process and SIGKILL its driver `kills`
    times at seeded random moments (the first one inside an open generation transaction),
    resuming with `nas search resume ID --force` after each; then resume in this process to
    the end. Checks the stored rows after every kill."""
    from nas.search import COMPLETED, resume_search
    from nas.store import Store

    rng = random.Random(seed)
    pop, total = generation_sizes(raw_config)
    report = KillReport(expected_candidates=total)
    config_path = write_config(raw_config, workdir / f"search-{seed}.yaml")
    log = workdir / f"driver-{seed}.log"
    store = Store(url)
    search_id: int | None = None
    before: set[tuple[int, str]] = set()
    for k in range(kills):
        mode = "transaction" if k == 0 else rng.choice(["transaction", "delay", "startup"])
        if search_id is None:
            mode = "transaction" if mode == "startup" else mode
            args = ["search", "launch", str(config_path), "--db", url, "--no-progress"]
        else:
            args = ["search", "resume", str(search_id), "--force", "--db", url, "--no-progress"]
        marker = workdir / f"hung-{seed}-{k}"
        hang_at = rng.randint(1, 3) if mode == "transaction" else 0
        start_done = stored(store, search_id).generations_done if search_id else 0
        proc = start_driver(
            args, log, FAULT_HANG_AT=hang_at, FAULT_SLOW_S=slow_s, FAULT_MARKER=marker
        )

        def progressed(start_done=start_done, sid=search_id) -> bool:
            sid = sid or search_id_by_name(store, raw_config["name"])
            return sid is not None and stored(store, sid).generations_done > start_done

        if mode == "transaction":
            alive = _wait(marker.exists, proc, timeout, "the hung transaction", log)
        elif mode == "delay":
            alive = _wait(progressed, proc, timeout, "a generation", log)
            time.sleep(rng.uniform(0.0, 0.4))
        else:  # startup: a random moment from the start (opening files, restoring, lease)
            time.sleep(rng.uniform(0.2, 1.5))
            alive = proc.poll() is None
        report.modes.append(mode)
        if not alive or proc.poll() is not None:
            proc.wait()
            report.problems.append(f"kill {k} ({mode}): driver ended first, rc {proc.returncode}")
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        report.kills_tried += 1
        search_id = search_id or search_id_by_name(store, raw_config["name"])
        if search_id is None:
            continue  # killed before the search row existed: launch again
        state = stored(store, search_id)
        problems = problems_of(state, pop)
        if mode == "transaction":
            report.in_transaction_kills += 1
            # the generation in flight is lost, the ones before it are kept
            if state.generations_done != start_done + hang_at - 1:
                problems.append(
                    f"hung in generation {start_done + hang_at - 1} but "
                    f"{state.generations_done} generations stored"
                )
        lost = before - state.pairs
        report.candidates_lost += len(lost)
        report.candidates_duplicated += len(state.rows) - len({t for t, _, _ in state.rows})
        if lost:
            problems.append(f"{len(lost)} stored candidates lost")
        if problems:
            report.problems += [f"kill {k} ({mode}): {p}" for p in problems]
        else:
            report.kills_survived += 1
        before = state.pairs
    if search_id is None:
        search_id = search_id_by_name(store, raw_config["name"])
    if search_id is not None:
        with store.session() as s:
            finished = store.search(s, search_id).status == COMPLETED
        # a driver may complete a small search in the moment before its kill lands
        outcome = None if finished else resume_search(search_id, store, force=True, progress=False)
        state = stored(store, search_id)
        report.final_candidates = len(state.rows)
        report.candidates_lost += len(before - state.pairs)
        report.candidates_duplicated += len(state.rows) - len({t for t, _, _ in state.rows})
        if outcome is not None and outcome.status != COMPLETED:
            report.problems.append(f"final resume: {outcome.status} {outcome.message}")
        report.problems += [f"final: {p}" for p in problems_of(state, pop)]
    store.dispose()
    return report


# ----- an export worker killed --------------------------------------------------------------

# `nas export-job ID`, whose export writes every file into its staging folder, then writes
# FAULT_MARKER (its pid) and hangs there, before the files are moved into place.
EXPORT_WORKER_CODE = r"""
import os, sys, time
from pathlib import Path
import nas.export.run as run
real = run.write_model_files

def write_then_hang(*args, **kwargs):
    written = real(*args, **kwargs)
    Path(os.environ["FAULT_MARKER"]).write_text(str(os.getpid()))
    time.sleep(3600)
    return written

run.write_model_files = write_then_hang
from nas.cli import app
sys.argv = ["nas", *sys.argv[1:]]
app()
"""


def kill_export_worker(url: str, export_id: int, workdir: Path, timeout: float = 180) -> None:
    """Run export `export_id` in a worker process and SIGKILL it once its files are staged."""
    marker, log = workdir / f"staged-{export_id}", workdir / f"export-{export_id}.log"
    args = ["export-job", str(export_id), "--db", url]
    proc = start_driver(args, log, EXPORT_WORKER_CODE, FAULT_MARKER=marker)
    if not _wait(marker.exists, proc, timeout, "the staged export", log):
        raise AssertionError(f"the export worker ended first:\n{log.read_text()[-3000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# ----- filesystem faults ----------------------------------------------------------


class MountUnavailable(RuntimeError):
    """This machine cannot stage the fault (not root, or mounting is not allowed)."""


def mount_unavailable() -> str | None:
    """Why mounts cannot be made here, or None if they can (as far as can be told before
    trying: a container may refuse a root's mount too, which `mounted` reports)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root: a tmpfs or a read-only bind mount needs root to mount"
    return None


@contextlib.contextmanager
def mounted(folder: Path, *args: str) -> Iterator[Path]:
    """`mount ARGS folder` (folder made if missing), unmounted on the way out whatever
    happened; MountUnavailable if it cannot be made."""
    reason = mount_unavailable()
    if reason:
        raise MountUnavailable(reason)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise MountUnavailable(f"mount {' '.join(args)} failed: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        _unmount(folder)


def _unmount(folder: Path, seconds: float = 10) -> None:
    """umount `folder`, retried while a process that used it is still exiting; detached
    (umount -l) as a last resort, so that no mount outlives its test."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(folder)], check=True)
            raise AssertionError(f"{folder} was still in use after {seconds} s; detached")
        time.sleep(0.2)


def full_disk(folder: Path, size: str = "1m") -> contextlib.AbstractContextManager[Path]:
    """A tmpfs of `size` at `folder`: smaller than one export, so the disk fills up."""
    return mounted(folder, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


@contextlib.contextmanager
def read_only(source: Path, folder: Path) -> Iterator[Path]:
    """`source` bind-mounted read-only at `folder` (remounted read-only where an older
    mount(8) ignores ro on a bind)."""
    source.mkdir(parents=True, exist_ok=True)
    with mounted(folder, "--bind", "-o", "ro", str(source)):
        if not os.statvfs(folder).f_flag & os.ST_RDONLY:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder


def staged(folder: Path) -> list[str]:
    """Staging folders left anywhere under `folder`."""
    from nas.export.run import STAGING_MARK

    return [str(p) for p in folder.rglob(f"*{STAGING_MARK}*")]


def disk_fails_writing(monkeypatch, code: int, name: str = "model.state_dict.pt") -> None:
    """In this process, writing the file `name` (with Path.write_bytes, as the export's
    writers do) stops half way with OSError `code`, as a write(2) that meets a full disk
    (ENOSPC), a quota (EDQUOT) or a read-only remount (EROFS) does: it names no file."""
    real = Path.write_bytes

    def write_half_then_fail(self: Path, data) -> int:
        if self.name != name:
            return real(self, data)
        real(self, bytes(data)[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)


def nas_export(
    search_id: int, candidate: int, out: Path, url: str, fmt: str | None = None
) -> subprocess.CompletedProcess:
    """`nas export` as its own process (formats `fmt`, else the search's defaults); torch's
    C++ writers once aborted the whole process on a full disk, which an in-process runner
    would not survive."""
    args = ["export", str(search_id), str(candidate), "--out", str(out), "--db", url]
    return subprocess.run(
        [sys.executable, "-m", "nas", *args, *(["--format", fmt] if fmt else [])],
        capture_output=True,
        text=True,
        env=driver_env(),
        cwd=ROOT,
        timeout=600,
    )


def http_export(
    store, data_dir: Path, search_id: int, candidate: int, formats: list[str], timeout=300
) -> dict[str, Any]:
    """POST an export to a server over `store` whose data folder is `data_dir`; wait for the
    export to end and for its worker (a real process) to exit. Returns GET /exports/ID."""
    from fastapi.testclient import TestClient

    from nas.service.app import create_app

    token = "fault-token"
    service = create_app(store, data_dir, token, supervise=False)
    with TestClient(service) as client:
        queued = client.post(
            f"/searches/{search_id}/candidates/{candidate}/export",
            json={"formats": formats},
            headers={"Authorization": f"Bearer {token}"},
        )
        if queued.status_code != 202:
            raise AssertionError(f"export refused: {queued.status_code} {queued.text}")
        export_id = queued.json()["id"]
        deadline = time.monotonic() + timeout
        while not (info := client.get(f"/exports/{export_id}").json())["finished"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"export {export_id} still {info['status']} at {timeout} s")
            time.sleep(0.3)
        service.state.jobs.worker("export", export_id).wait(timeout=60)  # it may use a mount
    return info


def half_written(place: Path) -> list[str]:
    """Everything under `place`, which was empty before a failed export: staging folders,
    partial files, folders made for the export."""
    return sorted(str(p.relative_to(place)) for p in place.rglob("*")) if place.exists() else []


# ----- searches launched at once ---------------------------------------------------------------


def launch_at_once(url: str, raws: list[dict[str, Any]], workdir: Path, timeout: float = 300):
    """Start one `nas search launch --json` process per config at the same instant; returns
    [(returncode, outcome dict or None, log text)]."""
    procs = []
    for i, raw in enumerate(raws):
        path = write_config(raw, workdir / f"concurrent-{i}.yaml")
        out = subprocess.Popen(
            [sys.executable, "-m", "nas", "search", "launch", str(path), "--db", url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=driver_env(),
            cwd=ROOT,
        )
        procs.append(out)
    results = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        outcome = None
        for line in stdout.decode().splitlines():
            if line.startswith("{"):
                outcome = json.loads(line)
        results.append((p.returncode, outcome, stderr.decode()[-3000:]))
    return results


def check_concurrent(url: str, raws: list[dict[str, Any]], results) -> list[str]:
    """Each process completed its own search, with exactly its own candidates."""
    from nas.store import Store

    out = []
    store = Store(url)
    ids = []
    for raw, (rc, outcome, err) in zip(raws, results, strict=True):
        if rc != 0 or outcome is None:
            out.append(f"{raw['name']}: exit {rc}: {err.strip().splitlines()[-4:] or err}")
            continue
        if outcome.get("status") != "completed":
            out.append(f"{raw['name']}: {outcome.get('status')} {outcome.get('message')}")
        sid = outcome["search_id"]
        ids.append(sid)
        if search_id_by_name(store, raw["name"]) != sid:
            out.append(f"{raw['name']}: its id {sid} names another search")
        pop = raw["algorithm"]["population"]
        state = stored(store, sid)
        want = pop * raw["algorithm"]["generations"]
        if len(state.rows) != want:
            out.append(f"{raw['name']}: {len(state.rows)} candidates, expected {want}")
        out += [f"{raw['name']}: {p}" for p in problems_of(state, pop)]
    if len(set(ids)) != len(ids):
        out.append(f"two processes got the same search id: {ids}")
    store.dispose()
    return out


# ----- fuzzers ----------------------------------------------------------------------------------

JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    3.5,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    1e308,
    -1e308,
    10**30,
    -(10**30),
    2**63,
    2**64 + 1,
    "",
    "8",
    "nan",
    "inf",
    "-5",
    "abc",
    "fp16",
    "top1",
    "minimize",
    "sqlite://",
    "\x00",
    "x" * 5000,
    "☃",
    "/nonexistent/file.pt",
    "/dev/null",
    "/",
    [],
    [1, 2],
    [None],
    [[[]]],
    {},
    {"x": 1},
    {"a": {"b": [None, {"c": float("nan")}]}},
    b"\x00\xff",
    __import__("datetime").date(2026, 1, 1),
]
DEVICES = ["no-such-device", "STM32F746", "h100", "", "..", "../etc/passwd", "a.b", "local-cpu"]
METRICS = ["sram", "latency", "latency_ms", "", "top5", "fid", "x.y.z", "stm32f746.", "."]


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts and lists."""
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*prefix, i))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _junk(rng: random.Random) -> Any:
    value = copy.deepcopy(rng.choice(JUNK))
    if rng.random() < 0.1:
        value = {rng.choice(["", "x", "batch", "limits"]): value}
    elif rng.random() < 0.1:
        value = [value]
    return value


def mutate_tree(tree: dict[str, Any], rng: random.Random, extra_keys: list[str]) -> Any:
    """One to three random edits of a JSON-like tree: drop, rename, replace, add, wrap."""
    tree = copy.deepcopy(tree)
    for _ in range(rng.randint(1, 3)):
        if not isinstance(tree, dict | list):
            break
        paths = _paths(tree)
        path = rng.choice(paths)
        op = rng.choice(["drop", "rename", "replace", "replace", "add", "wrap", "swap"])
        if not path:  # the root
            if op in ("replace", "swap"):
                swapped = list(tree.items()) if isinstance(tree, dict) else dict(enumerate(tree))
                tree = _junk(rng) if op == "replace" else swapped
            continue
        parent, key = _get(tree, path[:-1]), path[-1]
        if op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new = rng.choice([str(key).upper(), f"{key}_", f" {key}", rng.choice(extra_keys), 1])
            parent[new] = parent.pop(key)
        elif op == "replace":
            parent[key] = _junk(rng)
        elif op == "add":
            if isinstance(parent, dict):
                parent[rng.choice(extra_keys)] = _junk(rng)
            else:
                parent.append(_junk(rng))
        elif op == "wrap":
            parent[key] = rng.choice([[parent[key]], {"value": parent[key]}])
        elif op == "swap":
            v = parent[key]
            if isinstance(v, dict):
                parent[key] = list(v.values())
            elif isinstance(v, list):
                parent[key] = dict(enumerate(v))
            elif isinstance(v, int | float) and not isinstance(v, bool):
                parent[key] = rng.choice([str(v), -v, v * 1e30, [v], bool(v)])
            else:
                parent[key] = rng.choice([len(str(v)), None, str(v) * 3])
    return tree


def mutate_config(base: dict[str, Any], rng: random.Random) -> Any:
    raw = copy.deepcopy(base)
    roll = rng.random()
    if roll < 0.15 and isinstance(raw.get("targets"), dict):  # unknown devices / metrics
        targets = raw["targets"]
        device = rng.choice(list(targets))
        if rng.random() < 0.5:
            targets[rng.choice(DEVICES)] = targets.pop(device)
        else:
            targets[device] = {**targets[device], rng.choice(METRICS): rng.choice([1, -1, "x"])}
    elif roll < 0.25:
        raw["objectives"] = [
            {"metric": rng.choice([*METRICS, "top1", "stm32f746.latency_ms"]), "goal": g}
            for g in rng.sample(["maximize", "minimize", "best", "", None], 2)
        ]
    elif roll < 0.35:
        algorithm = dict(raw.get("algorithm") or {})
        algorithm[rng.choice(["population", "generations", "seed", "crossover_prob"])] = rng.choice(
            [0, -1, 3, 10**12, 2**32, 1.5, float("nan"), "8", True, None]
        )
        raw["algorithm"] = algorithm
    extra = ["colour", "limits", "options", "batch", "precision", "workers", "sampler", "r"]
    return mutate_tree(raw, rng, extra) if rng.random() < 0.9 else raw


def mutate_arch(arch: dict[str, Any], rng: random.Random) -> Any:
    arch = copy.deepcopy(arch)
    roll = rng.random()
    names = list(arch)
    name = rng.choice(names)
    if roll < 0.15:  # wrong length
        v = arch[name]
        if isinstance(v, list):
            arch[name] = v[: rng.randint(0, max(len(v) - 1, 0))] if rng.random() < 0.5 else v + v
        else:
            arch[name] = [v, v]
    elif roll < 0.35:  # out-of-range or wrong-typed entries
        v = arch[name]
        bad = rng.choice([-1, 0, 1, 2, 9, 1000, 10**20, 3.0, 3.5, "3", None, True, float("nan")])
        if isinstance(v, list) and v:
            v[rng.randrange(len(v))] = bad
        else:
            arch[name] = bad
    elif roll < 0.45:
        del arch[name]
    elif roll < 0.55:
        arch[rng.choice(["w", "ks", "extra", "", "R", "e "])] = _junk(rng)
    else:
        return mutate_tree(arch, rng, ["w", "x", "ks", "d", "e", "r"])
    return arch


def mutate_text(text: str, rng: random.Random) -> str:
    """Corrupt an arch's JSON text: cut, flip, insert characters, or nest deeply."""
    roll = rng.random()
    if roll < 0.3:
        return text[: rng.randrange(len(text) + 1)]
    if roll < 0.6:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice('{}[],:"0-eE.N\\ \x00é') + text[i + 1 :]
    if roll < 0.7:
        depth = rng.choice([10, 1000, 100_000])
        return "[" * depth + "]" * depth
    if roll < 0.8:
        return rng.choice(["", "null", "1e999", "NaN", '"x"', "[]", "{}", '{"r": Infinity}'])
    return json.dumps(mutate_arch(json.loads(text), rng), default=str)


@dataclass
class FuzzReport:
    tried: int = 0
    ok: int = 0
    user_errors: int = 0
    failures: list[str] = field(default_factory=list)  # other exceptions, with the input
    signatures: Counter = field(default_factory=Counter)  # exception type and where raised

    def note(self, func, value: Any) -> None:
        from nas.errors import UserError

        self.tried += 1
        try:
            func(value)
            self.ok += 1
        except UserError:
            self.user_errors += 1
        except Exception as err:
            where = _where(err)
            self.signatures[f"{type(err).__name__} at {where}"] += 1
            self.failures.append(
                f"{type(err).__name__} at {where}: {str(err)[:200]} <- {_show(value)}"
            )

    def summary(self) -> str:
        shown = "\n".join(self.failures[:10])
        return f"{len(self.failures)} of {self.tried} inputs raised a non-UserError:\n{shown}"


def _where(err: BaseException) -> str:
    """The innermost frame of this project's code in the traceback (file:function)."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if str(ROOT) in f.filename and "/tests/" not in f.filename]
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).relative_to(ROOT) if ours else frame.filename}:{frame.name}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 400 else text[:400] + f"... ({len(text)} chars)"


def fuzz_configs(base: dict[str, Any], n: int, seed: int) -> FuzzReport:
    from nas.resources import check_search_config

    rng = random.Random(seed)
    report = FuzzReport()
    for _ in range(n):
        report.note(lambda raw: check_search_config(raw, "fuzz"), mutate_config(base, rng))
    return report


def fuzz_archs(space_name: str, n: int, seed: int) -> FuzzReport:
    from supernet.space import get_space

    space = get_space(space_name)
    rng = random.Random(seed)
    report = FuzzReport()
    for i in range(n):
        arch = dict(space.sample(rng.randrange(2**31)))
        if i % 2:
            report.note(space.validate, mutate_arch(arch, rng))
        else:
            report.note(space.from_json, mutate_text(json.dumps(arch), rng))
    return report


# ----- a live `nas serve` -----------------------------------------------------------------------


@dataclass
class ServerProcess:
    """One `nas serve` process (the leader of its own process group, which its workers join)
    and its address."""

    proc: subprocess.Popen
    url: str
    log: Path

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def kill_group(self) -> None:
        """SIGKILL the server and every worker it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    database: str, data_dir: Path, log: Path, token: str | None = None, **env: Any
) -> ServerProcess:
    """`nas serve` on `database` with its data folder and bearer token (none: a server
    without one), once it answers; `env` adds to its environment. Output goes to `log`. The
    caller kills its group (`kill_group`) when done."""
    extra = {"RAY_USAGE_STATS_ENABLED": "0", **env}
    if token is not None:
        extra["NAS_API_TOKEN"] = token
    environment = driver_env(**extra)
    if token is None:
        environment.pop("NAS_API_TOKEN", None)
    for _ in range(3):  # the free port may be taken before the server binds it
        port = free_port()
        command = [sys.executable, "-m", "nas", "serve", "--db", database, "--port", str(port)]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*command, "--data-dir", str(data_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                cwd=ROOT,
                start_new_session=True,  # its workers join its process group
            )
        server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if server.request("GET", "/searches")[0] == 200:
                    return server
            time.sleep(0.2)
        if proc.poll() is None:
            server.kill_group()
            raise AssertionError(f"nas serve did not answer in 60 s:\n{server.tail()}")
        if "address already in use" not in server.tail():
            raise AssertionError(f"nas serve exited {proc.returncode}:\n{server.tail()}")
    raise AssertionError(f"no free port for nas serve:\n{server.tail()}")
