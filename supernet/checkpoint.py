"""Trained-supernet files: written atomically, read with clear errors, identified by hash.

- `supernet.pt`: the trained weights with what is needed to use them (space name, dataset
  config, normalisation, training summary). Searches and predictors refer to it by SHA-256.
- `checkpoint.pt`: the full training state for `--resume` (see supernet.train).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from supernet.data import Dataset, DatasetConfig, load_dataset
from supernet.errors import CheckpointError
from supernet.evaluate import SupernetEvaluator
from supernet.factory import build
from supernet.space import SearchSpace, get_space

SUPERNET_FORMAT = "nas-supernet/1"


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(
    path: str | os.PathLike, expected_format: str | tuple[str, ...]
) -> dict[str, Any]:
    """The dict saved at `path`, whose "format" is `expected_format` (or one of them)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    found = data.get("format") if isinstance(data, dict) else None
    allowed = (expected_format,) if isinstance(expected_format, str) else expected_format
    if found not in allowed:
        wanted = " or ".join(repr(f) for f in allowed)
        raise CheckpointError(f"{path} is not a {wanted} file (found format {found!r})")
    return data


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
    net = build(space)
    try:
        net.load_state_dict(data["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match space {space.name!r}: {err}") from None
    dataset_config = DatasetConfig(**data["dataset"])
    meta = dict(data.get("meta", {}))
    if meta.get("channels_last", True):
        net = net.to(memory_format=torch.channels_last)
    return TrainedSupernet(net.eval(), space, dataset_config, path, file_sha256(path), meta)
