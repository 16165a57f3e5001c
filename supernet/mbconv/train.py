"""Supernet training by progressive shrinking (once-for-all), with in-place distillation.

The run is a list of phases, each with its own epochs, learning rate (cosine with linear
warmup) and the gene choices it trains, e.g. largest -> kernel -> depth -> expand -> width.
Every step follows the sandwich rule at one sampled resolution: the largest subnet learns
from the labels, then the smallest and `random_subnets` random subnets learn from the labels
and from the largest subnet's soft predictions (in-place distillation); their gradients
accumulate into one optimizer step. Before a phase that adds smaller expand ratios, middle
channels are sorted by importance, protecting the prefixes that smaller ratios already use.

A checkpoint with optimizer, scheduler and every RNG state is written after each epoch
(supernet.run); `resume=True` continues a killed run and reproduces the unbroken run bit for
bit on CPU.

On a GPU (`device: auto | cuda`) the steps run under autocast (`amp`: bf16, or fp16 with a
gradient scaler; supernet.device), channels_last, batches copied from pinned memory, and
optionally with the static stem and head compiled by torch.compile (`compile`).
Checkpoints hold CPU float32 tensors whatever the device.

Data-parallel training (supernet.distributed, run on Ray Train by nas.training) runs this
same loop on every rank; each rank evaluates its share of the archs an epoch reports.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from supernet.data import Dataset, DatasetConfig, load_dataset, random_shift, resize
from supernet.device import AmpName, DeviceName, Precision, cpu_copy, resolve_device, to_device
from supernet.distributed import all_reduce_gradients, gather_objects
from supernet.errors import ConfigError
from supernet.family import build
from supernet.io import format_validation_error, merge_overrides, read_yaml_mapping
from supernet.mbconv.checkpoint import SUPERNET_FORMAT, save_supernet
from supernet.mbconv.evaluate import EvalResult, SupernetEvaluator
from supernet.mbconv.ops import ElasticBatchNorm2d, ElasticLinear
from supernet.mbconv.space import MBConvSpace
from supernet.mbconv.transfer import check_source, transfer_weights
from supernet.run import ResumableRun, Rngs, TrainResult, cosine_schedule
from supernet.space import Arch, get_space

log = logging.getLogger(__name__)
STATE_FORMAT = "nas-train-state/1"


class PhaseConfig(BaseModel):
    """One progressive-shrinking phase. A gene left out is trained at its largest choice."""

    model_config = ConfigDict(extra="forbid")

    name: str
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0)
    warmup_epochs: float = Field(0.0, ge=0)
    ks: list[int] | None = None
    e: list[int] | None = None
    d: list[int] | None = None  # applied to every stage, within each stage's own choices
    w: list[float] | None = None
    r: list[int] | None = None  # None: every resolution of the space (elastic from the start)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a preset name, a path to a YAML file defining a space, or that definition as a mapping
    # (supernet.get_space); checked as the run starts, before any training step
    space: str | dict[str, Any]
    data: DatasetConfig = DatasetConfig()
    # once-for-all transfer: start from an official once-for-all MobileNetV3 checkpoint or a
    # trained supernet.pt of the same space (supernet.mbconv.transfer); None: from scratch
    init_from: str | None = None
    out_dir: str = "runs/supernet"
    seed: int = 0
    threads: int | None = Field(None, ge=1)  # None: torch's default
    batch_size: int = Field(64, ge=1)  # per worker: N workers step on N x batch_size images
    channels_last: bool = True  # 2-3x faster training steps on CPU
    device: DeviceName = "auto"  # auto: CUDA when torch sees a GPU
    amp: AmpName = "auto"  # auto: bf16 (or fp16) autocast on CUDA, float32 on a CPU
    compile: bool = False  # torch.compile the static stem and head (not the elastic blocks)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    random_subnets: int = Field(2, ge=0)  # the "n" of the sandwich rule
    distill_weight: float = Field(1.0, ge=0)
    distill_temperature: float = Field(1.0, gt=0)
    augment_shift: int = Field(2, ge=0)  # random translation, pixels at the stored size
    bn_recalibration_images: int = Field(500, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    phases: list[PhaseConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_phase_names(self) -> TrainConfig:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        return self

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    raw = merge_overrides(read_yaml_mapping(path, ConfigError, "config"), overrides)
    try:
        return TrainConfig(**raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"config {path}")) from None


# ----- what a phase trains -----------------------------------------------------------------


@dataclass(frozen=True)
class PhaseChoices:
    """The gene choices one phase samples from, resolved against the space."""

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[tuple[int, ...], ...]  # per stage
    w: tuple[float, ...]
    r: tuple[int, ...]

    @classmethod
    def resolve(cls, space: MBConvSpace, phase: PhaseConfig, index: int) -> PhaseChoices:
        c = space.config

        def pick(key: str, given: list | None, allowed: Sequence) -> tuple:
            if given is None:
                return (max(allowed),)
            bad = [v for v in given if v not in allowed]
            if bad or not given:
                raise ConfigError(
                    f"phases[{index}] ({phase.name}).{key}: {bad or given} not in the "
                    f"space's choices {list(allowed)}"
                )
            return tuple(sorted(set(given)))

        ks = pick("ks", phase.ks, c.kernel_sizes)
        e = pick("e", phase.e, c.expand_ratios)
        w = pick("w", phase.w, c.width_mults)
        r = pick("r", phase.r, c.resolutions) if phase.r is not None else tuple(c.resolutions)
        all_depths = sorted({d for s in c.stages for d in s.depths})
        d_given = pick("d", phase.d, all_depths) if phase.d is not None else None
        depths = []
        for stage in c.stages:
            if d_given is None:
                depths.append((max(stage.depths),))
            else:
                # a stage keeps its largest depth if none of the phase's depths fits it
                depths.append(
                    tuple(d for d in d_given if d in stage.depths) or (max(stage.depths),)
                )
        return cls(ks, e, tuple(depths), w, r)

    @property
    def elastic(self) -> bool:
        return any(len(v) > 1 for v in (self.ks, self.e, self.w, *self.d))

    def _arch(self, space: MBConvSpace, r: int, pick: Callable[[Sequence], Any]) -> Arch:
        arch: Arch = {
            "ks": [pick(self.ks) for _ in range(space.num_blocks)],
            "e": [pick(self.e) for _ in range(space.num_blocks)],
            "d": [pick(d) for d in self.d],
            "r": r,
        }
        if space.config.elastic_width:
            arch["w"] = pick(self.w)
        return space.canonical(arch)

    def largest(self, space: MBConvSpace, r: int) -> Arch:
        return self._arch(space, r, max)

    def smallest(self, space: MBConvSpace, r: int) -> Arch:
        return self._arch(space, r, min)

    def sample(self, space: MBConvSpace, r: int, rng: np.random.Generator) -> Arch:
        return self._arch(space, r, lambda choices: choices[int(rng.integers(len(choices)))])


def soft_cross_entropy(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Cross-entropy against the teacher's softened distribution, scaled by T^2."""
    target = F.softmax(teacher / temperature, dim=1)
    log_probs = F.log_softmax(student / temperature, dim=1)
    return -(target * log_probs).sum(1).mean() * temperature**2


