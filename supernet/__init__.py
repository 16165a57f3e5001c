"""Search spaces, elastic supernets by model family, and their training."""

from latency_models.families import make_divisible
from supernet import presets as _presets  # noqa: F401  (registers the named spaces)
from supernet.anycost import definition as _anycost_definition  # noqa: F401  (spaces as data)
from supernet.anycost import family as _anycost_family  # noqa: F401  (registers the family)
from supernet.errors import (
    CheckpointError,
    InvalidArchError,
    SpaceDefinitionError,
    UnknownSpaceError,
    UserError,
)
from supernet.family import ModelFamily, OpenedArtifact, build, open_artifact
from supernet.mbconv import definition as _mbconv_definition  # noqa: F401  (spaces as data)
from supernet.mbconv import family as _mbconv_family  # noqa: F401  (registers the family)
from supernet.mbconv.ofa_import import load_ofa_checkpoint
from supernet.space import Arch, SearchSpace, get_space, list_spaces

__all__ = [
    "Arch",
    "CheckpointError",
    "InvalidArchError",
    "ModelFamily",
    "OpenedArtifact",
    "SearchSpace",
    "SpaceDefinitionError",
    "UnknownSpaceError",
    "UserError",
    "build",
    "get_space",
    "list_spaces",
    "load_ofa_checkpoint",
    "make_divisible",
    "open_artifact",
]
