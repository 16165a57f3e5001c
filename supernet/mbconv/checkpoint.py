"""Trained-supernet files: written atomically, read with clear errors, identified by hash.

- `supernet.pt`: the trained weights with what is needed to use them (space name, dataset
  config, normalisation, training summary). Searches and predictors refer to it by SHA-256.
- `checkpoint.pt`: the full training state for `--resume` (see supernet.mbconv.train).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from supernet.data import Dataset, DatasetConfig, load_dataset
from supernet.errors import CheckpointError
from supernet.io import file_sha256, read_checkpoint, save_atomic
from supernet.mbconv.evaluate import SupernetEvaluator
from supernet.mbconv.supernet import MBConvSupernet
from supernet.space import SearchSpace, get_space

SUPERNET_FORMAT = "nas-supernet/1"


@dataclass
class TrainedSupernet:
    net: torch.nn.Module
    space: SearchSpace
    dataset_config: DatasetConfig
    path: Path
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    def dataset(self) -> Dataset:
        return load_dataset(self.dataset_config)

    def evaluator(self, dataset: Dataset | None = None, **kwargs: Any) -> SupernetEvaluator:
        """An evaluator with the training run's recalibration settings unless overridden."""
        defaults = {
            "recalibration_images": self.meta.get("bn_recalibration_images", 500),
            "channels_last": self.meta.get("channels_last", True),
        }
        return SupernetEvaluator(
            self.net, self.space, dataset or self.dataset(), **{**defaults, **kwargs}
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
            "space": space.name,
            "dataset": dataset_config.model_dump(),
            "normalization": {"mean": list(dataset.mean), "std": list(dataset.std)},
            "classes": list(dataset.classes),
            "model": net.state_dict(),
            "meta": meta,
        },
        path,
    )
    return file_sha256(path)


def load_supernet(path: str | os.PathLike) -> TrainedSupernet:
    """A trained supernet from `supernet.pt` (or a training `checkpoint.pt`), in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / "supernet.pt"
    data = read_checkpoint(path, SUPERNET_FORMAT)
    space = get_space(data["space"])
    net = MBConvSupernet(space)
    try:
        net.load_state_dict(data["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match space {space.name!r}: {err}") from None
    dataset_config = DatasetConfig(**data["dataset"])
    meta = dict(data.get("meta", {}))
    if meta.get("channels_last", True):
        net = net.to(memory_format=torch.channels_last)
    return TrainedSupernet(net.eval(), space, dataset_config, path, file_sha256(path), meta)
