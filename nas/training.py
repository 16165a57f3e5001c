"""`nas supernet train --workers N`: data-parallel supernet training on Ray Train.

Ray Train's TorchTrainer starts N workers and a torch.distributed process group (gloo on
CPU, NCCL on GPU); each worker runs the same `Trainer` loop as a lone process, which
shards every global batch and synchronises BatchNorm and gradients (supernet.distributed):
N workers at `batch_size` B train like one process at N x B. The leader writes the run
folder's checkpoint.pt and supernet.pt in the usual format, and reports each checkpoint to
Ray Train, which keeps copies under OUT/ray. When a worker dies, FailureConfig restarts
the group, and every worker resumes from Ray Train's latest checkpoint.

The run folder must be on a filesystem every worker sees (on one machine it is).

The driver refuses a bad run before any worker starts: the config as a one-process run
checks it (its space, data, phases, a resume under another config), then, with Ray up,
what the cluster lacks (Ray Train would wait for it forever). Ctrl-C stops a run at once
(the shell's exit code 130 at the CLI); the checkpoint of the last finished epoch resumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nas.errors import UserError
from nas.workers import start_ray
from supernet.errors import ConfigError
from supernet.family import family_of_kind, family_of_train_config
from supernet.run import STATE_FILE, ResumableRun, TrainResult

if TYPE_CHECKING:
    from ray.train.torch import TorchTrainer

log = logging.getLogger(__name__)


class DistributedTrainingError(UserError):
    """Ray Train could not run or finish the training."""


def _fail_once_at(step: int) -> Callable[[ResumableRun, int], None]:
    """A step hook for which rank 1 exits hard at `step`, once per run folder, as a killed
    process would (the fault-tolerance test and benchmark)."""

    def hook(run: ResumableRun, at: int) -> None:
        marker = run.out_dir / ".failed-once"
        if at == step and run.ranks.rank == 1 and not marker.exists():
            marker.touch()
            log.warning("rank 1 exits at step %d (fail_once_at_step)", at)
            os._exit(1)

    return hook


def _report_checkpoint(run: ResumableRun) -> None:
    """Every rank reports; the leader hands Ray Train the checkpoint it just wrote."""
    import ray.train

    metrics = dict(run.history[-1]) if run.history else {}
    if not run.ranks.leader:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="nas-ckpt-") as folder:
        shutil.copy2(run.state_path, Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _worker_loop(settings: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    import ray.train

    family = family_of_kind(settings["family"])
    config = family.train_config(settings["config"])
    if settings["gpus"]:  # this worker's GPU: Ray Train assigned it
        import torch
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())
    trainer = family.trainer(config, progress=settings["progress"])
    if settings["fail_once_at_step"] is not None:
        trainer.on_step = _fail_once_at(settings["fail_once_at_step"])
    trainer.on_checkpoint = _report_checkpoint
    restored = ray.train.get_checkpoint()  # set when Ray Train restarted the group
    if restored is not None:
        if trainer.ranks.leader:
            with restored.as_directory() as folder:
                shutil.copy2(Path(folder) / STATE_FILE, trainer.state_path)
            log.warning("a worker failed: resuming from Ray Train's latest checkpoint")
        trainer.ranks.barrier()
    # the driver refused a run folder holding a checkpoint without --resume, so one here
    # now was written by this run, before Ray Train restarted the group
    trainer.run(resume=settings["resume"] or trainer.state_path.exists())


def resource_shortfall(
    nodes: Sequence[Mapping[str, float]], workers: int, per_worker: Mapping[str, float]
) -> str | None:
    """Why `workers` workers, each taking `per_worker` ({"CPU": 1, "GPU": 1}), cannot all be
    placed on a cluster of `nodes` (each node's total resources); None when they can. Ray
    Train would otherwise wait for them forever, without a word."""
    asked = {"GPU": "--gpus-per-worker {:g}", "CPU": "threads {:g} (CPUs per worker)"}
    for name in sorted(per_worker, key=lambda name: name != "GPU"):  # the scarce one first
        need, total = per_worker[name], sum(node.get(name, 0.0) for node in nodes)
        if workers * need > total:
            how = asked[name].format(need)
            return (
                f"{how} × --workers {workers} needs {workers * need:g} {name}s; "
                f"the Ray cluster has {total:g}"
            )
    # enough in total, but a worker takes all of its resources from one node
    places = sum(
        min(int(node.get(name, 0.0) // need) for name, need in per_worker.items() if need > 0)
        for node in nodes
    )
    if places < workers:
        each = ", ".join(f"{need:g} {name}" for name, need in per_worker.items())
        return (
            f"--workers {workers}: the Ray cluster's {len(nodes)} nodes hold only {places} "
            f"workers of {each} each (a worker's resources come from one node)"
        )
    return None


def _check_resources(workers: int, per_worker: Mapping[str, float]) -> None:
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    shortfall = resource_shortfall(nodes, workers, per_worker)
    if shortfall:
        raise DistributedTrainingError(shortfall)


def _fit_interruptibly(trainer: TorchTrainer) -> None:
    """`trainer.fit()`, in a thread, so that Ctrl-C raises KeyboardInterrupt here at once.
    In the main thread Ray Train installs its own SIGINT handler, which asks its controller
    to abort and waits for it: behind a worker group that is still starting, or waiting for
    resources that never come, that is never. The caller then shuts its Ray down, which
    stops every worker (the checkpoint is written atomically: the run resumes)."""
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as err:  # handed to the main thread, which raises it
            failure.append(err)

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        # with a timeout: a signal that lands on one of Ray's threads wakes no untimed join
        thread.join(timeout=0.2)
    if failure:
        raise failure[0]


def train_distributed(
    config: BaseModel,
    workers: int,
    resume: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
    gpus_per_worker: float = 0.0,
    max_failures: int = 2,
    fail_once_at_step: int | None = None,
) -> TrainResult:
    """Train (or resume) `config` on `workers` Ray Train workers; the run folder ends as a
    one-process run's would (checkpoint.pt, the family's trained file, history.jsonl).

    Everything a one-process run refuses (space, data, phases, a resume under another
    config) is refused here before Ray starts, and what the cluster lacks before any worker
    is asked for. Ctrl-C stops the run (KeyboardInterrupt) and the Ray this call started."""
    family = family_of_train_config(config)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
    if gpus_per_worker and config.device == "cpu":
        raise ConfigError("--gpus-per-worker asks for GPUs, but the config says device: cpu")
    if not gpus_per_worker and config.device == "cuda":
        raise ConfigError("device: cuda needs GPUs for the workers: pass --gpus-per-worker")
    out = Path(config.out_dir).resolve()
    config = config.model_copy(update={"out_dir": str(out)})
    # a worker would find these only after Ray and every worker started, as a traceback;
    # the trainer is kept to read the result (it holds the data, as each worker does)
    checked = family.trainer(config, progress=False)
    checked.check_start(resume)
    from ray.train import FailureConfig, RunConfig, ScalingConfig  # seconds: after the checks
    from ray.train.torch import TorchConfig, TorchTrainer

    resources: dict[str, float] = {"CPU": float(config.threads or 1)}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    started_ray = start_ray(ray_address, num_cpus=None if ray_address else os.cpu_count())
    try:
        _check_resources(workers, resources)
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={
                "family": family.kind,
                "config": config.model_dump(),
                "progress": progress,
                "resume": resume,
                "fail_once_at_step": fail_once_at_step,
                "gpus": gpus_per_worker,
            },
            torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=bool(gpus_per_worker), resources_per_worker=resources
            ),
            run_config=RunConfig(
                name="train",
                storage_path=str(out / "ray"),
                failure_config=FailureConfig(max_failures=max_failures),
            ),
        )
        if started_ray:
            _fit_interruptibly(trainer)
        else:  # a Ray the caller started is theirs to stop: Ray Train's own Ctrl-C applies
            trainer.fit()
    except UserError:
        raise
    except Exception as err:  # Ray Train wraps the workers' errors in its own
        raise DistributedTrainingError(f"distributed training in {out} failed: {err}") from err
    finally:
        if started_ray:
            started_ray.stop()
    if not checked.artifact_path.exists():
        raise DistributedTrainingError(f"training ended without {checked.artifact_path}")
    return checked._completed()
