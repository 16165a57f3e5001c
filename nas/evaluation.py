"""Candidate evaluation: quality and every target device's costs.

Quality is a classifier's top-1 (from the accuracy predictor, or measured with the supernet)
or a generator's domain FID and consistency (measured with the trained Anycost generator).
A `CandidateEvaluator` loads the checkpoint, the predictor and the device models once and
then evaluates batches of archs. The search runs one in-process, or one per Ray actor
(nas.workers). Its input, `EvaluatorSpec`, is plain data so it can be shipped to actors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latency_models as lm
from nas.config import ACCURACY, NETWORK_METRICS, SearchConfig
from supernet.anycost.evaluate import GanEvaluator, TrainedGan, load_gan
from supernet.artifacts import open_artifact
from supernet.mbconv.checkpoint import TrainedSupernet, load_supernet
from supernet.mbconv.predictor import AccuracyPredictor, load_predictor
from supernet.space import Arch, SearchSpace

log = logging.getLogger(__name__)

Metrics = dict[str, float]


@dataclass(frozen=True)
class DeviceTarget:
    name: str
    batch: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluatorSpec:
    supernet: str
    predictor: str | None
    devices: tuple[DeviceTarget, ...]
    threads: int | None = None  # torch threads per evaluator (1 per Ray actor)

    @classmethod
    def from_config(cls, config: SearchConfig, threads: int | None = None) -> EvaluatorSpec:
        devices = tuple(
            DeviceTarget(name, t.batch, dict(t.options)) for name, t in config.targets.items()
        )
        return cls(config.supernet, config.predictor, devices, threads)


def supernet_space(path: str | Path) -> SearchSpace:
    """The space of a trained file (supernet or GAN), without building the network."""
    return open_artifact(path).space


class CandidateEvaluator:
    """Evaluates archs: `evaluate(archs, quality="predictor"|"supernet"|None)` -> metrics."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        artifact = open_artifact(spec.supernet)
        self.kind, self.space = artifact.kind, artifact.space
        self._trained: TrainedSupernet | None = None
        self._supernet_evaluator = None
        self._gan_evaluator: GanEvaluator | None = None
        self.predictor: AccuracyPredictor | None = (
            load_predictor(spec.predictor, spec.supernet) if spec.predictor else None
        )
        self.devices = [(d, lm.load_hardware(d.name)) for d in spec.devices]
        self._specs: dict[tuple[str, int], lm.NetworkSpec] = {}

    @property
    def trained(self) -> TrainedSupernet:
        if self._trained is None:  # loaded on first use: predictor-only searches never need it
            self._trained = load_supernet(self.spec.supernet)
        return self._trained

    def measure(self, archs: Sequence[Arch]) -> np.ndarray:
        """Top-1 on the validation split, measured with the supernet (BN recalibrated)."""
        if self._supernet_evaluator is None:
            self._supernet_evaluator = self.trained.evaluator()
        return np.array([self._supernet_evaluator.evaluate(a).top1 for a in archs])

    def accuracy(self, archs: Sequence[Arch], source: str) -> np.ndarray:
        if source == "supernet":
            return self.measure(archs)
        if self.predictor is None:
            raise ValueError("accuracy from the predictor needs a predictor")
        return self.predictor.predict(archs)

    def gan_quality(self, archs: Sequence[Arch]) -> list[Metrics]:
        """Domain FID and consistency, measured with the trained generator."""
        if self._gan_evaluator is None:
            trained: TrainedGan = load_gan(self.spec.supernet)
            self._gan_evaluator = trained.evaluator()
        results = self._gan_evaluator.evaluate_many(archs)
        return [{"fid": r.fid, "consistency": r.consistency} for r in results]

    def quality(self, archs: Sequence[Arch], source: str) -> list[Metrics]:
        if self.kind == "gan":
            return self.gan_quality(archs)
        return [{ACCURACY: float(v)} for v in self.accuracy(archs, source).tolist()]

    def spec_of(self, arch: Arch, batch: int) -> lm.NetworkSpec:
        key = (self.space.arch_id(arch), batch)
        if key not in self._specs:
            base = self._specs.get((key[0], 1)) or self.space.to_spec(arch)
            self._specs[(key[0], 1)] = base
            self._specs[key] = base if batch == 1 else base.with_batch(batch)
        return self._specs[key]

    def costs(self, archs: Sequence[Arch]) -> list[Metrics]:
        """ "DEVICE.METRIC" for every device, plus "macs" and "params" (per sample) once."""
        out: list[Metrics] = [{} for _ in archs]
        for target, hw in self.devices:
            specs = [self.spec_of(a, target.batch) for a in archs]
            columns = hw.predict_arrays(specs, **target.options)
            for metric, values in columns.items():
                key = metric if metric in NETWORK_METRICS else f"{target.name}.{metric}"
                for row, value in zip(out, values.tolist(), strict=True):
                    row[key] = float(value)
        return out

    def evaluate(self, archs: Sequence[Arch], quality: str | None = "predictor") -> list[Metrics]:
        """Costs on every device, plus quality from `quality`: "predictor" or "supernet"
        (measured with the trained network), or None for costs only."""
        if not archs:
            return []
        rows = self.costs(archs)
        if quality is not None:
            for row, measured in zip(rows, self.quality(archs, quality), strict=True):
                row.update(measured)
        return rows
