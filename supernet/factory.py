"""One factory from a space (or its name) to its elastic supernet."""

from __future__ import annotations

from torch import nn

from supernet.anycost.generator import AnycostGenerator
from supernet.anycost.space import AnycostGANSpace
from supernet.mbconv.space import MBConvSpace
from supernet.mbconv.supernet import MBConvSupernet
from supernet.space import SearchSpace, get_space


def build(space: SearchSpace | str) -> nn.Module:
    """The elastic supernet of a space: `net.set_active(arch)`, `net(x)`, `net.extract(arch)`."""
    space = get_space(space) if isinstance(space, str) else space
    if isinstance(space, MBConvSpace):
        return MBConvSupernet(space)
    if isinstance(space, AnycostGANSpace):
        return AnycostGenerator(space)
    raise TypeError(f"no supernet is defined for spaces of type {type(space).__name__}")
