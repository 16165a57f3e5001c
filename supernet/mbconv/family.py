"""The MBConv classifier family, as the service core sees it (see supernet.family)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from torch import nn

from supernet.family import (
    Finetuning,
    ModelFamily,
    OpenedArtifact,
    QualityPredictors,
    TrainedModel,
    register_family,
)
from supernet.io import Artifact
from supernet.mbconv.space import MBConvSpace
from supernet.run import ResumableRun
from supernet.space import Arch, SearchSpace

SUPERNET_FORMAT = "nas-supernet/1"


class ClassifierFamily(ModelFamily):
    kind = "classifier"
    description = "classifier supernet"
    rank = 0  # the default family: the one most searches are for
    file_format = SUPERNET_FORMAT
    file_name = "supernet.pt"
    # top1_int8: top-1 after static int8 quantization (measured, on request: see
    # TrainedSupernet.measure_quality)
    quality_metrics = {"top1": "maximize", "top1_int8": "maximize"}  # noqa: RUF012
    predicts_quality = True
    measures_partially = True
    predictor_file_name = "predictor.pt"
    quantizes_int8 = True

    def handles(self, space: SearchSpace) -> bool:
        return isinstance(space, MBConvSpace)

    def build(self, space: SearchSpace) -> nn.Module:
        from supernet.mbconv.supernet import MBConvSupernet

        return MBConvSupernet(space)

    def load(self, artifact: Artifact) -> TrainedModel:
        from supernet.mbconv.checkpoint import supernet_from_artifact

        return supernet_from_artifact(artifact)

    def train_config_type(self) -> type[BaseModel]:
        from supernet.mbconv.train import TrainConfig

        return TrainConfig

    def trainer_type(self) -> type[ResumableRun]:
        from supernet.mbconv.train import Trainer

        return Trainer

    @property
    def predictors(self) -> QualityPredictors:
        return _PREDICTORS

    @property
    def finetuning(self) -> Finetuning:
        return _FINETUNING

    def describe_quality(self, card: dict[str, Any]) -> str:
        top1 = card["accuracy"]["measured_top1"]
        return f"top-1 measured val {top1['val']:.2%}, test {top1['test']:.2%}"


class AccuracyPredictors(QualityPredictors):
    """supernet.mbconv.predictor: top-1 measured on the validation split, predicted by
    gradient-boosted trees (or an MLP), with an optional model of the int8 drop."""

    models = ("gbdt", "mlp")

    def check_split(self, n: int, held_out: int) -> None:
        from supernet.mbconv.predictor import check_split

        check_split(n, held_out)

    def measure(self, trained: TrainedModel, n: int, **options: Any) -> list[Any]:
        from supernet.mbconv.predictor import measure_archs

        return measure_archs(trained, n, **options)

    def fit(self, trained: TrainedModel, measurements: Sequence[Any], **options: Any) -> Any:
        from supernet.mbconv.predictor import fit_predictor

        return fit_predictor(trained.space, measurements, trained.sha256, **options)

    def load(
        self,
        path: str | os.PathLike,
        checkpoint: str | os.PathLike | TrainedModel | OpenedArtifact | None = None,
        expected_sha256: str | None = None,
    ) -> Any:
        from supernet.mbconv.predictor import load_predictor

        return load_predictor(path, checkpoint, expected_sha256)

    def fit_int8_drop(self, trained: TrainedModel, archs: Sequence[Arch], progress: bool) -> Any:
        from supernet.mbconv.predictor import fit_int8_drop, measure_int8_drops

        drops = measure_int8_drops(trained, archs, progress=progress)
        return fit_int8_drop(trained.space, archs, drops)


class SubnetFinetuning(Finetuning):
    """supernet.mbconv.finetune (quantization-aware by default, distilled from the largest
    subnet) and supernet.mbconv.transfer (once-for-all transfer to new data)."""

    def settings(self, **options: Any) -> Any:
        from supernet.mbconv.finetune import FinetuneSettings

        return FinetuneSettings(**options)

    def finetune(
        self,
        trained: TrainedModel,
        arch: Arch,
        settings: Any,
        progress: bool,
        shipped_drop: float | None,
    ) -> Any:
        from supernet.mbconv.finetune import finetune_subnet

        return finetune_subnet(trained, arch, settings, progress, shipped_drop)

    def save(
        self, path: Path, module: nn.Module, trained: TrainedModel, arch: Arch, report: dict
    ) -> str:
        from supernet.mbconv.finetune import save_finetuned

        return save_finetuned(path, module, trained, arch, report)

    def load(self, path: str | os.PathLike, supernet_sha256: str, arch_id: str) -> dict:
        from supernet.mbconv.finetune import load_finetuned

        return load_finetuned(path, supernet_sha256, arch_id)

    def source_space(self, source: str | os.PathLike) -> str | dict[str, Any]:
        from supernet.mbconv.transfer import infer_space

        return infer_space(source)

    def transfer_phases(self, space: SearchSpace, epochs: int, lr: float) -> list[dict]:
        from supernet.mbconv.transfer import transfer_phases

        return transfer_phases(space, epochs, lr)


_PREDICTORS = AccuracyPredictors()
_FINETUNING = SubnetFinetuning()
CLASSIFIER = register_family(ClassifierFamily())
