"""Search spaces, elastic supernets and their training."""

from supernet import presets as _presets  # noqa: F401  (registers the named spaces)
from supernet.errors import CheckpointError, InvalidArchError, UnknownSpaceError
from supernet.factory import build
from supernet.mbconv.ofa_import import load_ofa_checkpoint
from supernet.space import Arch, SearchSpace, get_space, list_spaces, make_divisible

__all__ = [
    "Arch",
    "CheckpointError",
    "InvalidArchError",
    "SearchSpace",
    "UnknownSpaceError",
    "build",
    "get_space",
    "list_spaces",
    "load_ofa_checkpoint",
    "make_divisible",
]
