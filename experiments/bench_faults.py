"""Fault-tolerance figures: kill -9 and resume, searches launched at once, parser fuzzing,
and the HTTP API fuzzed from its OpenAPI schema, exports to a filesystem that cannot
take them.

Prints one JSON object per figure:
  kills_survived              SIGKILLs of a real driver (seeded random moments, some inside an
                              open generation transaction) after which the stored rows were
                              whole generations with contiguous trials; with kills_tried
  candidates_lost             stored candidates missing after a kill and resume (goal: 0)
  candidates_duplicated       trial numbers stored twice (goal: 0)
  fuzz_inputs_tried           mutated search configs and arch dicts/JSON fed to the parsers
  fuzz_tracebacks             inputs that ended in an exception other than a UserError
  concurrent_first_opens_ok   rounds of 4 `nas search launch` processes started at once on a
                              new SQLite file (or PostgreSQL database) in which every search
                              completed with exactly its own candidates; with tried
  fs_faults_tried             exports (`nas export` processes, and an HTTP export's worker)
                              to a full disk (a 1 MB tmpfs), to a read-only bind mount, and
                              to mount points as --out; needs root (skipped with the reason
                              otherwise); with each case's outcome
  fs_fault_tracebacks         of them, ended in a traceback or a crash (goal: 0)
  fs_fault_half_written       of them, left a staging folder or a partial file behind, or
                              (an HTTP export) a row not failed (goal: 0)
  fs_fault_unexpected         of them, not ending as expected: one error line naming the
                              cause and the path (a failed row with that message), or, for
                              an empty mount point as --out, the export in it (goal: 0)
  api_requests_fuzzed         requests Schemathesis generated from /openapi.json and sent to a
                              live `nas serve` with a token (tests/faults/api_fuzz.py)
  api_server_errors           of those, answered with a 5xx (goal: 0)
  api_schema_violations       answered with a status, content type or body their route does
                              not declare (goal: 0)
  api_missing_401s            mutations sent without the token not refused with 401 (goal: 0)
  api_jobs_started            searches or exports a fuzzed request started (goal: 0)

    python experiments/bench_faults.py [--checkpoint DIR] [--kills 20] [--rounds 5]
        [--fuzz 20000] [--api-examples 300] [--postgres postgresql://user@host/admin_db]
        [--only kills|concurrency|fuzz|api|fs ...]

DIR holds supernet.pt and predictor.pt (default: a tiny pair trained in a temp folder, as
tests/conftest.py does). Slow; not run in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.faults.harness

from tests.faults import harness
from tests.faults.api_fuzz import fuzz_api, serve_rows_to_fuzz

PARTS = ("kills", "concurrency", "fuzz", "api", "fs")
API_TOKEN = "bench-faults-token"

TARGETS = {
    "stm32f746": {"peak_sram_kb": 12, "flash_kb": 600},
    "h100-sxm": {"latency_ms": 0.7, "batch": 64, "precision": "fp16", "runtime": "tensorrt"},
}


def emit(name: str, value: float | None, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def tiny_checkpoint(folder: Path) -> Path:
    """A supernet trained for two steps on 32 digits and a predictor fitted on 30 archs."""
    from supernet.mbconv.checkpoint import load_supernet
    from supernet.mbconv.predictor import fit_predictor, measure_archs
    from supernet.mbconv.train import TrainConfig, train_supernet

    config = TrainConfig(
        space="mnist-mbv3",
        data={"kind": "mnist", "limit": 32},
        out_dir=str(folder),
        batch_size=16,
        bn_recalibration_images=16,
        phases=[{"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5, 7]}],
    )
    trained = load_supernet(train_supernet(config, progress=False).path)
    measurements = measure_archs(trained, 30, seed=0, progress=False)
    predictor = fit_predictor(trained.space, measurements, trained.sha256, held_out=5, epochs=20)
    predictor.save(folder / "predictor.pt")
    return folder


def raw_config(checkpoint: Path, name: str, db: str, population: int, generations: int, seed=0):
    return {
        "name": name,
        "supernet": str(checkpoint / "supernet.pt"),
        "predictor": str(checkpoint / "predictor.pt"),
        "targets": TARGETS,
        "algorithm": {"population": population, "generations": generations, "seed": seed},
        "evaluation": "predictor",
        "database": db,
    }


def fresh_postgres(admin_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"nas_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def bench_kills(checkpoint: Path, work: Path, kills: int, per_search: int, db: str | None):
    """`kills` SIGKILLs in all, `per_search` per search (each search then resumed to the end)."""
    total = harness.KillReport()
    started = time.perf_counter()
    for i in range((kills + per_search - 1) // per_search):
        folder = work / f"kills-{i}"
        folder.mkdir(parents=True)
        url = db or f"sqlite:///{folder / 'nas.db'}"
        raw = raw_config(checkpoint, f"kills-{i}", url, 8, 20 + 6 * per_search, seed=i)
        n = min(per_search, kills - i * per_search)
        report = harness.kill_resume_loop(url, raw, folder, kills=n, seed=1000 + i)
        for key in (
            "kills_tried",
            "kills_survived",
            "in_transaction_kills",
            "candidates_lost",
            "candidates_duplicated",
        ):
            setattr(total, key, getattr(total, key) + getattr(report, key))
        total.problems += report.problems
        total.final_candidates += report.final_candidates
        total.expected_candidates += report.expected_candidates
    backend = "postgresql" if db else "sqlite"
    context = {"backend": backend, "seconds": round(time.perf_counter() - started, 1)}
    emit(
        "kills_survived",
        total.kills_survived,
        "kills",
        kills_tried=total.kills_tried,
        in_transaction_kills=total.in_transaction_kills,
        final_candidates=total.final_candidates,
        expected_candidates=total.expected_candidates,
        problems=total.problems[:5],
        **context,
    )
    emit("candidates_lost", total.candidates_lost, "candidates", **context)
    emit("candidates_duplicated", total.candidates_duplicated, "candidates", **context)


def bench_fuzz(checkpoint: Path, work: Path, n: int) -> None:
    import nas.resources
    import supernet

    started = time.perf_counter()
    nas.resources.open_artifact = functools.lru_cache(maxsize=64)(nas.resources.open_artifact)
    base = raw_config(checkpoint, "fuzz", f"sqlite:///{work / 'fuzz.db'}", 8, 3)
    reports = [harness.fuzz_configs(base, n // 2, seed=0)]
    spaces = supernet.list_spaces()
    reports += [harness.fuzz_archs(s, n // 2 // len(spaces) + 1, seed=0) for s in spaces]
    tried = sum(r.tried for r in reports)
    signatures: dict[str, int] = {}
    for r in reports:
        for key, count in r.signatures.items():
            signatures[key] = signatures.get(key, 0) + count
    seconds = round(time.perf_counter() - started, 1)
    emit("fuzz_inputs_tried", tried, "inputs", seconds=seconds)
    emit(
        "fuzz_tracebacks",
        sum(len(r.failures) for r in reports),
        "inputs",
        by_kind=signatures,
        examples=[f[:160] for r in reports for f in r.failures[:1]],
    )


def bench_concurrency(checkpoint: Path, work: Path, rounds: int, postgres: str | None) -> None:
    for backend in ["sqlite"] + (["postgresql"] if postgres else []):
        ok, problems = 0, []
        started = time.perf_counter()
        for i in range(rounds):
            folder = work / f"concurrent-{backend}-{i}"
            folder.mkdir()
            url = fresh_postgres(postgres) if postgres and backend == "postgresql" else None
            url = url or f"sqlite:///{folder / 'new' / 'nas.db'}"
            raws = [raw_config(checkpoint, f"c{j}", url, 4 + 2 * j, 3 + j, j) for j in range(4)]
            found = harness.check_concurrent(url, raws, harness.launch_at_once(url, raws, folder))
            ok += not found
            problems += found[:2]
        emit(
            "concurrent_first_opens_ok",
            ok,
            "rounds",
            tried=rounds,
            processes=4,
            backend=backend,
            problems=problems[:5],
            seconds=round(time.perf_counter() - started, 1),
        )


def bench_api(checkpoint: Path, work: Path, examples: int, seed: int) -> None:
    folder = work / "api"
    folder.mkdir()
    raw = raw_config(checkpoint, "api", f"sqlite:///{folder / 'api.db'}", 8, 3)
    server = serve_rows_to_fuzz(raw, folder, API_TOKEN)
    started = time.perf_counter()
    try:
        report = fuzz_api(server.url, API_TOKEN, examples, seed)
    finally:
        server.kill_group()
    context = {"examples_per_operation": examples, "seed": seed}
    emit(
        "api_requests_fuzzed",
        report.requests,
        "requests",
        operations=len(report.by_operation),
        by_status={str(k): v for k, v in sorted(report.by_status.items())},
        seconds=round(time.perf_counter() - started, 1),
        **context,
    )
    for name, value, unit, kind in [
        ("api_server_errors", report.server_errors, "requests", "server error"),
        ("api_schema_violations", report.schema_violations, "requests", "schema violation"),
        ("api_missing_401s", report.missing_401s, "requests", "missing 401"),
        ("api_jobs_started", report.jobs_started, "jobs", "job started"),
    ]:
        shown = [f[:300] for f in report.failures.get(kind, [])[:3]]
        emit(name, value, unit, examples=shown, **context)


ENOSPC = "no space left on device (ENOSPC)"
EROFS = "read-only file system (EROFS)"


@dataclass
class FsCase:
    """One export into a staged filesystem fault."""

    name: str
    mount: Callable[[Path], contextlib.AbstractContextManager[Path]]  # the fault at a folder
    out: str  # --out below the mount ("" for the mount point itself); "http": its data folder
    fmt: str | None = None  # None: the search's default formats (ONNX first)
    cause: str | None = ENOSPC  # the error expected; None: the export must succeed


def _full(folder: Path) -> contextlib.AbstractContextManager[Path]:
    return harness.full_disk(folder, "1m")  # an export of the tiny supernet's subnet: ~10 MB


def _read_only(folder: Path) -> contextlib.AbstractContextManager[Path]:
    return harness.read_only(folder.with_name(folder.name + "-source"), folder)


def _roomy(folder: Path) -> contextlib.AbstractContextManager[Path]:
    return harness.mounted(folder, "-t", "tmpfs", "-o", "size=256m", "tmpfs")


FS_CASES = [
    FsCase("full disk, a folder on it", _full, "out"),
    FsCase("full disk, torchscript (torch's C++ writer)", _full, "out", fmt="torchscript"),
    FsCase("full disk, pt2 (torch's C++ writer)", _full, "out", fmt="pt2"),
    FsCase("full disk, its mount point as --out", _full, ""),
    FsCase("read-only bind mount, a folder on it", _read_only, "out", cause=EROFS),
    FsCase("read-only bind mount as --out", _read_only, "", cause=EROFS),
    FsCase("an empty mount point as --out (EBUSY to rename over)", _roomy, "", cause=None),
    FsCase("HTTP export, its data folder on a full disk", _full, "http"),
]
FS_FIGURES = {  # figure: the outcome it counts
    "fs_fault_tracebacks": "traceback",
    "fs_fault_half_written": "half_written",
    "fs_fault_unexpected": "unexpected",
}


def _fs_case(case: FsCase, folder: Path, store, search_id: int, candidate: int) -> dict[str, Any]:
    """Run one case: whether it ended in a traceback (or a crash), left anything half
    written, or ended otherwise than expected; and what it ended in."""
    with case.mount(folder) as place:
        if case.out == "http":
            info = harness.http_export(store, place, search_id, candidate, ["onnx"])
            out = place / "exports" / str(info["id"])
            return {
                "traceback": "Traceback" in (info["message"] or ""),
                "half_written": info["status"] != "failed"
                or harness.half_written(place / "exports") != [],
                "unexpected": info["message"]
                != f"{case.cause} writing {out}; the export was not written",
                "got": f"{info['status']}: {info['message']}",
            }
        out = place / case.out if case.out else place
        done = harness.nas_export(search_id, candidate, out, store.url, case.fmt)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        # a crash (torch's C++ writer aborting: exit 134) counts as a traceback
        crashed = "Traceback" in done.stderr or done.returncode not in (0, 2)
        if case.cause is None:  # the export belongs in the mount point
            written = sorted(p.name for p in place.iterdir())
            return {
                "traceback": crashed,
                "half_written": harness.staged(place) != [],
                "unexpected": done.returncode != 0 or "model_card.json" not in written,
                "got": f"exit {done.returncode}: {errors or written}",
            }
        expected = f"error: {case.cause} writing {out}; the export was not written"
        return {
            "traceback": crashed,
            "half_written": harness.half_written(place) != [],
            "unexpected": done.returncode != 2 or errors != [expected],
            "got": f"exit {done.returncode}: {errors or done.stderr.strip()[-300:]}",
        }


def bench_filesystem(checkpoint: Path, work: Path) -> None:
    """Exports to a full disk (a small tmpfs), a read-only bind mount, and mount points as
    --out, through the real CLI (one process each) and an HTTP export's worker."""
    reason = harness.mount_unavailable()
    if reason:
        emit("fs_faults_tried", 0, "exports", skipped=reason)
        for name in FS_FIGURES:
            emit(name, None, "exports", skipped=reason)  # not measured: no figure
        return
    from nas.pareto import pareto_front
    from nas.resources import check_search_config
    from nas.search import launch_search
    from nas.store import Store

    started = time.perf_counter()
    root = work / "fs"
    root.mkdir()
    url = f"sqlite:///{root / 'nas.db'}"
    store = Store(url)
    config = check_search_config(raw_config(checkpoint, "fs", url, 8, 2), "bench")
    search_id = launch_search(config, store, progress=False).search_id
    candidate = pareto_front(store, search_id).front[0].trial
    outcomes: list[dict[str, Any]] = []
    for i, case in enumerate(FS_CASES):
        try:
            outcome = _fs_case(case, root / f"case-{i}", store, search_id, candidate)
        except harness.MountUnavailable as err:  # root, but the mount was refused
            outcome = {"skipped": str(err)}
        outcomes.append({"case": case.name, **outcome})
    ran = [o for o in outcomes if "skipped" not in o]
    context = {"seconds": round(time.perf_counter() - started, 1)}
    emit("fs_faults_tried", len(ran), "exports", cases=outcomes, **context)
    for name, key in FS_FIGURES.items():
        bad = [o["case"] for o in ran if o[key]]
        emit(name, len(bad), "exports", cases=bad, **context)
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="folder with supernet.pt, predictor.pt")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--kills-per-search", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 4 launches at once")
    parser.add_argument("--fuzz", type=int, default=20_000)
    parser.add_argument(
        "--api-examples", type=int, default=300, help="per API operation and mode (api)"
    )
    parser.add_argument("--api-seed", type=int, default=1, help="the API fuzz's seed (api)")
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (optional)")
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    args = parser.parse_args()
    parts = args.only or PARTS
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint or tiny_checkpoint(work / "tiny")
        checkpoint = checkpoint.resolve()
        if "kills" in parts:
            bench_kills(checkpoint, work, args.kills, args.kills_per_search, None)
            if args.postgres:
                db = fresh_postgres(args.postgres)
                bench_kills(checkpoint, work / "pg", args.kills, args.kills_per_search, db)
        if "concurrency" in parts:
            bench_concurrency(checkpoint, work, args.rounds, args.postgres)
        if "fuzz" in parts:
            bench_fuzz(checkpoint, work, args.fuzz)
        if "api" in parts:
            bench_api(checkpoint, work, args.api_examples, args.api_seed)
        if "fs" in parts:
            bench_filesystem(checkpoint, work)


if __name__ == "__main__":
    main()
