"""The elastic supernet: exact extraction, TorchScript, ONNX, channel sorting, elastic ops."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet
from supernet import InvalidArchError
from supernet.mbconv.ops import (
    ConvBNAct,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDepthwiseConv2d,
    ElasticLinear,
    ElasticMBConvBlock,
    ElasticSE,
    MBConvBlock,
    SqueezeExcite,
)

PRESETS = ["ofa-mbv3-w1.0", "ofa-mbv3-w1.2", "mnist-mbv3", "mcu-mbv2"]
PLAIN_LEAVES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Linear,
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Dropout,
    nn.Identity,
    nn.AdaptiveAvgPool2d,
)
CONTAINERS = (nn.Sequential, MBConvBlock, SqueezeExcite, supernet.mbconv.supernet.StaticMBConvNet)


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine terms, and kernel transforms away from the identity,
    so that a wrong slice or a skipped transform shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "transform_" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return net


@pytest.fixture(scope="module", params=PRESETS)
def built(request):
    space = supernet.get_space(request.param)
    return space, randomize(supernet.build(space)).eval()


def _input(space, arch, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, space.config.in_channels, arch["r"], arch["r"], generator=gen)


def test_extraction_equals_supernet_for_random_archs(built):
    space, net = built
    rng = np.random.default_rng(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(20)]
    for arch in archs:
        net.set_active(arch)
        x = _input(space, arch)
        static = net.extract(arch).eval()
        with torch.no_grad():
            diff = (net(x) - static(x)).abs().max().item()
        assert diff <= 1e-5, (diff, arch)
        assert sum(p.numel() for p in static.parameters()) == space.to_spec(arch).params


def test_extracted_net_is_plain_torch_modules(built):
    space, net = built
    static = net.extract(space.sample(1))
    for module in static.modules():
        assert isinstance(module, PLAIN_LEAVES + CONTAINERS), type(module)
    assert static.space_name == space.name and static.resolution == space.sample(1)["r"]


def test_extraction_copies_weights_and_keeps_active_arch(built):
    space, net = built
    active = space.sample(2)
    net.set_active(active)
    static = net.extract(space.largest())
    assert net.active_arch == active
    with torch.no_grad():
        static.stem[0].weight.zero_()
    assert net.stem.conv.weight.abs().sum() > 0


def test_torchscript(built):
    space, net = built
    rng = np.random.default_rng(3)
    for arch in [space.sample(rng) for _ in range(3)]:
        static = net.extract(arch).eval()
        scripted = torch.jit.script(static)
        x = _input(space, arch, seed=1)
        with torch.no_grad():
            assert torch.allclose(scripted(x), static(x), atol=1e-6)


def _onnx_matches(static: nn.Module, x: torch.Tensor, path) -> float:
    program = torch.onnx.export(
        static,
        (x,),
        dynamo=True,
        verbose=False,
        input_names=["input"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.cat([x, x[:1]])  # a batch size not seen at export
    (got,) = session.run(None, {"input": x3.numpy()})
    with torch.no_grad():
        return float(np.abs(got - static(x3).numpy()).max())


def test_onnx_export_matches_onnxruntime(built, tmp_path):
    space, net = built
    arch = space.sample(4)
    static = net.extract(arch).eval()
    assert _onnx_matches(static, _input(space, arch), tmp_path / "net.onnx") <= 1e-4


@pytest.mark.slow
def test_onnx_export_many_archs(built, tmp_path):
    space, net = built
    rng = np.random.default_rng(5)
    for k in range(5):
        arch = space.sample(rng)
        static = net.extract(arch).eval()
        assert _onnx_matches(static, _input(space, arch), tmp_path / f"{k}.onnx") <= 1e-4


def test_set_active_rejects_foreign_arch(built):
    _, net = built
    with pytest.raises(InvalidArchError):
        net.set_active({"ks": [3]})


def test_elastic_resolution_resizes_input():
    space = supernet.get_space("mnist-mbv3")
    net = randomize(supernet.build(space)).eval()
    arch = dict(space.sample(0), r=16)
    net.set_active(arch)
    x = torch.randn(2, 1, 28, 28)
    resized = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.equal(net(x), net(resized))


@pytest.mark.parametrize("name", ["mnist-mbv3", "mcu-mbv2"])
def test_channel_sorting_keeps_the_function(name):
    space = supernet.get_space(name)
    net = randomize(supernet.build(space), seed=3).eval()
    arch = space.largest()
    arch["r"] = space.config.resolutions[0]
    x = _input(space, arch)
    net.set_active(arch)
    with torch.no_grad():
        before = net(x)
        net.sort_middle_channels()
        after = net(x)
    assert torch.allclose(before, after, atol=1e-5)
    block = net.blocks[0]
    importance = block.project.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    if block.se is not None:
        se_importance = block.se.expand.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(se_importance[:-1] >= se_importance[1:])


def test_channel_sorting_keeps_trained_prefix():
    space = supernet.get_space("mnist-mbv3")
    net = randomize(supernet.build(space), seed=4)
    block = net.blocks[0]
    boundary = supernet.mbconv.space.mid_channels(block.max_in_channels, 4)
    marker = block.project.conv.weight[:, :boundary].detach().clone()
    order = block.sort_middle_channels([boundary])
    assert set(order[:boundary].tolist()) == set(range(boundary))
    assert torch.equal(
        block.project.conv.weight[:, :boundary].sum(1), marker[:, order[:boundary]].sum(1)
    )


def test_sliced_batchnorm_updates_only_active_running_stats():
    bn = ElasticBatchNorm2d(16).train()
    bn(torch.randn(8, 10, 4, 4) * 3 + 1)
    assert not torch.allclose(bn.running_mean[:10], torch.zeros(10))
    assert torch.equal(bn.running_mean[10:], torch.zeros(6))
    assert torch.equal(bn.running_var[10:], torch.ones(6))
    assert bn.num_batches_tracked.item() == 1


def test_kernel_transform_receives_gradients():
    dw = ElasticDepthwiseConv2d(8, (3, 5, 7))
    dw.active_kernel = 3
    dw(torch.randn(2, 8, 9, 9)).sum().backward()
    assert dw.transform_7to5.grad is not None and dw.transform_7to5.grad.abs().sum() > 0
    assert dw.transform_5to3.grad is not None and dw.transform_5to3.grad.abs().sum() > 0
    assert dw.weight.grad[:, :, 0].abs().sum() == 0  # outer ring unused at k=3
    assert dw.weight.grad[:, :, 1:6, 1:6].abs().sum() > 0


def test_kernel_transform_at_identity_is_centre_crop():
    dw = ElasticDepthwiseConv2d(4, (3, 5, 7))
    assert torch.equal(dw.active_weight(4, 3), dw.weight[:, :, 2:5, 2:5])
    assert torch.equal(dw.active_weight(4, 5), dw.weight[:, :, 1:6, 1:6])
    with pytest.raises(ValueError, match="kernel size 4"):
        dw.active_weight(4, 4)


def test_largest_setting_uses_weights_without_copies():
    conv = ElasticConv2d(8, 16, 3)
    assert conv.active_weight(8, 16) is conv.weight
    dw = ElasticDepthwiseConv2d(8, (3, 5, 7))
    assert dw.active_weight(8, 7) is dw.weight
    channels_last = dw.to(memory_format=torch.channels_last)
    assert channels_last.active_weight(8, 7).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "layer",
    [
        ElasticConv2d(8, 16, 3, 2, bias=True),
        ElasticDepthwiseConv2d(24, (3, 5, 7), 2),
        ElasticBatchNorm2d(24, eps=1e-3, momentum=0.05),
        ElasticLinear(32, 10, 0.2),
        ElasticSE(48),
        ConvBNAct(ElasticConv2d(3, 16, 3, 2), ElasticBatchNorm2d(16), "h_swish"),
        ElasticMBConvBlock(16, 24, (3, 5, 7), (3, 4, 6), 2, "relu", se=True, residual=False),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_elastic_layer_config_round_trip(layer):
    import json

    config = json.loads(json.dumps(layer.config))
    rebuilt = type(layer).from_config(config)
    assert rebuilt.config == layer.config
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [
        (k, v.shape) for k, v in layer.state_dict().items()
    ]


def test_supernet_train_step_reaches_shared_weights():
    space = supernet.get_space("mnist-mbv3")
    net = supernet.build(space).train()
    arch = space.sample(5)
    net.set_active(arch)
    x = torch.randn(4, 1, arch["r"], arch["r"])
    F.cross_entropy(net(x), torch.tensor([0, 1, 2, 3])).backward()
    used = net.blocks[0]
    assert used.depthwise.conv.weight.grad is not None
    inactive = [
        net.blocks[i] for s, ids in enumerate(net.stage_blocks) for i in ids[arch["d"][s] :]
    ]
    assert all(b.depthwise.conv.weight.grad is None for b in inactive)


def test_build_rejects_unknown_space_type():
    from supernet.errors import SpaceDefinitionError

    with pytest.raises(
        SpaceDefinitionError,
        match=r"space: expected a preset name, a path to a YAML file or a mapping, got int",
    ):
        supernet.build(42)


def test_block_activations_are_ones_the_cost_models_know():
    import latency_models as lm
    from supernet.mbconv.ops import ACTIVATION_MODULES

    assert set(ACTIVATION_MODULES) <= set(lm.ACTIVATIONS)
