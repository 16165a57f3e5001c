"""Reference networks: their counts match the published ones."""

from __future__ import annotations

import pytest

import latency_models as lm
import supernet

# MCUNet model zoo: MACs (M) and params (M), as published (github.com/mit-han-lab/mcunet
# README; the scaled baselines and the int4 models: github.com/mit-han-lab/tinyml@e899b1b
# mcunet/README.md, whose int4 params have one decimal)
PUBLISHED = {
    "mcunet-in0": (6.4, 0.75),
    "mcunet-in1": (12.8, 0.64),
    "mcunet-in2": (67.3, 0.73),
    "mcunet-in3": (81.8, 0.74),
    "mcunet-in4": (125.9, 1.73),
    "mbv2-w0.35": (23.5, 0.75),
    "mbv2-w0.3-r80": (7.3, 0.63),
    "proxyless-w0.3": (38.3, 0.75),
    "proxyless-w0.25-r112": (10.7, 0.57),
    "mcunet-256kb-1mb-int4": (134.5, 1.4),
    "mcunet-320kb-1mb-int4": (170.0, 1.4),
    "mcunet-512kb-2mb-int4": (466.8, 3.3),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_mcunet(name):
    spec = lm.zoo_spec(name)
    macs, params = PUBLISHED[name]
    assert round(spec.macs / 1e6, 1) == macs
    digits = 1 if name.endswith("-int4") else 2  # the int4 rows publish one decimal
    assert round(spec.params / 1e6, digits) == params


def test_mobilenet_v2_1_0_counts():
    # torchvision's mobilenet_v2: 3,504,872 parameters; Sandler et al. 2018: 300M MACs
    spec = lm.zoo_spec("mbv2-w1.0-r224")
    assert spec.params == 3_504_872
    assert round(spec.macs / 1e6) == 301  # 300.8M
    assert [b.attrs["skip"] for b in spec.blocks if b.kind == "mbconv"].count(True) == 10


def test_no_skip_blocks_have_no_residual():
    # proxyless-w0.25-r112: blocks 0 and 11 have widths that match at stride 1, but no shortcut
    spec = lm.zoo_spec("proxyless-w0.25-r112")
    skips = [b.attrs["skip"] for b in spec.blocks if b.kind == "mbconv"]
    assert not skips[0] and not skips[11] and skips[12]
    assert not any(layer.op == "add" for layer in spec.layers_of("blocks.11"))


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("mbv2-w0.35", {"d": [2, 3, 4, 3, 3, 1], "w": 0.35, "r": 144}),
        ("mbv2-w1.0-r224", {"d": [2, 3, 4, 3, 3, 1], "w": 1.0, "r": 224}),
    ],
)
def test_mbv2_is_an_arch_of_the_mcu_space(name, arch):
    space = supernet.get_space("mcu-mbv2")
    spec = space.to_spec({"ks": [3] * 21, "e": [6] * 21, **arch})
    zoo = lm.zoo_spec(name)
    assert (spec.macs, spec.params) == (zoo.macs, zoo.params)
    assert [b.kind for b in spec.blocks] == [b.kind for b in zoo.blocks]


def test_unknown_network():
    with pytest.raises(
        lm.UnknownNetworkError, match="unknown reference network 'resnet50'; available: mcunet"
    ):
        lm.zoo_spec("resnet50")
    assert issubclass(lm.UnknownNetworkError, KeyError | lm.UserError)
