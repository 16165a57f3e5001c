"""trace(): torch modules to NetworkSpecs, checked against space.to_spec and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import latency_models as lm
import supernet
from latency_models import TraceError
from latency_models.torch.measure import spec_to_module


def _layer_key(layer: lm.LayerSpec) -> tuple:
    return (
        layer.op,
        layer.in_shape,
        layer.out_shape,
        layer.kernel,
        layer.stride,
        layer.groups,
        layer.act,
        layer.bn,
        layer.bias,
    )


@pytest.mark.parametrize("space_name", ["mnist-mbv3", "mcu-mbv2", "ofa-mbv3-w1.0"])
def test_extracted_subnets_trace_to_their_spec(space_name):
    space = supernet.get_space(space_name)
    net = supernet.build(space)
    rng = np.random.default_rng(0)
    arch = space.sample(rng)
    if space_name != "mnist-mbv3":
        arch["r"] = min(space.describe()["genes"]["r"]["choices"])  # keeps the test fast
    spec = lm.trace(net.extract(arch), (space.config.in_channels, arch["r"], arch["r"]))
    ref = space.to_spec(arch)
    assert (spec.macs, spec.params) == (ref.macs, ref.params)
    assert [_layer_key(x) for x in spec.layers] == [_layer_key(x) for x in ref.layers]


def test_spec_to_module_round_trip():
    space = supernet.get_space("mnist-mbv3")
    ref = space.to_spec(space.largest())
    module = spec_to_module(ref)
    spec = lm.trace(module, (4, 1, 32, 32))
    assert spec.batch == 4
    assert [_layer_key(x) for x in spec.layers] == [_layer_key(x) for x in ref.layers]
    assert module(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6()]
        layers += [
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """Written for this test from the MobileNetV2 paper's table (width 1.0)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU6(inplace=True),
        ]
        cin = 32
        for t, c, n, s in [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def test_hand_written_mobilenet_v2():
    spec = lm.trace(MobileNetV2(), (3, 224, 224))
    # torchvision's count for MobileNetV2-1.0, and the mcu-mbv2 space's arch for it
    assert spec.params == 3_504_872 and spec.macs == 300_774_272
    assert sum(layer.op == "add" for layer in spec.layers) == 10
    assert all(layer.bn for layer in spec.layers if layer.op == "conv")


class SE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        y = y * g
        return nn.functional.max_pool2d(y, 2) if False else y


def test_squeeze_excite_and_functional_ops():
    spec = lm.trace(SE(), (3, 8, 8))
    assert [layer.op for layer in spec.layers] == ["conv", "global_avgpool", "conv", "conv", "mul"]
    assert [layer.act for layer in spec.layers] == ["relu", None, "relu", "sigmoid", None]
    assert spec.layers[-1].inputs == ("conv", "fc2")


class Cat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], 1)


class Norm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class LoneBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class PlusConstant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + 3


class Dynamic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (Cat(), "unsupported op: function cat"),
        (Norm(), "unsupported op: module LayerNorm \\(norm\\)"),
        (LoneBN(), "module BatchNorm2d \\(bn\\) that does not directly follow a convolution"),
        (PlusConstant(), "with a constant operand"),
        (
            nn.Sequential(nn.Conv2d(3, 3, 3, dilation=2)),
            "only square kernels and strides without dilation",
        ),
        (Dynamic(), "torch.fx cannot trace Dynamic"),
        (nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), "pool to \\(C, 1, 1\\) before"),
    ],
)
def test_unsupported_ops_are_named(module, message):
    with pytest.raises(TraceError, match=message):
        lm.trace(module, (3, 8, 8))


def test_bad_input_shape():
    with pytest.raises(TraceError, match="input_shape must be"):
        lm.trace(nn.Conv2d(3, 3, 1), (8, 8))


def test_every_activation_name_builds_a_module():
    from latency_models.torch.measure import ACT_MODULES

    assert tuple(ACT_MODULES) == lm.ACTIVATIONS
