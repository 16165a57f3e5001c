"""Data-parallel supernet training on Ray Train: N workers at batch B step like one worker
at N x B, a killed worker is replaced and the run ends as an unbroken one, and a run
resumes with another worker count."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nas.cli import app
from nas.training import DistributedTrainingError, train_distributed
from nas.workers import start_ray
from supernet.distributed import Ranks
from supernet.errors import ConfigError
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.evaluate import SupernetEvaluator
from supernet.mbconv.train import TrainConfig, Trainer, train_supernet
from supernet.run import STATE_FILE, TrainingInterrupted

ray = pytest.importorskip("ray")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
DATA = {"kind": "mnist", "limit": 96}
# an elastic phase: sandwich steps over subnets of smaller kernels, depths and widths, so
# sliced BatchNorm and partly used weights are synchronised too
ELASTIC = {"name": "elastic", "epochs": 1, "lr": 0.05, "ks": [3, 5], "e": [3, 4], "d": [2, 3]}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for this module (2 CPUs, no dashboard, a short temp dir of its own,
    removed when it stops)."""
    started = start_ray(None, num_cpus=2)
    yield
    if started:
        started.stop()


def config(out, **overrides) -> TrainConfig:
    fields = {
        "space": "mnist-mbv3",
        "data": DATA,
        "out_dir": str(out),
        "batch_size": 48,
        "threads": 1,
        "bn_recalibration_images": 48,
        "phases": [{"name": "largest", "epochs": 1, "lr": 0.1}],
    }
    return TrainConfig(**{**fields, **overrides})


def parameters(run_dir) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    return state["model"]


def max_param_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    return max(float((a[k] - b[k]).abs().max()) for k in keys)


def train_images() -> int:
    return len(Trainer(config("unused"), progress=False).data.train)


def test_two_workers_at_b_step_like_one_worker_at_2b(tmp_path):
    half = math.ceil(train_images() / 2)  # one step per epoch: the whole split
    one_worker = config(tmp_path / "one", batch_size=2 * half, phases=[ELASTIC])
    train_distributed(one_worker, workers=1, progress=False)
    two_workers = config(tmp_path / "two", batch_size=half, phases=[ELASTIC])
    train_distributed(two_workers, workers=2, progress=False)
    one, two = parameters(tmp_path / "one"), parameters(tmp_path / "two")
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert state["workers"] == 2 and state["global_step"] == 1
    assert max_param_diff(one, two) <= 1e-5
    # and the step moved the weights by far more than that
    fresh = Trainer(one_worker, progress=False)
    fresh._fresh()  # the weights both runs started from (the same seed)
    assert max_param_diff(fresh.net.state_dict(), one) > 1e-3


def test_each_worker_evaluates_its_share_and_every_result_lands_in_place(tmp_path):
    """The final evaluation is split (rank 0: largest, rank 1: smallest) and gathered: the
    recorded figures are those of each arch evaluated alone from the written file."""
    run = config(tmp_path / "run", batch_size=24, phases=[ELASTIC])
    result = train_distributed(run, workers=2, progress=False)
    trained = load_supernet(result.path)
    data = Trainer(run, progress=False).data
    evaluator = SupernetEvaluator(
        trained.net, trained.space, data, recalibration_images=48, precision="fp32"
    )
    largest, smallest = (
        evaluator.evaluate(a) for a in (trained.space.largest(), trained.space.smallest())
    )
    assert largest.top1 != smallest.top1 or largest.loss != smallest.loss
    assert result.final["acc_largest"] == largest.top1
    assert result.final["loss_smallest"] == pytest.approx(smallest.loss, rel=1e-6)
    assert result.final["acc_smallest"] == smallest.top1


@pytest.mark.slow  # two 2-worker runs, 80 s: `make test-all`
def test_a_killed_worker_is_replaced_and_the_run_ends_as_an_unbroken_one(tmp_path):
    phases = [{"name": "largest", "epochs": 2, "lr": 0.1}]
    steps_per_epoch = math.ceil(train_images() / 32)
    unbroken = config(tmp_path / "unbroken", batch_size=16, phases=phases)
    train_distributed(unbroken, workers=2, progress=False)
    broken = config(tmp_path / "broken", batch_size=16, phases=phases)
    result = train_distributed(
        broken, workers=2, progress=False, fail_once_at_step=steps_per_epoch + 1
    )
    assert (tmp_path / "broken" / ".failed-once").exists()  # rank 1 did exit mid-epoch 2
    assert [r["epoch"] for r in result.history] == [1, 2]
    # resumed from epoch 1's checkpoint with the same RNG state: the same weights
    assert max_param_diff(parameters(tmp_path / "unbroken"), parameters(tmp_path / "broken")) == 0
    assert list((tmp_path / "broken" / "ray").rglob("checkpoint.pt"))  # Ray Train's copies