@dataclass
class StepStats:
    loss_largest: float
    loss_students: float


def sandwich_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    archs: Sequence[Arch],
    config: TrainConfig,
    reduce_gradients: Callable[[], None] | None = None,
    loss_scale: float = 1.0,
    precision: Precision | None = None,
) -> StepStats:
    """One optimizer step: archs[0] (the largest) learns from labels, the rest also from it.
    Data-parallel training weights each loss by this rank's share of the global batch
    (`loss_scale`) and runs `reduce_gradients` once, after every subnet's backward.
    `precision`: autocast and (fp16) gradient scaling; None trains in float32."""
    precision = precision or Precision("off", x.device)
    optimizer.zero_grad(set_to_none=True)
    net.set_active(archs[0])
    with precision.autocast():
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
    precision.backward(loss * loss_scale)
    teacher = logits.detach()
    students = 0.0
    for arch in archs[1:]:
        net.set_active(arch)
        with precision.autocast():
            out = net(x)
            student_loss = F.cross_entropy(out, y, label_smoothing=config.label_smoothing)
            if config.distill_weight > 0:
                student_loss = student_loss + config.distill_weight * soft_cross_entropy(
                    out, teacher, config.distill_temperature
                )
        precision.backward(student_loss * loss_scale)
        students += student_loss.item()
    if reduce_gradients is not None:
        reduce_gradients()
    precision.step(optimizer)
    return StepStats(loss.item(), students / max(len(archs) - 1, 1))


