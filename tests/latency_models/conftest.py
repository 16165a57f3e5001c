"""Small networks whose costs the tests work out by hand."""

from __future__ import annotations

import pytest

from latency_models import NetworkSpec, SpecBuilder


def residual_net(batch: int = 1) -> NetworkSpec:
    """input (2,4,4) -> a: conv3x3 2->4 +bn+relu -> b: depthwise3x3 +relu -> c: conv1x1 4->4
    -> d: add(c, a). Elements: input 32, every other tensor 64."""
    b = SpecBuilder((2, 4, 4), name="residual", batch=batch)
    a = b.conv("a", 4, kernel=3, act="relu", src=None)
    b.conv("b", 4, kernel=3, groups=4, act="relu")
    c = b.conv("c", 4)
    b.add("d", c, a)
    return b.build()


def chain_net() -> NetworkSpec:
    """input (2,4,4) -> a: conv3x3 2->4 -> b: depthwise3x3 (its input dies: in place)."""
    b = SpecBuilder((2, 4, 4), name="chain")
    b.conv("a", 4, kernel=3, src=None)
    b.conv("b", 4, kernel=3, groups=4)
    return b.build()


@pytest.fixture
def residual() -> NetworkSpec:
    return residual_net()
