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
from dataclasses import dataclass, field
from typing import Any

import torch

import latency_models as lm
from nas.config import NETWORK_METRICS, SearchConfig, measured_quality
from nas.domain import SearchDomain, search_domain
from supernet.family import OpenedArtifact, open_artifact
from supernet.mbconv.predictor import AccuracyPredictor, load_predictor
from supernet.space import Arch

log = logging.getLogger(__name__)

Metrics = dict[str, float]


@dataclass(frozen=True)
class DeviceTarget:
    name: str
    batch: int = 1
    options: dict[str, Any] = field(default_factory=dict)


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


def device_targets(config: SearchConfig) -> tuple[DeviceTarget, ...]:
    return tuple(DeviceTarget(name, t.batch, dict(t.options)) for name, t in config.targets.items())


class CandidateEvaluator:
    """Evaluates archs: `evaluate(archs, quality="predictor"|"supernet"|None)` -> metrics."""

    def __init__(
        self,
        artifact: OpenedArtifact,
        predictor: AccuracyPredictor | None,
        devices: Sequence[tuple[DeviceTarget, lm.CostModel]],
        quality_metrics: Sequence[str] = (),
    ) -> None:
        self.artifact, self.space = artifact, artifact.space
        # the quality metrics measured with the trained network (besides the primary one)
        self.quality_metrics = tuple(quality_metrics)
        self.predictor = predictor
        self.devices = list(devices)

    @classmethod
    def from_spec(cls, spec: EvaluatorSpec) -> CandidateEvaluator:
        """Open every file named by `spec`, refusing any whose hash is not the recorded one."""
        if spec.threads:
            torch.set_num_threads(spec.threads)
        artifact = open_artifact(spec.supernet, spec.supernet_sha256)
        predictor = (
            load_predictor(spec.predictor, artifact, spec.predictor_sha256)
            if spec.predictor
            else None
        )
        devices = [(d, lm.load_hardware(d.name)) for d in spec.devices]
        return cls(artifact, predictor, devices, spec.quality_metrics)

    def quality(self, archs: Sequence[Arch], source: str) -> list[Metrics]:
        """ "supernet": measured with the trained network; "predictor": predicted."""
        if source == "supernet":
            return self.artifact.trained().measure_quality(archs, self.quality_metrics)
        if self.predictor is None:
            raise ValueError("quality from the predictor needs a predictor")
        metric = next(iter(self.artifact.family.quality_metrics))  # the primary one
        rows = [{metric: float(v)} for v in self.predictor.predict(archs).tolist()]
        int8 = f"{metric}_int8"
        if int8 in self.quality_metrics and self.predictor.int8_drop is not None:
            for row, value in zip(rows, self.predictor.predict_int8(archs).tolist(), strict=True):
                row[int8] = float(value)
        return rows

    def costs(self, archs: Sequence[Arch]) -> list[Metrics]:
        """ "DEVICE.METRIC" for every device, plus "macs" and "params" (per sample) once.
        The space assembles the generation's layer rows once (no NetworkSpec per arch), and
        every device costs them at its own batch size."""
        out: list[Metrics] = [{} for _ in archs]
        if not archs:
            return out
        networks = self.space.spec_batch(archs)
        for target, hw in self.devices:
            batch = networks if target.batch == 1 else networks.with_batch(target.batch)
            columns = hw.predict_arrays(batch, **target.options)
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


@dataclass
class SearchResources:
    """The files and models one search process uses, each opened once: the trained file,
    the predictor and the device models. Ray actors get `spec()` and reopen them."""

    artifact: OpenedArtifact
    predictor: AccuracyPredictor | None
    devices: list[tuple[DeviceTarget, lm.CostModel]]
    # the part of the space every device can cost (None: all of it); see nas.domain
    domain: SearchDomain | None = None
    quality_metrics: tuple[str, ...] = ()  # measured with the trained network (config)

    def spec(self, threads: int | None = None) -> EvaluatorSpec:
        predictor = self.predictor.artifact if self.predictor else None
        return EvaluatorSpec(
            str(self.artifact.path),
            self.artifact.sha256,
            str(predictor.path) if predictor else None,
            predictor.sha256 if predictor else None,
            tuple(d for d, _ in self.devices),
            threads,
            self.quality_metrics,
        )

    def evaluator(self) -> CandidateEvaluator:
        return CandidateEvaluator(self.artifact, self.predictor, self.devices, self.quality_metrics)


def open_resources(
    config: SearchConfig,
    supernet_sha256: str | None = None,
    predictor_sha256: str | None = None,
) -> SearchResources:
    """What a search needs, reusing what validating `config` opened; with recorded hashes
    (a resumed search), refuse files that are not the ones the search was launched with."""
    opened = config.opened
    if opened is not None:
        artifact = opened.artifact
        artifact.artifact.check_sha256(supernet_sha256, "trained file")
        hardware = opened.devices
    else:
        artifact = open_artifact(config.supernet, supernet_sha256)
        hardware = {}
    devices = [
        (d, hardware.get(d.name) or lm.load_hardware(d.name)) for d in device_targets(config)
    ]
    if opened is not None and opened.predictor is not None:
        predictor = opened.predictor
        if predictor.artifact is not None:
            predictor.artifact.check_sha256(predictor_sha256, "predictor")
    elif config.predictor:
        predictor = load_predictor(config.predictor, artifact, predictor_sha256)
    else:
        predictor = None
    if opened is not None:
        domain = opened.domain
    else:  # a resumed search: its config was validated when it was launched
        domain = search_domain(artifact.space, {d.name: hw for d, hw in devices})
    quality = measured_quality(config, artifact.family.quality_metrics)
    return SearchResources(artifact, predictor, devices, domain, quality)
