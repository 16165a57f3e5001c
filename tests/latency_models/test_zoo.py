"""Reference networks: their counts match the published ones."""

from __future__ import annotations

import pytest

import latency_models as lm
import supernet

# MCUNet model zoo: MACs (M) and params (M), as published
PUBLISHED = {
    "mcunet-in0": (6.4, 0.75),
    "mcunet-in1": (12.8, 0.64),
    "mcunet-in2": (67.3, 0.73),
    "mcunet-in3": (81.8, 0.74),
    "mcunet-in4": (125.9, 1.73),
    "mbv2-w0.35": (23.5, 0.75),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_mcunet(name):
    spec = lm.zoo_spec(name)
    macs, params = PUBLISHED[name]
    assert round(spec.macs / 1e6, 1) == macs
    assert round(spec.params / 1e6, 2) == params


def test_mbv2_is_an_arch_of_the_mcu_space():
    space = supernet.get_space("mcu-mbv2")
    arch = {"ks": [3] * 21, "e": [6] * 21, "d": [2, 3, 4, 3, 3, 1], "w": 0.35, "r": 144}
    spec = space.to_spec(arch)
    zoo = lm.zoo_spec("mbv2-w0.35")
    assert (spec.macs, spec.params) == (zoo.macs, zoo.params)
    assert [b.kind for b in spec.blocks] == [b.kind for b in zoo.blocks]


def test_unknown_network():
    with pytest.raises(
        lm.UnknownNetworkError, match="unknown reference network 'resnet50'; available: mcunet"
    ):
        lm.zoo_spec("resnet50")
    assert issubclass(lm.UnknownNetworkError, KeyError | lm.UserError)
