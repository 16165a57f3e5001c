"""The Anycost GAN generator family, as the service core sees it (see supernet.family)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from torch import nn

from supernet.anycost.space import AnycostGANSpace
from supernet.family import ModelFamily, TrainedModel, register_family
from supernet.io import Artifact
from supernet.run import ResumableRun
from supernet.space import SearchSpace

GAN_FORMAT = "nas-anycost-gan/1"


class GeneratorFamily(ModelFamily):
    kind = "gan"
    description = "GAN (an Anycost generator supernet)"
    file_format = GAN_FORMAT
    file_name = "gan.pt"
    quality_metrics = {"fid": "minimize", "consistency": "minimize"}  # noqa: RUF012
    predicts_quality = False  # every sub-generator is measured with the generator

    def handles(self, space: SearchSpace) -> bool:
        return isinstance(space, AnycostGANSpace)

    def build(self, space: SearchSpace) -> nn.Module:
        from supernet.anycost.generator import AnycostGenerator

        return AnycostGenerator(space)

    def load(self, artifact: Artifact) -> TrainedModel:
        from supernet.anycost.evaluate import gan_from_artifact

        return gan_from_artifact(artifact)

    train_config_name = "GAN config"

    def train_config_type(self) -> type[BaseModel]:
        from supernet.anycost.train import GanTrainConfig

        return GanTrainConfig

    def trainer_type(self) -> type[ResumableRun]:
        from supernet.anycost.train import GanTrainer

        return GanTrainer

    def describe_quality(self, card: dict[str, Any]) -> str:
        measured = card["quality"]["measured"]
        return f"domain FID {measured['fid']:.4g}, consistency {measured['consistency']:.4g}"


GENERATOR = register_family(GeneratorFamily())
