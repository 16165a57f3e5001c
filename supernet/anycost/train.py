"""Anycost GAN training on the bundled digits (padded to 32x32), with checkpoints and resume.

Stage 1 (multi-resolution): every step samples an output resolution and trains the full-width
generator against the discriminator at that resolution.
Stage 2 (elastic channels): channels are first sorted by importance; every step samples a
sub-generator (half uniform, half flexible per-layer ratios) and trains it and the full
generator adversarially, with a consistency loss that pulls the sub-generator's image
towards the full generator's on the same latent (downsampled to its resolution): pixel MSE
plus the perceptual distance of the in-project feature network.

Losses: non-saturating logistic; lazy R1 penalty on real images every `r1_every` steps.
As in StyleGAN, the generator that is evaluated and saved is an exponential moving average
of the trained one: GAN weights oscillate from step to step, their average far less. Its
half-life is `ema_half_life` steps, but at most a tenth of the steps since the average
(re)started (StyleGAN2-ADA's ramp-up). The average restarts when stage 2 sorts the
channels: sub-generators then learn fast, and an average over weights from before and after
that is worse for them than either end.
A checkpoint with both networks, both optimizers and every RNG state is written after each
epoch (supernet.run); `resume=True` continues a killed run and reproduces the unbroken run on
CPU.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from supernet.anycost.discriminator import ConditionalDiscriminator
from supernet.anycost.evaluate import GAN_FORMAT, GanEvaluator, save_sample_grid
from supernet.anycost.generator import AnycostGenerator
from supernet.anycost.metrics import (
    FeatureNet,
    load_feature_net,
    perceptual_distance,
    save_feature_net,
    to_gan_range,
    train_feature_net,
)
from supernet.anycost.space import AnycostGANSpace
from supernet.data import Dataset, DatasetConfig, load_dataset, resize
from supernet.errors import ConfigError
from supernet.io import (
    file_sha256,
    format_validation_error,
    merge_overrides,
    read_yaml_mapping,
    save_atomic,
)
from supernet.run import ResumableRun, Rngs, TrainResult
from supernet.space import Arch, get_space, space_record

log = logging.getLogger(__name__)
STATE_FORMAT = "nas-gan-train-state/1"


class GanTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a preset name, a path to a YAML file defining a space, or that definition as a mapping
    # (supernet.get_space); checked as the run starts, before any training step
    space: str | dict[str, Any] = "anycost-gan-mnist"
    data: DatasetConfig = DatasetConfig()
    out_dir: str = "runs/mnist-gan"
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(0.002, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = Field(1.0, ge=0)
    r1_every: int = Field(4, ge=1)
    feature_net_epochs: int = Field(8, ge=1)
    stage1_epochs: int = Field(6, ge=0)
    stage2_epochs: int = Field(6, ge=0)
    consistency_mse: float = Field(1.0, ge=0)
    consistency_perceptual: float = Field(1.0, ge=0)
    ema_half_life: float = Field(140.0, ge=0)  # steps; 0: evaluate the trained weights
    eval_samples: int = Field(500, ge=10)  # images per domain-FID estimate

    @property
    def total_epochs(self) -> int:
        return self.stage1_epochs + self.stage2_epochs


def load_gan_config(path: str | Path, **overrides: Any) -> GanTrainConfig:
    raw = merge_overrides(read_yaml_mapping(path, ConfigError, "GAN config"), overrides)
    try:
        return GanTrainConfig(**raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"GAN config {path}")) from None


class GanTrainer(ResumableRun):
    state_format = STATE_FORMAT
    artifact_name = "gan.pt"
    artifact_format = GAN_FORMAT

    def __init__(self, config: GanTrainConfig, progress: bool = True) -> None:
        super().__init__(config, progress)
        space = get_space(config.space)
        if not isinstance(space, AnycostGANSpace):
            raise ConfigError(f"space {space.name!r} is not a GAN space")
        self.space = space
        self.feature_path = self.out_dir / "feature_net.pt"
        self.data: Dataset = load_dataset(config.data)
        if self.data.in_channels != space.config.image_channels:
            raise ConfigError(
                f"data has {self.data.in_channels} channels, space {space.name!r} makes "
                f"{space.config.image_channels}"
            )
        self.real = to_gan_range(self.data.train.images, space.config.image_size)

    # ----- state ------------------------------------------------------------------------------

    def _fresh(self) -> None:
        self.rngs = Rngs.seeded(self.config.seed)
        self.generator = AnycostGenerator(self.space)
        self.discriminator = ConditionalDiscriminator(self.space)
        self.g_ema = self._average_of(self.generator)
        self.ema_steps = 0  # steps since the average (re)started
        self.opt_g, self.opt_d = self._optimizers()
        self.stage, self.epochs_done, self.step = 1, 0, 0
        self.history = []

    @staticmethod
    def _average_of(generator: AnycostGenerator) -> AnycostGenerator:
        return copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def _update_average(self) -> None:
        self.ema_steps += 1
        half_life = min(self.config.ema_half_life, 0.1 * self.ema_steps)
        beta = 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0
        for avg, p in zip(self.g_ema.parameters(), self.generator.parameters(), strict=True):
            avg.lerp_(p, 1.0 - beta)
        for avg, b in zip(self.g_ema.buffers(), self.generator.buffers(), strict=True):
            avg.copy_(b)

    def _optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        cfg = self.config
        return (
            torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=cfg.betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=cfg.betas),
        )

    def _state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "ema_steps": self.ema_steps,
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "stage": self.stage,
            "epochs_done": self.epochs_done,
            "step": self.step,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.g_ema.load_state_dict(state["g_ema"])
        self.ema_steps = state["ema_steps"]
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.stage, self.epochs_done = state["stage"], state["epochs_done"]
        self.step = state["step"]

    @property
    def done(self) -> bool:
        return self.stage > 2

    def _feature_net(self) -> FeatureNet:
        """Trained once per run (deterministic), kept beside the checkpoints. Always used as
        loaded from its file, so a resumed run computes with exactly the same module (memory
        layout included) as the run that trained it."""
        if not self.feature_path.exists():
            net, info = train_feature_net(
                self.data,
                epochs=self.config.feature_net_epochs,
                seed=self.config.seed,
                progress=self.progress,
            )
            meta = {"dataset": self.config.data.model_dump(), **info}
            save_feature_net(net, self.feature_path, meta)
            log.info("feature net: validation accuracy %.2f%%", 100 * info["val_accuracy"])
        net, _ = load_feature_net(self.feature_path)
        return net

    # ----- steps ------------------------------------------------------------------------------

    def _code(self, arch: Arch) -> Tensor:
        return torch.from_numpy(self.space.encode(arch))

    def _d_step(self, real: Tensor, fakes: list[tuple[Tensor, Tensor]]) -> float:
        cfg = self.config
        d = self.discriminator
        self.opt_d.zero_grad(set_to_none=True)
        total = 0.0
        for fake, code in fakes:
            loss = F.softplus(d(fake.detach(), code)).mean() + F.softplus(-d(real, code)).mean()
            if self.step % cfg.r1_every == 0 and cfg.r1_gamma > 0:
                real_r = real.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(d(real_r, code).sum(), real_r, create_graph=True)
                r1 = grad.pow(2).flatten(1).sum(1).mean()
                loss = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
            loss.backward()
            total += loss.item()
        self.opt_d.step()
        return total / len(fakes)

    def _train_step(self, real32: Tensor, features: FeatureNet | None) -> dict[str, float]:
        cfg = self.config
        g, n = self.generator, real32.shape[0]
        res = self.space.config.resolutions[
            int(self.rngs.arch.integers(len(self.space.config.resolutions)))
        ]
        full = self.space.uniform(1.0, res)
        sub = self.space.sample(self.rngs.arch) if self.stage == 2 else None
        if sub is not None:
            sub = {**sub, "res": res}
            sub = self.space.canonical(sub)
        real = resize(real32, res)
        z = torch.randn(n, self.space.config.z_dim)

        # discriminator
        with torch.no_grad():
            g.set_active(full)
            fakes = [(g(z), self._code(full))]
            if sub is not None:
                g.set_active(sub)
                fakes.append((g(z), self._code(sub)))
        d_loss = self._d_step(real, fakes)

        # generator
        self.opt_g.zero_grad(set_to_none=True)
        g.set_active(full)
        fake_full = g(z)
        g_loss = F.softplus(-self.discriminator(fake_full, self._code(full))).mean()
        stats = {"d_loss": d_loss, "g_loss": g_loss.item()}
        if sub is not None:
            with torch.no_grad():  # the full generator at full resolution is the reference
                g.set_active(self.space.largest())
                target = resize(g(z, random_noise=False), res)
            g.set_active(sub)
            fake_sub = g(z)
            g_loss = g_loss + F.softplus(-self.discriminator(fake_sub, self._code(sub))).mean()
            consistent = g(z, random_noise=False)
            mse = F.mse_loss(consistent, target)
            perceptual = (
                perceptual_distance(features, consistent, target).mean()
                if features is not None and cfg.consistency_perceptual > 0
                else torch.zeros(())
            )
            g_loss = g_loss + cfg.consistency_mse * mse + cfg.consistency_perceptual * perceptual
            stats.update(consistency_mse=mse.item(), perceptual=perceptual.item())
        g_loss.backward()
        self.opt_g.step()
        self._update_average()
        self.step += 1
        return stats

    # ----- the run ----------------------------------------------------------------------------

    def _train(self, stop_after_steps: int | None) -> TrainResult:
        cfg = self.config
        # Building these draws from torch's global RNG (module init); fork it so a resumed run
        # continues from exactly the RNG state its checkpoint saved.
        with torch.random.fork_rng(devices=[]):
            features = self._feature_net()
            evaluator = GanEvaluator(
                self.g_ema,
                self.space,
                self.data,
                features,
                samples=cfg.eval_samples,
                seed=cfg.seed,
            )
        started = time.perf_counter()
        steps_per_epoch = math.ceil(len(self.real) / cfg.batch_size)
        done = (cfg.stage1_epochs if self.stage > 1 else 0) + self.epochs_done
        columns = (
            TextColumn("[bold]stage {task.fields[stage]}[/] epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("D {task.fields[d]:.3f} G {task.fields[g]:.3f}"),
            TextColumn("FID full {task.fields[fid_full]} 0.25x {task.fields[fid_small]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not self.progress) as bar:
            task = bar.add_task(
                "gan",
                total=cfg.total_epochs * steps_per_epoch,
                completed=done * steps_per_epoch,
                stage=self.stage,
                epoch="",
                d=0.0,
                g=0.0,
                fid_full="-",
                fid_small="-",
            )
            while self.stage <= 2:
                epochs = cfg.stage1_epochs if self.stage == 1 else cfg.stage2_epochs
                if self.stage == 2 and self.epochs_done == 0 and epochs > 0:
                    self.generator.sort_channels()  # before elastic channels, as Anycost does
                    self.g_ema = self._average_of(self.generator)  # the average restarts
                    self.ema_steps = 0
                    evaluator.generator = self.g_ema
                    self.opt_g, self.opt_d = self._optimizers()  # moments follow no permutation
                for epoch in range(self.epochs_done, epochs):
                    self.generator.train()
                    order = torch.randperm(len(self.real), generator=self.rngs.data)
                    losses: list[dict[str, float]] = []
                    for index in torch.split(order, cfg.batch_size):
                        if len(index) < 2:
                            continue  # the minibatch-std layer needs two images
                        losses.append(self._train_step(self.real[index], features))
                        bar.update(
                            task,
                            advance=1,
                            stage=self.stage,
                            epoch=f"{epoch + 1}/{epochs}",
                            d=losses[-1]["d_loss"],
                            g=losses[-1]["g_loss"],
                        )
                        self._check_stop(self.step, stop_after_steps)
                    self.epochs_done = epoch + 1
                    record = self._epoch_record(evaluator, losses, started)
                    self.history.append(record)
                    bar.update(
                        task,
                        fid_full=f"{record['fid_full']:.1f}",
                        fid_small=f"{record['fid_quarter']:.1f}",
                    )
                    log.info("%s", json.dumps(record))
                    if self.epochs_done == epochs:
                        self.stage, self.epochs_done = self.stage + 1, 0
                    self._save()
                if epochs == 0:
                    self.stage, self.epochs_done = self.stage + 1, 0
                    self._save()
        return self._finish(evaluator, started)

    def _epoch_record(
        self, evaluator: GanEvaluator, losses: list[dict[str, float]], started: float
    ) -> dict[str, Any]:
        mean = {
            k: round(float(np.mean([s[k] for s in losses if k in s])), 5)
            for k in {k for s in losses for k in s}
        }
        full = evaluator.fid(self.space.largest())
        quarter = evaluator.fid(self.space.uniform(min(self.space.config.ratios)))
        return {
            "stage": self.stage,
            "epoch": self.epochs_done,
            "step": self.step,
            **mean,
            "fid_full": round(full, 3),
            "fid_quarter": round(quarter, 3),
            "seconds": round(time.perf_counter() - started, 1),
        }

    def _finish(self, evaluator: GanEvaluator, started: float) -> TrainResult:
        ratios = sorted(self.space.config.ratios, reverse=True)
        results = evaluator.evaluate_many([self.space.uniform(r) for r in ratios])
        final = {f"fid_{r}x": result.fid for r, result in zip(ratios, results, strict=True)}
        for ratio, result in zip(ratios[1:], results[1:], strict=True):  # the full one is 0
            final[f"consistency_{ratio}x"] = result.consistency
        save_sample_grid(
            self.g_ema, self.space, self.out_dir / "samples.png", seed=self.config.seed
        )
        save_atomic(
            {
                "format": GAN_FORMAT,
                **space_record(self.space),  # its name, definition and hash: no YAML needed
                "dataset": self.config.data.model_dump(),
                "generator": self.g_ema.state_dict(),
                "feature_net_sha256": file_sha256(self.feature_path),
                "meta": {
                    "train_config": self.config.model_dump(),
                    "history": self.history,
                    "final": final,
                    "eval_samples": self.config.eval_samples,
                    "torch": str(torch.__version__),
                },
            },
            self.artifact_path,
        )
        return self._finished(file_sha256(self.artifact_path), final, started)


def train_gan(
    config: GanTrainConfig,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train (or resume) an Anycost GAN run; writes out_dir/{checkpoint,gan,feature_net}.pt."""
    return GanTrainer(config, progress).run(resume=resume, stop_after_steps=stop_after_steps)
