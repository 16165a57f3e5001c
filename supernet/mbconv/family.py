"""The MBConv classifier family, as the service core sees it (see supernet.family)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from supernet.family import ModelFamily, OpenedArtifact, TrainedModel, register_family
from supernet.io import Artifact
from supernet.mbconv.space import MBConvSpace
from supernet.space import SearchSpace

SUPERNET_FORMAT = "nas-supernet/1"


class ClassifierFamily(ModelFamily):
    kind = "classifier"
    description = "classifier supernet"
    file_format = SUPERNET_FORMAT
    file_name = "supernet.pt"
    # top1_int8: top-1 after static int8 quantization (measured, on request: see
    # TrainedSupernet.measure_quality)
    quality_metrics = {"top1": "maximize", "top1_int8": "maximize"}  # noqa: RUF012
    predicts_quality = True
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

    def load_predictor(
        self, path: str | os.PathLike, opened: OpenedArtifact, expected_sha256: str | None = None
    ) -> Any:
        from supernet.mbconv.predictor import load_predictor

        return load_predictor(path, opened, expected_sha256)

    def describe_quality(self, card: dict[str, Any]) -> str:
        top1 = card["accuracy"]["measured_top1"]
        return f"top-1 measured val {top1['val']:.2%}, test {top1['test']:.2%}"


CLASSIFIER = register_family(ClassifierFamily())
