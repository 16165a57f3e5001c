"""What a trained file is: a classifier supernet or an Anycost generator, and its space.

The search service treats both alike; what differs is how a candidate's quality is
measured, and which metrics name that quality.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from supernet.anycost.evaluate import GAN_FORMAT
from supernet.errors import CheckpointError
from supernet.io import read_checkpoint
from supernet.mbconv.checkpoint import SUPERNET_FORMAT
from supernet.space import SearchSpace, get_space

KIND_OF_FORMAT = {SUPERNET_FORMAT: "classifier", GAN_FORMAT: "gan"}
# quality metrics of each kind and whether larger or smaller is better
QUALITY_METRICS: dict[str, dict[str, str]] = {
    "classifier": {"top1": "maximize"},
    "gan": {"fid": "minimize", "consistency": "minimize"},
}


@dataclass(frozen=True)
class Artifact:
    path: Path
    kind: str  # classifier | gan
    space: SearchSpace

    @property
    def quality_metrics(self) -> dict[str, str]:
        return QUALITY_METRICS[self.kind]


def resolve(path: str | os.PathLike) -> Path:
    """A run folder stands for the trained file in it (supernet.pt or gan.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("supernet.pt", "gan.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds neither supernet.pt nor gan.pt")
    return path


def open_artifact(path: str | os.PathLike) -> Artifact:
    path = resolve(path)
    try:
        data = read_checkpoint(path, tuple(KIND_OF_FORMAT))
    except CheckpointError as err:
        if not path.is_file():
            raise
        raise CheckpointError(
            f"{err}: neither a trained supernet nor a trained GAN; train one with "
            "`nas supernet train` or `nas gan train`"
        ) from None
    return Artifact(path, KIND_OF_FORMAT[data["format"]], get_space(data["space"]))
