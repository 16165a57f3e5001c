"""Trained-supernet files: written atomically, read with clear errors, identified by hash.

- `supernet.pt`: the trained weights with what is needed to use them (the space's name, full
  definition and its hash, so no YAML file or registered preset is needed to rebuild it;
  dataset config, normalisation, training summary). Searches and predictors refer to it by SHA-256.
- `checkpoint.pt`: the full training state for `--resume` (see supernet.mbconv.train).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from supernet.data import Dataset, DatasetConfig, resize
from supernet.device import cpu_copy
from supernet.errors import CheckpointError
from supernet.family import ExportableModel, PartialMeasurement, TrainedModel, images_key
from supernet.io import Artifact, file_sha256, read_artifact, resolve_artifact_path, save_atomic
from supernet.mbconv.evaluate import SupernetEvaluator, top1_of, top1_upper_bound
from supernet.mbconv.family import SUPERNET_FORMAT
from supernet.mbconv.space import MBConvSpace
from supernet.mbconv.supernet import MBConvSupernet
from supernet.space import Arch, SearchSpace, saved_space, space_record


@dataclass(kw_only=True)
class TrainedSupernet(TrainedModel):
    net: torch.nn.Module

    def evaluator(self, dataset: Dataset | None = None, **kwargs: Any) -> SupernetEvaluator:
        """An evaluator with the training run's recalibration settings unless overridden."""
        defaults = {
            "recalibration_images": self.meta.get("bn_recalibration_images", 500),
            "channels_last": self.meta.get("channels_last", True),
        }
        return SupernetEvaluator(
            self.net, self.space, dataset or self.dataset(), **{**defaults, **kwargs}
        )

    def measure_quality(
        self,
        archs: Sequence[Arch],
        metrics: Collection[str] = (),
        partial: PartialMeasurement | None = None,
    ) -> list[dict[str, float]]:
        """Top-1 on the validation split, measured with the supernet (BN recalibrated); with
        "top1_int8" in `metrics`, also top-1 after static int8 quantization (the int8
        export's scheme, in torch fake quantization, calibrated on the first
        DEFAULT_CALIBRATION_IMAGES training images). With `partial` (successive halving),
        top-1 on the split's first `partial.fraction` first, going on to the rest only
        where its upper confidence bound (top1_upper_bound) beats the arch's `needed`
        value; each row's "top1_images" says how many images its top-1 used."""
        evaluator = self.quality_evaluator()
        out = []
        for arch in archs:
            if partial is None:
                row = {"top1": evaluator.evaluate(arch).top1}  # leaves BN recalibrated for arch
            else:
                row = self._staged_top1(evaluator, arch, partial)
            if "top1_int8" in metrics:
                row["top1_int8"] = self._int8_top1(arch)
            out.append(row)
        return out

    def _staged_top1(
        self, evaluator: SupernetEvaluator, arch: Arch, partial: PartialMeasurement
    ) -> dict[str, float]:
        needed = partial.needed.get(self.space.arch_id(arch), float("-inf"))
        first = round(partial.fraction * len(evaluator.labels))
        result = evaluator.evaluate_staged(
            arch, first, lambda correct, n: top1_upper_bound(correct, n) > needed
        )
        return {"top1": result.top1, images_key("top1"): float(result.images)}

    def _int8_top1(self, arch: Arch) -> float:
        from supernet.quantization import DEFAULT_CALIBRATION_IMAGES, fake_quantized

        data, r = self.dataset(), arch["r"]
        static = self.net.extract(arch).eval().to(memory_format=torch.contiguous_format)
        train = resize(data.normalize(data.train.images[:DEFAULT_CALIBRATION_IMAGES]), r)
        val = resize(data.normalize(data.val.images), r).contiguous()
        return top1_of(fake_quantized(static, train.contiguous()), val, data.val.labels)

    def exportable(
        self, arch: Arch, searched: dict[str, Any], weights: dict[str, Any] | None = None
    ) -> ExportableModel:
        data = self.dataset()
        if weights is None:
            # Test first, validation last: the validation pass leaves the BN statistics in
            # place for the extraction.
            measured = {  # in float32: the card reports the deployed model's accuracy
                split: self.evaluator(data, split=split, precision="fp32").evaluate(arch).top1
                for split in ("test", "val")
            }
            static = self.net.extract(arch).eval().to(memory_format=torch.contiguous_format)
            note = "measured with the supernet's weights after BatchNorm recalibration"
        else:  # fine-tuned weights (BatchNorm folded): measured as they are, no recalibration
            static = self.net.extract(arch).eval().to(memory_format=torch.contiguous_format)
            try:
                static.load_state_dict(weights["state_dict"])
            except (RuntimeError, KeyError) as err:
                raise CheckpointError(f"the fine-tuned weights do not fit arch: {err}") from None
            measured = {}
            for split in ("test", "val"):
                part = data.split(split)
                images = resize(data.normalize(part.images), arch["r"]).contiguous()
                measured[split] = top1_of(static, images, part.labels)
            note = "measured with the fine-tuned weights"
        sample = resize(data.normalize(data.val.images[:8]), arch["r"]).contiguous()
        card = {
            "input": {
                "shape": [1, self.space.config.in_channels, arch["r"], arch["r"]],
                "normalization": {"mean": list(data.mean), "std": list(data.std)},
                "classes": data.classes,
            },
            "accuracy": {
                "searched": {"top1": searched.get("top1"), "source": searched.get("source")},
                "predicted_top1": searched.get("top1")
                if searched.get("source") == "predictor"
                else None,
                "measured_top1": {"val": measured["val"], "test": measured["test"]},
                "measured_in_search": searched.get("top1")
                if searched.get("source") == "supernet"
                else searched.get("top1_measured"),
                "note": note,
            },
        }

        def labelled(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            part = getattr(data, split)
            return resize(data.normalize(part.images), arch["r"]).contiguous(), part.labels

        return ExportableModel(
            static,
            self.space.name,
            sample,
            torch.cat([sample, sample[:3]]),
            "input",
            "logits",
            card,
            labelled=labelled,
        )


def save_supernet(
    net: torch.nn.Module,
    space: SearchSpace,
    dataset: Dataset,
    dataset_config: DatasetConfig,
    path: Path,
    meta: dict[str, Any],
) -> str:
    """Write the trained supernet file; returns its SHA-256."""
    save_atomic(
        {
            "format": SUPERNET_FORMAT,
            **space_record(space),  # its name, definition and hash: the file describes its space
            "dataset": dataset_config.model_dump(),
            "normalization": {"mean": list(dataset.mean), "std": list(dataset.std)},
            "classes": list(dataset.classes),
            "model": cpu_copy(net.state_dict()),  # CPU tensors, whatever the training device
            "meta": meta,
        },
        path,
    )
    return file_sha256(path)


def supernet_from_artifact(artifact: Artifact) -> TrainedSupernet:
    """The trained supernet held by an artifact already read, in eval mode."""
    data = artifact.data
    space = saved_space(data)
    if not isinstance(space, MBConvSpace):
        raise CheckpointError(f"{artifact.path} names space {space.name!r}, not an MBConv space")
    net = MBConvSupernet(space)
    try:
        net.load_state_dict(data["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{artifact.path} does not match space {space.name!r}: {err}"
        ) from None
    meta = dict(data.get("meta", {}))
    if meta.get("channels_last", True):
        net = net.to(memory_format=torch.channels_last)
    return TrainedSupernet(
        net=net.eval(),
        space=space,
        dataset_config=DatasetConfig(**data["dataset"]),
        artifact=artifact,
        meta=meta,
    )


def load_supernet(path: str | os.PathLike) -> TrainedSupernet:
    """A trained supernet from `supernet.pt` (or its run folder), in eval mode."""
    return supernet_from_artifact(
        read_artifact(resolve_artifact_path(path, ("supernet.pt",)), SUPERNET_FORMAT)
    )