def test_the_cli_resumes_a_one_process_run_on_two_workers(tmp_path):
    run = config(tmp_path / "run", batch_size=16, phases=[{"name": "l", "epochs": 2, "lr": 0.1}])
    steps_per_epoch = math.ceil(train_images() / 16)
    with pytest.raises(TrainingInterrupted):
        train_supernet(run, progress=False, stop_after_steps=steps_per_epoch + 1)
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(run.model_dump()))  # JSON is YAML
    runner = CliRunner()
    refused = runner.invoke(app, ["supernet", "train", str(path), "--workers", "2", "--json"])
    assert refused.exit_code == 2 and "pass --resume" in refused.output
    args = ["supernet", "train", str(path), "--workers", "2", "--resume", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["workers"] == 2 and 0 <= summary["acc_largest"] <= 1
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["workers"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]


def test_bad_distributed_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--workers must be >= 1"):
        train_distributed(config(tmp_path / "x"), workers=0)
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config(tmp_path / "y").model_dump()))
    result = CliRunner().invoke(app, ["supernet", "train", str(path), "--ray-address", "x:1"])
    assert result.exit_code == 2 and "go with --workers" in result.output


def refusal_within(seconds: float, **kwargs) -> Exception:
    """What train_distributed raises, which must come within `seconds`: Ray Train waits for
    resources it will never get without a word, and this test must not hang with it."""
    refused: list[Exception] = []

    def call() -> None:
        try:
            train_distributed(**kwargs)
        except Exception as err:
            refused.append(err)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds} s: waiting for resources?"
    assert refused, "the run was not refused"
    return refused[0]


def test_what_the_local_ray_lacks_is_refused_at_once(tmp_path):
    """The module's Ray has 2 CPUs and no GPU."""
    refused = refusal_within(
        30, config=config(tmp_path / "gpu"), workers=2, progress=False, gpus_per_worker=1
    )
    assert isinstance(refused, DistributedTrainingError)
    assert str(refused) == "--gpus-per-worker 1 × --workers 2 needs 2 GPUs; the Ray cluster has 0"
    refused = refusal_within(30, config=config(tmp_path / "cpu"), workers=3, progress=False)
    assert str(refused) == (
        "threads 1 (CPUs per worker) × --workers 3 needs 3 CPUs; the Ray cluster has 2"
    )
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "cpu").exists()


@pytest.mark.slow  # a Ray of its own and 2 workers that reach an epoch's end: about 60 s here
def test_ctrl_c_stops_a_run_on_workers_at_once_and_it_resumes(tmp_path):
    run = config(tmp_path / "run", batch_size=16, phases=[{"name": "l", "epochs": 100, "lr": 0.1}])
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(run.model_dump()))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [sys.executable, "-m", "nas", "supernet", "train", str(path), "--workers", "2"]
    # a session of its own: what is left of its Ray afterwards is in its process group
    proc = subprocess.Popen(
        [*args, "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "run" / STATE_FILE).exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert stopped_after < 30
    lines = [line for line in output.splitlines() if line.startswith("interrupted")]
    assert lines == [
        f"interrupted: {tmp_path / 'run' / STATE_FILE} holds the last finished epoch: "
        "add --resume to continue"
    ], output
    assert "Traceback" not in output
    for _ in range(20):  # the Ray it started went with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("processes of the interrupted run's Ray are still running")
    # the checkpoint resumes: the next step is the one after the last saved
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=False)
    assert state["workers"] == 2 and state["global_step"] >= 1
    resumed = Trainer(run, progress=False)
    steps: list[int] = []
    resumed.on_step = lambda _, step: steps.append(step)
    with pytest.raises(TrainingInterrupted):
        resumed.run(resume=True, stop_after_steps=state["global_step"] + 1)
    assert steps == [state["global_step"] + 1]


def test_a_rank_takes_its_slice_of_the_global_batch():
    batch = torch.arange(7)
    slices = [Ranks(rank, 2).shard(batch) for rank in range(2)]
    assert [s.tolist() for s in slices] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [Ranks(rank, 2).shard_start(7) for rank in range(2)] == [0, 4]
    assert Ranks().shard(batch).tolist() == batch.tolist() and Ranks().leader
