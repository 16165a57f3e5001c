"""Resumable training runs: the part every trainer shares.

A run is a folder. `checkpoint.pt` holds the whole training state (the trainer's own part,
the config, the history and every RNG state) and is rewritten atomically after each epoch;
`config.yaml` holds the config, and the trained file (`supernet.pt`, `gan.pt`) appears when
the run is done. `ResumableRun.run` starts such a run, resumes it, refuses to resume it
under another config, or returns it as it is when it is complete. Because the RNG states
travel with the checkpoint, a killed run resumed from its last checkpoint reproduces the
unbroken run bit for bit on CPU.

A trainer subclasses `ResumableRun` and writes only what is its own: `_fresh` (the state of
a new run), `_state` and `_load_state` (its part of the checkpoint), `done`, and `_train`
(its loop).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ValidationError
from torch.optim.lr_scheduler import LambdaLR

from supernet.distributed import Ranks
from supernet.errors import CheckpointError, ConfigError
from supernet.io import format_validation_error, read_artifact, read_checkpoint, save_atomic

log = logging.getLogger(__name__)
STATE_FILE = "checkpoint.pt"  # a run folder's whole training state (what a run resumes from)


class TrainingInterrupted(RuntimeError):
    """Raised by `stop_after_steps` (tests simulate a killed run with it)."""


@dataclass
class TrainResult:
    out_dir: Path
    path: Path  # the trained file
    sha256: str
    history: list[dict[str, Any]]
    seconds: float
    final: dict[str, Any] = field(default_factory=dict)


# ----- learning rate -----------------------------------------------------------------------


def cosine_with_warmup(warmup: int, total: int) -> Callable[[int], float]:
    """The factor of the base lr at step t: linear warmup over `warmup` steps (1/warmup at
    t=0, 1 at t=warmup-1), then cosine decay to zero at step `total`, and zero after it."""
    total = max(total, 1)

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        progress = (t - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    """`cosine_with_warmup` of the optimizer's lr, stepped once per optimizer step. Its
    state_dict is plain data (LambdaLR does not save a plain function); restore the
    optimizer's state too, which holds the current lr."""
    return LambdaLR(optimizer, cosine_with_warmup(warmup, total))


# ----- random streams ----------------------------------------------------------------------


@dataclass
class Rngs:
    """A run's random streams: `arch` (numpy) picks subnets, `data` (torch) orders and
    augments batches; torch's and Python's global RNGs (module init, latents) are saved
    and restored with them."""

    arch: np.random.Generator
    data: torch.Generator

    @classmethod
    def seeded(cls, seed: int) -> Rngs:
        torch.manual_seed(seed)
        return cls(np.random.default_rng(seed), torch.Generator().manual_seed(seed))

    def state(self) -> dict[str, Any]:
        return {
            "arch": self.arch.bit_generator.state,
            "data": self.data.get_state(),
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.arch.bit_generator.state = state["arch"]
        self.data.set_state(state["data"])
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])


# ----- the run -----------------------------------------------------------------------------