# ----- the run -----------------------------------------------------------------------------


class Trainer(ResumableRun):
    state_format = STATE_FORMAT
    artifact_name = "supernet.pt"
    artifact_format = SUPERNET_FORMAT
    final_key = "final_val"

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        super().__init__(config, progress)
        base = get_space(config.space)
        if not isinstance(base, MBConvSpace):
            raise ConfigError(f"space {base.name!r} cannot be trained by this trainer")
        self.data: Dataset = load_dataset(config.data)
        # retarget the space to the data (e.g. ofa-mbv3 on CIFAR-10: 3 channels, 10 classes)
        self.base_space = base
        self.space = base.variant(self.data.in_channels, self.data.num_classes)
        self.initialised_from: dict[str, Any] | None = None  # the transfer's record
        self.choices = [PhaseChoices.resolve(self.space, p, i) for i, p in enumerate(config.phases)]

    # -- state --

    def _fresh(self) -> None:
        self.rngs = Rngs.seeded(self.config.seed)
        self.device = resolve_device(self.config.device)
        self.precision = Precision(self.config.amp, self.device)
        self.net = build(self.space)  # built on the CPU: the same initial weights anywhere
        self._place_net()
        self._sync_batch_norm(self.ranks.distributed)
        self.phase_index, self.epochs_done, self.global_step = 0, 0, 0
        self.history = []
        self.optimizer_state: dict | None = None  # of the phase under way, once resumed
        self.scheduler_state: dict | None = None

    def _place_net(self) -> None:
        """Move the supernet to its device and memory format, and compile its static parts."""
        self.net = self.net.to(self.device)
        if self.config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if self.config.compile:
            self.net.compile_static_parts()

    def _check_new_run(self) -> None:
        if self.config.init_from:
            check_source(self.config.init_from)

    def _start(self) -> None:
        self._fresh()
        if self.config.init_from:  # once-for-all transfer: a new run starts from those weights
            self.initialised_from = transfer_weights(
                self.net, self.base_space, self.config.init_from
            )

    def _state(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "model": cpu_copy(self.net.state_dict()),
            "optimizer": cpu_copy(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.precision.state_dict(),  # fp16 only
            "phase_index": self.phase_index,
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "initialised_from": self.initialised_from,
            "workers": self.ranks.world,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.phase_index, self.epochs_done = state["phase_index"], state["epochs_done"]
        self.global_step = state["global_step"]
        self.initialised_from = state.get("initialised_from")  # absent before transfers
        self.optimizer_state, self.scheduler_state = state["optimizer"], state["scheduler"]
        self.precision.load_state_dict(state.get("grad_scaler"))
        before = state.get("workers", 1)
        if before != self.ranks.world and self.ranks.leader:
            log.warning(
                "resuming a run trained by %d worker(s) with %d: the global batch changes "
                "from %d to %d images per step (the rest of the run is not the run it was)",
                before,
                self.ranks.world,
                before * self.config.batch_size,
                self.global_batch,
            )

    @property
    def global_batch(self) -> int:
        """Images per optimizer step: `batch_size` on each of the ranks."""
        return self.config.batch_size * self.ranks.world

    def _shard_dropout(self, total: int) -> None:
        for module in self.net.modules():
            if isinstance(module, ElasticLinear):
                module.batch_shard = (self.ranks.shard_start(total), total)

    def _sync_batch_norm(self, synced: bool) -> None:
        for module in self.net.modules():
            if isinstance(module, ElasticBatchNorm2d):
                module.synced = synced

    @property
    def done(self) -> bool:
        return self.phase_index >= len(self.config.phases)

    # -- loop --

    def _optimizer(self, phase: PhaseConfig) -> tuple[torch.optim.Optimizer, LambdaLR]:
        cfg = self.config
        # No weight decay on BatchNorm, biases and kernel transforms, as once-for-all does.
        decay = [p for n, p in self.net.named_parameters() if p.dim() > 1 and "transform" not in n]
        rest = [p for n, p in self.net.named_parameters() if p.dim() <= 1 or "transform" in n]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.SGD(
            groups,
            lr=phase.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
        steps_per_epoch = math.ceil(len(self.data.train) / self.global_batch)
        warmup = round(phase.warmup_epochs * steps_per_epoch)
        return optimizer, cosine_schedule(optimizer, warmup, phase.epochs * steps_per_epoch)

    def _sort_channels_for(self, index: int) -> None:
        """Before a phase that adds smaller expand ratios, sort middle channels (OFA)."""
        if index == 0:
            return
        before, now = set(self.choices[index - 1].e), set(self.choices[index].e)
        if now - before and min(now) < min(before):
            keep = sorted(e for e in before if e != max(before))
            log.info("sorting middle channels by importance (keeping prefixes for e=%s)", keep)
            self.net.sort_middle_channels(keep)

    def _batch(self, index: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
        x = self.data.normalize(self.data.train.images[index])
        x = random_shift(x, self.config.augment_shift, self.rngs.data)
        x = resize(x, resolution)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return to_device(x, self.device), to_device(self.data.train.labels[index], self.device)

    def _train(self, stop_after_steps: int | None) -> TrainResult:
        cfg = self.config
        started = time.perf_counter()
        evaluator = SupernetEvaluator(
            self.net,
            self.space,
            self.data,
            split="val",
            recalibration_images=cfg.bn_recalibration_images,
            batch_size=cfg.eval_batch_size,
            channels_last=cfg.channels_last,
            seed=cfg.seed,
            device=self.device,
            # float32: a run's recorded accuracies are reproduced to the image from its file,
            # whatever the process or thread count (bfloat16 kernels vary with those)
            precision="fp32",
        )
        steps_per_epoch = math.ceil(len(self.data.train) / self.global_batch)
        done_before = sum(p.epochs for p in cfg.phases[: self.phase_index]) + self.epochs_done
        columns = (
            TextColumn("[bold]{task.fields[phase]}[/] epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("acc L {task.fields[acc_l]} S {task.fields[acc_s]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not (self.progress and self.ranks.leader)) as bar:
            task = bar.add_task(
                "train",
                total=cfg.total_epochs * steps_per_epoch,
                completed=done_before * steps_per_epoch,
                phase="",
                epoch="",
                loss=0.0,
                acc_l="-",
                acc_s="-",
            )
            while self.phase_index < len(cfg.phases):
                index = self.phase_index
                phase, choices = cfg.phases[index], self.choices[index]
                self.optimizer, self.scheduler = self._optimizer(phase)
                if self.epochs_done == 0:
                    self._sort_channels_for(index)
                else:
                    self.optimizer.load_state_dict(self.optimizer_state)
                    self.scheduler.load_state_dict(self.scheduler_state)
                for epoch in range(self.epochs_done, phase.epochs):
                    epoch_started = time.perf_counter()
                    self.net.train()
                    order = torch.randperm(len(self.data.train), generator=self.rngs.data)
                    losses = []
                    for batch_index in torch.split(order, self.global_batch):
                        r = choices.r[int(self.rngs.arch.integers(len(choices.r)))]
                        archs = [choices.largest(self.space, r)]
                        if choices.elastic:
                            archs.append(choices.smallest(self.space, r))
                            archs += [
                                choices.sample(self.space, r, self.rngs.arch)
                                for _ in range(cfg.random_subnets)
                            ]
                        x, y = self._batch(batch_index, r)  # the global batch, on every rank
                        reduce, share = None, 1.0
                        if self.ranks.distributed:
                            self._shard_dropout(len(batch_index))
                            x, y = self.ranks.shard(x), self.ranks.shard(y)
                            reduce = partial(all_reduce_gradients, list(self.net.parameters()))
                            share = len(y) / len(batch_index)
                        stats = sandwich_step(
                            self.net,
                            self.optimizer,
                            x,
                            y,
                            archs,
                            cfg,
                            reduce,
                            share,
                            self.precision,
                        )
                        self.scheduler.step()
                        self.global_step += 1
                        losses.append(stats.loss_largest)
                        bar.update(
                            task,
                            advance=1,
                            loss=stats.loss_largest,
                            phase=phase.name,
                            epoch=f"{epoch + 1}/{phase.epochs}",
                        )
                        self._check_stop(self.global_step, stop_after_steps)
                    self.epochs_done = epoch + 1
                    train_seconds = time.perf_counter() - epoch_started
                    record = self._epoch_record(phase, choices, evaluator, losses, started)
                    record["train_seconds"] = round(train_seconds, 2)  # steps only
                    self.history.append(record)
                    bar.update(
                        task,
                        acc_l=f"{record['acc_largest']:.2%}",
                        acc_s=f"{record['acc_smallest']:.2%}",
                    )
                    if self.ranks.leader:
                        log.info("%s", json.dumps(record))
                    if self.epochs_done == phase.epochs:  # the next phase starts fresh
                        self.phase_index, self.epochs_done = index + 1, 0
                    self._save()
        return self._finish(evaluator, started)

    def _evaluate(self, evaluator: SupernetEvaluator, archs: Sequence[Arch]) -> list[EvalResult]:
        """Every arch's evaluation, BN recalibration included, split between the ranks:
        each evaluates archs[rank::world] on its own (unsynchronised BatchNorm: the others
        are busy with other archs), and every rank gets all the results, in order."""
        self._sync_batch_norm(False)
        try:
            mine = [evaluator.evaluate(arch) for arch in self.ranks.share(archs)]
        finally:
            self._sync_batch_norm(self.ranks.distributed)
        if not self.ranks.distributed:
            return mine
        shares = gather_objects(mine)  # shares[rank] = that rank's archs[rank::world]
        results: list[EvalResult] = [None] * len(archs)  # type: ignore[list-item]
        for rank, share in enumerate(shares):
            results[rank :: self.ranks.world] = share
        return results

    def _epoch_record(
        self,
        phase: PhaseConfig,
        choices: PhaseChoices,
        evaluator: SupernetEvaluator,
        losses: list[float],
        started: float,
    ) -> dict[str, Any]:
        largest, smallest = self._evaluate(
            evaluator,
            [
                choices.largest(self.space, max(choices.r)),
                choices.smallest(self.space, min(choices.r)),
            ],
        )
        return {
            "phase": phase.name,
            "epoch": self.epochs_done,
            "step": self.global_step,
            "train_loss": round(float(np.mean(losses)), 5),
            "acc_largest": largest.top1,
            "acc_smallest": smallest.top1,
            "seconds": round(time.perf_counter() - started, 1),
        }

    def _finish(self, evaluator: SupernetEvaluator, started: float) -> TrainResult:
        largest, smallest = self._evaluate(evaluator, [self.space.largest(), self.space.smallest()])
        if not self.ranks.leader:  # the leader writes supernet.pt
            self.ranks.barrier()
            return self._finished_elsewhere(started)
        final = {
            "acc_largest": largest.top1,
            "acc_smallest": smallest.top1,
            "loss_largest": largest.loss,
            "loss_smallest": smallest.loss,
        }
        meta = {
            "train_config": self.config.model_dump(),
            "history": self.history,
            "final_val": final,
            "bn_recalibration_images": self.config.bn_recalibration_images,
            "channels_last": self.config.channels_last,
            "total_epochs": self.config.total_epochs,
            "torch": str(torch.__version__),
            "initialised_from": self.initialised_from,  # None: trained from scratch
        }
        sha = save_supernet(
            self.net, self.space, self.data, self.config.data, self.artifact_path, meta
        )
        self.ranks.barrier()
        return self._finished(sha, final, started)


def train_supernet(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train (or resume) a supernet run; writes out_dir/{checkpoint,supernet}.pt."""
    return Trainer(config, progress=progress).run(resume=resume, stop_after_steps=stop_after_steps)
