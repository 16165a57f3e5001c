"""Evaluating Anycost sub-generators: domain FID, consistency, sample grids; loading a run.

Domain FID is the Fréchet distance between statistics of generated and real images in the
in-project feature network (supernet.anycost.metrics): comparable only with other domain FIDs of
the same feature net, never with Inception FID. Consistency is how close a sub-generator's
image is to the full generator's on the same latent: pixel MSE plus perceptual distance.

Both are measured on the image a sub-generator delivers at the full output size: an 8 or
16 px output is upsampled (bilinear) first. Every sub-generator is then ranked on the same
task, and a search cannot buy a better score by dropping resolution (measured against real
digits at its own resolution, an 8 px generator would score better than the full one).

Latents are fixed by the seed and noise is the generator's fixed noise, so every arch is
measured on the same inputs, and the numbers repeat.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor

from supernet.anycost.family import GAN_FORMAT
from supernet.anycost.generator import AnycostGenerator
from supernet.anycost.metrics import (
    FeatureNet,
    frechet_distance,
    image_statistics,
    load_feature_net,
    perceptual_distance,
    to_gan_range,
)
from supernet.anycost.space import AnycostGANSpace
from supernet.data import Dataset, DatasetConfig, resize
from supernet.errors import CheckpointError
from supernet.family import ExportableModel, PartialMeasurement, TrainedModel
from supernet.io import Artifact, file_sha256, read_artifact, resolve_artifact_path
from supernet.space import Arch, saved_space


@dataclass(frozen=True)
class GanEvalResult:
    arch_id: str
    fid: float
    consistency: float  # mse + perceptual
    consistency_mse: float
    consistency_perceptual: float
    resolution: int
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GanEvaluator:
    def __init__(
        self,
        generator: AnycostGenerator,
        space: AnycostGANSpace,
        dataset: Dataset,
        feature_net: FeatureNet,
        samples: int = 500,
        seed: int = 0,
        batch_size: int = 250,
        split: str = "val",
    ) -> None:
        self.generator, self.space, self.features = generator, space, feature_net
        self.batch_size = batch_size
        gen = torch.Generator().manual_seed(seed)
        self.z = torch.randn(samples, space.config.z_dim, generator=gen)
        real = dataset.split(split).images
        if len(real) < 10:
            raise ValueError(f"split {split!r} has {len(real)} images; domain FID needs more")
        self.real = to_gan_range(real[:samples], space.config.image_size)
        self._real_statistics: np.ndarray | None = None

    def _real(self) -> np.ndarray:
        if self._real_statistics is None:
            self._real_statistics = image_statistics(self.features, self.real, self.batch_size)
        return self._real_statistics

    def delivered(self, arch: Arch) -> Tensor:
        """The sub-generator's images at the full output size (upsampled if lower)."""
        return resize(self.generate(arch), self.space.config.image_size)

    @torch.no_grad()
    def generate(self, arch: Arch, z: Tensor | None = None) -> Tensor:
        """Images of the sub-generator `arch` for the evaluation latents (fixed noise)."""
        g = self.generator
        was_training = g.training
        g.eval()
        g.set_active(arch)
        z = self.z if z is None else z
        out = torch.cat([g(chunk, random_noise=False) for chunk in torch.split(z, self.batch_size)])
        g.train(was_training)
        return out

    def fid(self, arch: Arch) -> float:
        return self._fid(self.delivered(arch))

    def _fid(self, images: Tensor) -> float:
        fake = image_statistics(self.features, images, self.batch_size)
        return frechet_distance(fake, self._real())

    def reference(self) -> Tensor:
        """The full generator's images: what consistency compares with."""
        return self.generate(self.space.largest())

    @torch.no_grad()
    def _consistency(self, images: Tensor, reference: Tensor) -> tuple[float, float]:
        """(pixel MSE, perceptual distance) to the full generator's images."""
        mse = F.mse_loss(images, reference).item()
        distances = [
            perceptual_distance(self.features, a, b)
            for a, b in zip(
                torch.split(images, self.batch_size),
                torch.split(reference, self.batch_size),
                strict=True,
            )
        ]
        return mse, torch.cat(distances).mean().item()

    def evaluate(self, arch: Arch, reference: Tensor | None = None) -> GanEvalResult:
        """FID and consistency of one arch; pass `reference()` when measuring many archs, so
        the full generator's images are made once."""
        arch = self.space.canonical(arch)
        images = self.delivered(arch)
        reference = self.reference() if reference is None else reference
        mse, perceptual = self._consistency(images, reference)
        return GanEvalResult(
            self.space.arch_id(arch),
            self._fid(images),
            mse + perceptual,
            mse,
            perceptual,
            arch["res"],
            len(self.z),
        )

    def evaluate_many(self, archs: Sequence[Arch], progress: bool = False) -> list[GanEvalResult]:
        reference = self.reference()
        results = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("evaluating sub-generators", total=len(archs))
            for arch in archs:
                results.append(self.evaluate(arch, reference))
                bar.advance(task)
        return results


def grid_archs(space: AnycostGANSpace) -> list[tuple[str, Arch]]:
    """Rows of the sample grid: the full generator, uniform channel ratios, lower resolutions."""
    rows = [(f"{r}x channels", space.uniform(r)) for r in sorted(space.config.ratios, reverse=True)]
    for res in sorted(space.config.resolutions, reverse=True)[1:]:
        rows.append((f"full, {res}px", space.uniform(1.0, res)))
    return rows


