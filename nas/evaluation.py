"""Candidate evaluation: quality and every target device's costs.

Quality comes from the model family of the trained file (top-1 for classifiers; domain FID
and consistency for generators), either predicted (an accuracy predictor, where the family
has one) or measured with the trained network. A `CandidateEvaluator` holds the opened
files and device models and evaluates batches of archs. The search runs one in-process,
built from what validating its config already opened, or one per Ray actor (nas.workers),
built from an `EvaluatorSpec`: plain data naming each file with the SHA-256 recorded at
launch, which the actor checks before it evaluates anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import latency_models as lm
from latency_models.uncertainty import DEFAULT_COVERAGE, bound_keys
from nas.config import NETWORK_METRICS
from nas.resources import DeviceTarget, SearchResources
from supernet.family import OpenedArtifact, PartialMeasurement, open_artifact
from supernet.space import Arch

log = logging.getLogger(__name__)

Metrics = dict[str, float]


@dataclass(frozen=True)
class EvaluatorSpec:
    """What an evaluator needs, as plain data that can be shipped to Ray actors."""

    supernet: str  # absolute path of the trained file
    supernet_sha256: str  # as recorded at launch: an actor refuses any other file
    predictor: str | None
    predictor_sha256: str | None
    devices: tuple[DeviceTarget, ...]
    threads: int | None = None  # torch threads per evaluator (1 per Ray actor)
    quality_metrics: tuple[str, ...] = ()  # what measuring quality measures (config)
    coverage: float = DEFAULT_COVERAGE  # of the cost bounds (SearchConfig.coverage)


class CandidateEvaluator:
    """Evaluates archs: `evaluate(archs, quality="predictor"|"supernet"|None)` -> metrics."""

    def __init__(
        self,
        artifact: OpenedArtifact,
        predictor: Any,
        devices: Sequence[tuple[DeviceTarget, lm.CostModel]],
        quality_metrics: Sequence[str] = (),
        coverage: float = DEFAULT_COVERAGE,
    ) -> None:
        self.artifact, self.space = artifact, artifact.space
        self.coverage = coverage
        # the quality metrics measured with the trained network (besides the primary one)
        self.quality_metrics = tuple(quality_metrics)
        self.predictor = predictor
        self.devices = list(devices)

    @classmethod
    def of(cls, resources: SearchResources) -> CandidateEvaluator:
        """An evaluator over what a search process has already opened."""
        return cls(
            resources.artifact,
            resources.predictor,
            resources.devices,
            resources.quality_metrics,
            resources.coverage,
        )

    @classmethod
    def from_spec(cls, spec: EvaluatorSpec) -> CandidateEvaluator:
        """Open every file named by `spec`, refusing any whose hash is not the recorded one."""
        if spec.threads:
            torch.set_num_threads(spec.threads)
        artifact = open_artifact(spec.supernet, spec.supernet_sha256)
        predictor = (
            artifact.family.load_predictor(spec.predictor, artifact, spec.predictor_sha256)
            if spec.predictor
            else None
        )
        devices = [(d, lm.load_hardware(d.name)) for d in spec.devices]
        return cls(artifact, predictor, devices, spec.quality_metrics, spec.coverage)

    def quality(
        self,
        archs: Sequence[Arch],
        source: str,
        coverage: float | None = None,
        partial: PartialMeasurement | None = None,
    ) -> list[Metrics]:
        """ "supernet": measured with the trained network (by successive halving with
        `partial`); "predictor": predicted, with the primary metric's bounds at `coverage`
        (default: the search's, as the costs' bounds) (`top1_low`, `top1_high`) where the
        predictor kept held-out residuals (a measured value has none)."""
        if source == "supernet":
            trained = self.artifact.trained()
            return trained.measure_quality(archs, self.quality_metrics, partial)
        if self.predictor is None:
            raise ValueError("quality from the predictor needs a predictor")
        metric = next(iter(self.artifact.family.quality_metrics))  # the primary one
        predicted = self.predictor.predict(archs)
        rows = [{metric: float(v)} for v in predicted.tolist()]
        if self.predictor.has_bounds:
            low_key, high_key = bound_keys(metric)
            low, high = self.predictor.bounds_of(predicted, coverage or self.coverage)
            for row, lo, hi in zip(rows, low.tolist(), high.tolist(), strict=True):
                row[low_key], row[high_key] = float(lo), float(hi)
        int8 = f"{metric}_int8"
        if int8 in self.quality_metrics and self.predictor.int8_drop is not None:
            for row, value in zip(rows, self.predictor.predict_int8(archs).tolist(), strict=True):
                row[int8] = float(value)
        return rows

    def costs(self, archs: Sequence[Arch]) -> list[Metrics]:
        """ "DEVICE.METRIC" for every device, plus "macs" and "params" (per sample) once,
        and "DEVICE.METRIC_low" / "_high" at the search's coverage where the device's profile
        states the metric's residuals (not for an exact one: `without_exact_bounds`). The
        space assembles the generation's layer rows once (no NetworkSpec per arch), and every
        device costs them at its own batch size."""
        out: list[Metrics] = [{} for _ in archs]
        if not archs:
            return out
        networks = self.space.spec_batch(archs)
        for target, hw in self.devices:
            batch = networks if target.batch == 1 else networks.with_batch(target.batch)
            columns = without_exact_bounds(
                hw.predict_arrays(batch, self.coverage, **target.options)
            )
            for metric, values in columns.items():
                key = metric if metric in NETWORK_METRICS else f"{target.name}.{metric}"
                for row, value in zip(out, values.tolist(), strict=True):
                    row[key] = float(value)
        return out

    def evaluate(
        self,
        archs: Sequence[Arch],
        quality: str | None = "predictor",
        partial: PartialMeasurement | None = None,
    ) -> list[Metrics]:
        """Costs on every device, plus quality from `quality`: "predictor" or "supernet"
        (measured with the trained network; by successive halving with `partial`), or None
        for costs only; every bound at the search's coverage."""
        if not archs:
            return []
        rows = self.costs(archs)
        if quality is not None:
            qualities = self.quality(archs, quality, partial=partial)
            for row, measured in zip(rows, qualities, strict=True):
                row.update(measured)
        return rows


def without_exact_bounds(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The columns without the bounds of exact metrics (a memory plan, a flash image: zero
    width, each bound the value itself). Storing them would double a search's metric rows
    for nothing; a reader takes a missing bound as the value (nas.config.Limit.value_of,
    nas.pareto.queries)."""
    out = dict(columns)
    for metric in columns:
        low, high = bound_keys(metric)
        value = columns[metric]
        if (
            low in columns
            and np.array_equal(columns[low], value)
            and np.array_equal(columns[high], value)
        ):
            del out[low], out[high]
    return out


def evaluator_spec(resources: SearchResources, threads: int | None = None) -> EvaluatorSpec:
    """The resources as plain data naming each file with its SHA-256, for Ray actors."""
    predictor = resources.predictor.artifact if resources.predictor else None
    return EvaluatorSpec(
        str(resources.artifact.path),
        resources.artifact.sha256,
        str(predictor.path) if predictor else None,
        predictor.sha256 if predictor else None,
        tuple(d for d, _ in resources.devices),
        threads,
        resources.quality_metrics,
        resources.coverage,
    )
