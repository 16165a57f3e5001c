"""The importer against once-for-all's own OFAMobileNetV3, with random weights in its layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import supernet
from supernet import CheckpointError
from supernet.mbconv.ofa_import import normalize_ofa_key
from tests.supernet.ofa_reference import ofa_mobilenet_v3

WIDTHS = {"ofa-mbv3-w1.0": 1.0, "ofa-mbv3-w1.2": 1.2}


def randomized_ofa(width_mult: float, seed: int) -> torch.nn.Module:
    """OFA's net with every parameter and BN statistic random, transforms far from identity."""
    torch.manual_seed(seed)
    net = ofa_mobilenet_v3(width_mult)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("_matrix"):
                p.copy_(torch.eye(p.shape[0]) + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(
                    1.0 + 0.2 * torch.randn_like(p)
                    if name.endswith("bn.weight")
                    else 0.1 * torch.randn_like(p)
                )
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return net.eval()


def legacy_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The naming of the released checkpoints: `mobile_inverted_conv` and doubled segments."""
    out = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            head, rest = key.split(".conv.", 1)
            key = f"{head}.mobile_inverted_conv.{rest}"
        out[key] = value
    return {"state_dict": out}


@pytest.fixture(scope="module", params=sorted(WIDTHS))
def pair(request, tmp_path_factory):
    space_name = request.param
    ofa = randomized_ofa(WIDTHS[space_name], seed=len(space_name))
    path = tmp_path_factory.mktemp("ofa") / f"{space_name}.pth"
    torch.save(legacy_layout(ofa.state_dict()), path)
    ours = supernet.load_ofa_checkpoint(path, space_name).eval()
    return supernet.get_space(space_name), ofa, ours


def test_outputs_equal_ofa_for_random_archs(pair):
    space, ofa, ours = pair
    rng = np.random.default_rng(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(12)]
    for arch in archs:
        arch["r"] = int(rng.choice([128, 144, 160]))
        ofa.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        ours.set_active(arch)
        x = torch.randn(2, 3, arch["r"], arch["r"])
        with torch.no_grad():
            expected, got = ofa(x), ours(x)
        scale = expected.abs().max().item()
        assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, scale), arch


def test_new_layout_and_plain_state_dict_load(pair):
    space, ofa, ours = pair
    again = supernet.load_ofa_checkpoint(ofa.state_dict(), space)
    for key, value in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_kernel_transform_matrices_are_imported(pair):
    _, ofa, ours = pair
    theirs = ofa.blocks[1].conv.depth_conv.conv
    mine = ours.blocks[0].depthwise.conv
    assert torch.equal(mine.transform_7to5, theirs.__getattr__("7to5_matrix"))
    assert torch.equal(mine.transform_5to3, theirs.__getattr__("5to3_matrix"))


def test_wrong_width_names_first_mismatched_key():
    ofa = ofa_mobilenet_v3(1.0)
    with pytest.raises(CheckpointError, match=r"'first_conv\.conv\.weight'.*\(16, 3, 3, 3\)"):
        supernet.load_ofa_checkpoint(ofa.state_dict(), "ofa-mbv3-w1.2")


def test_missing_key_is_named():
    state = ofa_mobilenet_v3(1.0).state_dict()
    del state["blocks.3.conv.depth_conv.conv.5to3_matrix"]
    with pytest.raises(CheckpointError, match=r"no key 'blocks\.3\.conv\.depth_conv\.conv\.5to3"):
        supernet.load_ofa_checkpoint(state, "ofa-mbv3-w1.0")


def test_unexpected_key_is_named():
    state = ofa_mobilenet_v3(1.0).state_dict()
    state["blocks.21.conv.point_linear.conv.conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"'blocks\.21\.conv\.point_linear"):
        supernet.load_ofa_checkpoint(state, "ofa-mbv3-w1.0")


def test_foreign_layout_is_refused():
    resnetish = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}
    with pytest.raises(CheckpointError, match=r"no key 'first_conv\.conv\.weight'"):
        supernet.load_ofa_checkpoint(resnetish, "ofa-mbv3-w1.0")


def test_non_mobilenetv3_space_is_refused():
    with pytest.raises(CheckpointError, match="mcu-mbv2"):
        supernet.load_ofa_checkpoint({}, "mcu-mbv2")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        supernet.load_ofa_checkpoint(tmp_path / "nope.pth", "ofa-mbv3-w1.0")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        supernet.load_ofa_checkpoint(corrupt, "ofa-mbv3-w1.0")


@pytest.mark.parametrize(
    ("key", "normalized"),
    [
        (
            "blocks.4.mobile_inverted_conv.depth_conv.conv.conv.weight",
            "blocks.4.conv.depth_conv.conv.weight",
        ),
        (
            "module.blocks.4.conv.point_linear.bn.bn.running_var",
            "blocks.4.conv.point_linear.bn.running_var",
        ),
        ("classifier.linear.linear.weight", "classifier.linear.weight"),
        ("blocks.2.conv.depth_conv.conv.7to5_matrix", "blocks.2.conv.depth_conv.conv.7to5_matrix"),
    ],
)
def test_key_normalization(key, normalized):
    assert normalize_ofa_key(key) == normalized
