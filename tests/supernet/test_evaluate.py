"""BN recalibration and subnet evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import supernet
from supernet.data import DatasetConfig, load_dataset
from supernet.mbconv.evaluate import SupernetEvaluator, recalibrate_bn, top1_upper_bound


def test_recalibration_replaces_running_stats_with_data_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    bn = net[1]
    bn.running_mean.fill_(7.0)
    batches = [torch.randn(8, 1, 6, 6) * 2 + 1 for _ in range(3)]
    net.eval()
    recalibrate_bn(net, batches)
    with torch.no_grad():
        features = torch.cat([net[0](b) for b in batches])
    assert torch.allclose(bn.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    per_batch_var = torch.stack([net[0](b).var(dim=(0, 2, 3)) for b in batches]).detach()
    assert torch.allclose(bn.running_var, per_batch_var.mean(0), atol=1e-4)
    assert bn.momentum == 0.1 and not net.training  # settings restored


def test_recalibration_changes_supernet_statistics_per_subnet():
    space = supernet.get_space("mnist-mbv3")
    net = supernet.build(space)
    before = net.blocks[0].depthwise.bn.running_var.clone()
    x = [torch.randn(16, 1, 20, 20)]
    net.set_active(dict(space.largest(), r=20))
    recalibrate_bn(net, x)
    after_large = net.blocks[0].depthwise.bn.running_var.clone()
    assert not torch.equal(before, after_large)
    net.set_active(dict(space.smallest(), r=20))
    recalibrate_bn(net, x)
    assert not torch.equal(after_large, net.blocks[0].depthwise.bn.running_var)


def test_evaluate_matches_the_extracted_net():
    data = load_dataset(DatasetConfig(kind="mnist", limit=64))
    space = supernet.get_space("mnist-mbv3")
    torch.manual_seed(0)
    net = supernet.build(space)
    evaluator = SupernetEvaluator(
        net, space, data, recalibration_images=32, batch_size=20, precision="fp32"
    )
    arch = space.sample(np.random.default_rng(0))
    result = evaluator.evaluate(arch)
    assert result.images == 64 and result.resolution == arch["r"]
    static = net.extract(arch).eval()  # carries the recalibrated statistics
    x = evaluator._at("eval", arch["r"])
    with torch.no_grad():
        predictions = static(x).argmax(1)
    assert result.top1 == (predictions == data.val.labels).float().mean().item()
    again = evaluator.evaluate_many([arch, space.smallest()])
    assert again[0] == result and again[1].resolution == min(space.config.resolutions)


def test_folded_batch_norm_gives_the_logits_of_batch_norm_apart():
    space = supernet.get_space("mnist-mbv3")
    torch.manual_seed(1)
    net = supernet.build(space)
    arch = space.sample(np.random.default_rng(2))
    net.set_active(arch)
    recalibrate_bn(net, [torch.randn(32, 1, arch["r"], arch["r"])])
    net.eval()
    x = torch.randn(8, 1, arch["r"], arch["r"])
    with torch.no_grad():
        folded = net(x)
        for module in net.modules():
            if hasattr(module, "fold"):
                module.fold = False
        apart = net(x)
    assert torch.allclose(folded, apart, rtol=1e-4, atol=1e-5)
    assert not torch.equal(folded, apart)  # a different computation, the same result


def test_precision_auto_and_bf16_measure_as_fp32_does_within_noise():
    data = load_dataset(DatasetConfig(kind="mnist", limit=200))
    space = supernet.get_space("mnist-mbv3")
    torch.manual_seed(0)
    net = supernet.build(space)
    arch = space.sample(np.random.default_rng(0))
    results = {}
    for precision in ("fp32", "bf16"):
        evaluator = SupernetEvaluator(
            net, space, data, recalibration_images=64, precision=precision
        )
        assert evaluator.precision == precision
        results[precision] = evaluator.evaluate(arch).top1
    assert abs(results["bf16"] - results["fp32"]) <= 0.05
    auto = SupernetEvaluator(net, space, data, recalibration_images=64)
    assert auto.precision in ("fp32", "bf16")
    with pytest.raises(ValueError, match="unknown evaluation precision"):
        SupernetEvaluator(net, space, data, precision="fp8")


def test_a_staged_evaluation_stops_where_told_and_otherwise_equals_a_whole_one():
    data = load_dataset(DatasetConfig(kind="mnist", limit=80))
    space = supernet.get_space("mnist-mbv3")
    torch.manual_seed(0)
    net = supernet.build(space)
    evaluator = SupernetEvaluator(
        net, space, data, recalibration_images=32, batch_size=20, precision="fp32"
    )
    arch = space.sample(np.random.default_rng(3))
    whole = evaluator.evaluate(arch)
    seen = []

    def stop(correct, n):
        seen.append((correct, n))
        return False

    first = evaluator.evaluate_staged(arch, 20, stop)
    assert first.images == 20 and seen[0][1] == 20
    assert first.top1 == seen[0][0] / 20
    hits = evaluator.correct(arch)
    assert first.top1 == int(hits[:20].sum()) / 20  # the split's first 20 images
    on = evaluator.evaluate_staged(arch, 20, lambda correct, n: True)
    assert on.images == whole.images == 80
    assert on.top1 == whole.top1 and on.loss == pytest.approx(whole.loss, rel=1e-5)


def test_the_upper_bound_of_a_proportion_holds_it_and_narrows_with_images():
    assert top1_upper_bound(45, 50) > 0.9
    assert top1_upper_bound(450, 500) < top1_upper_bound(45, 50)  # more images: narrower
    assert 0 < top1_upper_bound(0, 20) < 0.3  # zero correct: not a zero-width bound
    assert top1_upper_bound(20, 20) == 1.0
    # about 2.3% of draws of a proportion land more than 2 standard errors below it
    rng = np.random.default_rng(0)
    draws = rng.binomial(250, 0.9, size=20000)
    missed = np.mean([top1_upper_bound(int(k), 250) <= 0.9 for k in draws])
    assert 0.005 < missed < 0.05
