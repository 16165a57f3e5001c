"""kill -9 of real driver processes at seeded random moments, then resume: no candidate lost
or duplicated, trials contiguous, and the final count is an unbroken run's."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from nas.search import COMPLETED, launch_search
from nas.store import Store
from tests.conftest import needs_postgres
from tests.faults.harness import (
    ROOT,
    driver_env,
    kill_resume_loop,
    problems_of,
    search_id_by_name,
    stored,
)


def _unbroken_count(search_config, raw, url) -> int:
    config = search_config(**{**raw, "name": "unbroken", "database": url})
    outcome = launch_search(config, Store(url), progress=False)
    assert outcome.status == COMPLETED
    state = stored(Store(url), outcome.search_id)
    assert not problems_of(state, raw["algorithm"]["population"])
    return len(state.rows)


def _check(report, search_config, raw, url, kills):
    assert not report.problems, report
    assert report.kills_tried == kills and report.kills_survived == kills, report
    assert report.in_transaction_kills >= 1
    assert report.candidates_lost == 0 and report.candidates_duplicated == 0
    assert report.final_candidates == report.expected_candidates
    assert report.final_candidates == _unbroken_count(search_config, raw, url)


def test_two_kills_on_sqlite(raw_config, search_config, tmp_path):
    raw = raw_config(algorithm={"population": 8, "generations": 30, "seed": 5})
    url = raw["database"]
    report = kill_resume_loop(url, raw, tmp_path, kills=2, seed=11)
    _check(report, search_config, raw, url, 2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_five_kills_on_sqlite(raw_config, search_config, tmp_path, seed):
    raw = raw_config(algorithm={"population": 8, "generations": 60, "seed": seed})
    url = raw["database"]
    report = kill_resume_loop(url, raw, tmp_path, kills=5, seed=100 + seed)
    _check(report, search_config, raw, url, 5)


@pytest.mark.slow
@needs_postgres
def test_five_kills_on_postgresql(raw_config, search_config, tmp_path, postgres_url):
    raw = raw_config(algorithm={"population": 8, "generations": 60, "seed": 3})
    report = kill_resume_loop(postgres_url, raw, tmp_path, kills=5, seed=7)
    _check(report, search_config, raw, postgres_url, 5)


# ----- training and measuring, killed --------------------------------------------------------

TINY_TRAIN = {
    "space": "mnist-mbv3",
    "data": {"kind": "mnist", "limit": 32},
    "batch_size": 16,
    "threads": 2,
    "bn_recalibration_images": 16,
    "phases": [
        {"name": "largest", "epochs": 1, "lr": 0.1},
        {"name": "kernel", "epochs": 2, "lr": 0.05, "ks": [3, 5, 7]},
        {"name": "depth", "epochs": 1, "lr": 0.02, "ks": [3, 5, 7], "d": [2, 3, 4]},
        {"name": "expand", "epochs": 2, "lr": 0.02, "ks": [3, 5, 7], "d": [2, 3, 4], "e": [3, 4]},
    ],
}


def _nas(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas", *args],
        env=driver_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def _kill_when(proc, predicate, delay: float, timeout: float = 600) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_supernet_train_killed_then_resumed_equals_unbroken(tmp_path):
    from supernet.io import read_checkpoint
    from supernet.mbconv.train import TrainConfig, train_supernet

    rng = random.Random(21)
    unbroken = train_supernet(TrainConfig(**TINY_TRAIN, out_dir=str(tmp_path / "a")), False)
    out = tmp_path / "b"
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**TINY_TRAIN, "out_dir": str(out)}))
    history = out / "history.jsonl"
    kills = 0
    for attempt in range(2):
        at = rng.randint(1, 3) + 2 * attempt  # epochs written before the kill
        proc = _nas("supernet", "train", str(path), "--resume", "--no-progress")
        lines = lambda at=at: history.exists() and history.read_text().count("\n") >= at  # noqa: E731
        kills += _kill_when(proc, lines, rng.uniform(0.0, 1.5))
    assert kills >= 1, "training ended before any kill"
    proc = _nas("supernet", "train", str(path), "--resume", "--no-progress", "--json")
    text = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, text
    summary = json.loads(text.strip().splitlines()[-1])
    expected = read_checkpoint(unbroken.path, "nas-supernet/1")["model"]
    got = read_checkpoint(summary["supernet"], "nas-supernet/1")["model"]
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    for key, value in unbroken.final.items():
        assert summary[key] == round(value, 4), key


@pytest.mark.slow
def test_predictor_fit_killed_mid_measurement_then_rerun(tmp_path, tiny_supernet):
    import shutil

    rng = random.Random(5)
    folders = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(tiny_supernet.path, tmp_path / name / "supernet.pt")
        folders.append(tmp_path / name)
    args = ["--n", "16", "--held-out", "4", "--epochs", "10", "--json", "--no-progress"]

    def fit(folder):
        proc = _nas("predictor", "fit", "-c", str(folder / "supernet.pt"), *args)
        text = proc.communicate(timeout=900)[0].decode()
        assert proc.returncode == 0, text
        return json.loads(text.strip().splitlines()[-1])

    unbroken = fit(folders[0])
    measured = lambda: list(folders[1].glob("measurements.*.jsonl"))  # noqa: E731
    at = rng.randint(2, 10)

    def enough() -> bool:
        files = measured()
        return bool(files) and files[0].read_text().count("\n") >= at

    proc = _nas("predictor", "fit", "-c", str(folders[1] / "supernet.pt"), *args)
    assert _kill_when(proc, enough, rng.uniform(0.0, 0.5)), "fit ended before the kill"
    rerun = fit(folders[1])
    assert {k: v for k, v in rerun.items() if k != "predictor"} == {
        k: v for k, v in unbroken.items() if k != "predictor"
    }

    def lines(folder):
        (path,) = folder.glob("measurements.*.jsonl")
        return sorted(path.read_text().splitlines())

    assert lines(folders[0]) == lines(folders[1])


@pytest.mark.slow  # ~40 s: three driver processes, 32 tiny-supernet measurements
def test_two_kills_of_an_active_search_measure_nothing_twice(raw_config, tmp_path):
    """`evaluation: active`: each round is a generation (20 archs, then 1 a round up to the
    budget); killed twice and resumed, it measures every arch once, the budget in all."""
    raw = raw_config(
        name="active-kill",
        evaluation="active",
        predictor=None,
        budget=32,
        active={"initial": 20, "batch": 1},
        algorithm={"population": 8, "generations": 2, "seed": 4},
    )
    url = raw["database"]
    report = kill_resume_loop(url, raw, tmp_path, kills=2, seed=12)
    assert not report.problems, report
    assert report.kills_tried == 2 and report.kills_survived == 2, report
    assert report.candidates_lost == 0 and report.candidates_duplicated == 0
    assert report.final_candidates == report.expected_candidates == 32
    store = Store(url)
    (search_id,) = {search_id_by_name(store, "active-kill")}
    state = stored(store, search_id)
    assert state.status == COMPLETED and len({a for _, _, a in state.rows}) == 32