class ResumableRun:
    """Fresh, resumed or completed run in `config.out_dir`, with a checkpoint per epoch."""

    state_format: ClassVar[str]  # the checkpoint's format tag
    artifact_name: ClassVar[str]  # the trained file in out_dir
    artifact_format: ClassVar[str]
    final_key: ClassVar[str] = "final"  # where the trained file's meta keeps the final figures

    def __init__(self, config: BaseModel, progress: bool = True) -> None:
        self.config, self.progress = config, progress
        self.out_dir = Path(config.out_dir)
        self.state_path = self.out_dir / STATE_FILE
        self.artifact_path = self.out_dir / self.artifact_name
        self.history: list[dict[str, Any]] = []
        # data-parallel training: every rank runs the loop, the leader alone writes files
        self.ranks = Ranks.current()
        # called on every rank after each checkpoint (Ray Train reports it; see nas.training)
        self.on_checkpoint: Callable[[ResumableRun], None] | None = None
        # called on every rank at each step (nas.training's fault injection kills a rank)
        self.on_step: Callable[[ResumableRun, int], None] | None = None

    # -- what a trainer writes --

    def _fresh(self) -> None:
        """The state of a new run; must seed `self.rngs` before it builds any module."""
        raise NotImplementedError

    def _start(self) -> None:
        """A new run (not a resumed one): `_fresh`, plus whatever only a new run does, such
        as initialising from another run's weights."""
        self._fresh()

    def _state(self) -> dict[str, Any]:
        """The trainer's part of the checkpoint (tensors and plain data)."""
        raise NotImplementedError

    def _load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        raise NotImplementedError

    def _train(self, stop_after_steps: int | None) -> TrainResult:
        raise NotImplementedError

    # -- shared --

    def run(self, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        saved = self.check_start(resume)
        if saved is not None:
            self._load(saved)
            log.info("resuming %s after %d epochs", self.state_path, len(self.history))
        else:
            self._start()
        if self.done and self.artifact_path.exists():
            log.info("training already complete: %s", self.artifact_path)
            return self._completed()
        if self.ranks.leader:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            dumped = yaml.safe_dump(self.config.model_dump(), sort_keys=False)
            (self.out_dir / "config.yaml").write_text(dumped)
        return self._train(stop_after_steps)

    def check_start(self, resume: bool) -> dict[str, Any] | None:
        """Refuse what `run` refuses before it trains: a folder that holds a run, without
        `resume`; a resume under another config; a new run's missing inputs. Returns the
        saved state to resume (None: a new run). The driver of a distributed run calls it
        too, before any worker starts."""
        if not self.state_path.exists():
            self._check_new_run()
            return None
        if not resume:
            raise ConfigError(
                f"{self.out_dir} already holds a training run; pass --resume to continue it "
                "or choose another out_dir"
            )
        state = read_checkpoint(self.state_path, self.state_format)
        kind = type(self.config)
        try:
            saved = kind(**state["config"])
        except ValidationError as err:
            message = format_validation_error(err, f"saved config in {self.state_path}")
            raise CheckpointError(message) from None
        # out_dir is where this checkpoint was just found, whatever the saved config spells
        # (a relative path, which a distributed run's driver resolves; a folder since moved)
        fields = (k for k in kind.model_fields if k != "out_dir")
        diff = sorted(k for k in fields if getattr(saved, k) != getattr(self.config, k))
        if diff:
            raise ConfigError(
                f"cannot resume {self.state_path}: the config differs in {diff}; "
                "use the run's own config or another out_dir"
            )
        return state

    def _check_new_run(self) -> None:
        """What a new run needs that the config alone does not show (a file to start
        from), checked before anything is built."""

    def _load(self, state: dict[str, Any]) -> None:
        self._fresh()
        self._load_state(state)
        self.history = list(state["history"])
        self.rngs.restore(state["rng"])

    def _save(self) -> None:
        if self.ranks.leader:
            state = {
                "format": self.state_format,
                "config": self.config.model_dump(),
                **self._state(),
                "history": self.history,
                "rng": self.rngs.state(),
            }
            save_atomic(state, self.state_path)
        self.ranks.barrier()  # no rank reads or reports a checkpoint before it is written
        if self.on_checkpoint is not None:
            self.on_checkpoint(self)

    def _check_stop(self, step: int, stop_after_steps: int | None) -> None:
        if self.on_step is not None:
            self.on_step(self, step)
        if stop_after_steps is not None and step >= stop_after_steps:
            raise TrainingInterrupted(f"stopped after {step} steps")

    def _completed(self) -> TrainResult:
        artifact = read_artifact(self.artifact_path, self.artifact_format)
        meta = artifact.data.get("meta", {})
        history, final = list(meta.get("history", [])), dict(meta.get(self.final_key, {}))
        return TrainResult(self.out_dir, self.artifact_path, artifact.sha256, history, 0.0, final)

    def _finished_elsewhere(self, started: float) -> TrainResult:
        """A rank other than the leader: the leader wrote the trained file and its figures."""
        seconds = time.perf_counter() - started
        return TrainResult(self.out_dir, self.artifact_path, "", self.history, seconds, {})

    def _finished(self, sha256: str, final: dict[str, Any], started: float) -> TrainResult:
        """Write history.jsonl beside the trained file; the run's result."""
        with (self.out_dir / "history.jsonl").open("w") as f:
            for record in self.history:
                f.write(json.dumps(record) + "\n")
        seconds = time.perf_counter() - started
        return TrainResult(self.out_dir, self.artifact_path, sha256, self.history, seconds, final)