@torch.no_grad()
def save_sample_grid(
    generator: AnycostGenerator,
    space: AnycostGANSpace,
    path: str | os.PathLike,
    seed: int = 0,
    columns: int = 8,
    archs: Sequence[tuple[str, Arch]] | None = None,
) -> Path:
    """A PNG: one row per sub-generator, one column per latent (the same latents in every
    row); lower resolutions are shown enlarged (nearest) to the full size."""
    from PIL import Image

    archs = list(archs or grid_archs(space))
    z = torch.randn(columns, space.config.z_dim, generator=torch.Generator().manual_seed(seed))
    size = space.config.image_size
    was_training = generator.training
    generator.eval()
    rows = []
    for _, arch in archs:
        generator.set_active(arch)
        images = generator(z, random_noise=False)
        images = F.interpolate(images, size=(size, size), mode="nearest")
        rows.append(torch.cat(list(images), dim=-1))  # (C, size, columns*size)
    generator.train(was_training)
    grid = torch.cat(rows, dim=-2)  # (C, rows*size, columns*size)
    pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    image = image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@dataclass(kw_only=True)
class TrainedGan(TrainedModel):
    generator: AnycostGenerator
    feature_net: FeatureNet
    space: AnycostGANSpace  # narrower than the base's: its config has the image size

    def evaluator(self, dataset: Dataset | None = None, **kwargs: Any) -> GanEvaluator:
        kwargs.setdefault("samples", self.meta.get("eval_samples", 500))
        return GanEvaluator(
            self.generator, self.space, dataset or self.dataset(), self.feature_net, **kwargs
        )

    def measure_quality(
        self,
        archs: Sequence[Arch],
        metrics: Collection[str] = (),
        partial: PartialMeasurement | None = None,
    ) -> list[dict[str, float]]:
        """Domain FID and consistency, measured with the trained generator (a FID has no
        partial measurement: the family does not `measures_partially`)."""
        if partial is not None:
            raise ValueError("a generator's FID cannot be measured by successive halving")
        results = self.quality_evaluator().evaluate_many(archs)
        return [{"fid": r.fid, "consistency": r.consistency} for r in results]

    def render_samples(
        self,
        path: Path,
        archs: Sequence[tuple[str, Arch]] | None = None,
        seed: int = 0,
        columns: int = 8,
    ) -> Path:
        return save_sample_grid(self.generator, self.space, path, seed, columns, archs)

    def exportable(
        self, arch: Arch, searched: dict[str, Any], weights: dict[str, Any] | None = None
    ) -> ExportableModel:
        if weights is not None:
            raise CheckpointError("fine-tuned weights are for classifier subnets, not generators")
        space = self.space
        result = self.evaluator().evaluate(arch)
        static = self.generator.extract(arch).eval()
        latents = torch.randn(8, space.config.z_dim, generator=torch.Generator().manual_seed(0))

        card = {
            "input": {"latent": [1, space.config.z_dim], "distribution": "standard normal"},
            "output": {
                "shape": [1, space.config.image_channels, arch["res"], arch["res"]],
                "range": "about [-1, 1]; fixed noise",
            },
            "quality": {
                "searched": {k: searched.get(k) for k in ("fid", "consistency")},
                "measured": result.to_dict(),
                "note": "domain FID in the in-project feature net's space (not Inception FID); "
                "consistency = MSE + perceptual distance to the full generator",
            },
        }
        return ExportableModel(
            static,
            space.name,
            latents,
            torch.cat([latents, latents[:3]]),
            "latent",
            "image",
            card,
            {"samples.png": lambda target: self.render_samples(target, [("candidate 0", arch)])},
        )


def gan_from_artifact(artifact: Artifact) -> TrainedGan:
    """The trained generator held by an artifact already read, with the feature net it was
    measured with (`feature_net.pt` beside it, checked by hash)."""
    data, path = artifact.data, artifact.path
    space = saved_space(data)  # from its stored definition where it has one: no YAML needed
    if not isinstance(space, AnycostGANSpace):
        raise CheckpointError(f"{path} names space {space.name!r}, which is not a GAN space")
    generator = AnycostGenerator(space)
    try:
        generator.load_state_dict(data["generator"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match space {space.name!r}: {err}") from None
    feature_path = path.parent / "feature_net.pt"
    feature_net, _ = load_feature_net(feature_path)
    if file_sha256(feature_path) != data["feature_net_sha256"]:
        raise CheckpointError(
            f"{feature_path} is not the feature net {path} was measured with (SHA-256 differs)"
        )
    return TrainedGan(
        generator=generator.eval(),
        feature_net=feature_net,
        space=space,
        dataset_config=DatasetConfig(**data["dataset"]),
        artifact=artifact,
        meta=dict(data.get("meta", {})),
    )


def load_gan(path: str | os.PathLike) -> TrainedGan:
    """A trained Anycost GAN (gan.pt or its folder) with the feature net it was measured with."""
    return gan_from_artifact(read_artifact(resolve_artifact_path(path, ("gan.pt",)), GAN_FORMAT))
