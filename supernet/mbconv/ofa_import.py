"""Import of the public once-for-all MobileNetV3 checkpoints.

once-for-all (github.com/mit-han-lab/once-for-all) publishes ImageNet supernets such as
`ofa_mbv3_d234_e346_k357_w1.0` and `_w1.2`: a torch file holding {"state_dict": ...} of its
OFAMobileNetV3. Its key layout, per part (N = 1..20 for the elastic blocks):

    first_conv.conv.weight, first_conv.bn.*                      stem
    blocks.0.conv.depth_conv.conv.weight / .bn.*                 fixed first block
    blocks.0.conv.point_linear.conv.weight / .bn.*
    blocks.N.conv.inverted_bottleneck.conv.conv.weight / .bn.bn.*
    blocks.N.conv.depth_conv.conv.conv.weight / .bn.bn.*
    blocks.N.conv.depth_conv.conv.7to5_matrix, .5to3_matrix    kernel transformations
    blocks.N.conv.depth_conv.se.fc.reduce.weight / .bias, ...se.fc.expand.*
    blocks.N.conv.point_linear.conv.conv.weight / .bn.bn.*
    final_expand_layer.conv.weight / .bn.*, feature_mix_layer.conv.weight
    classifier.linear.weight / .bias

Older releases name the block body `mobile_inverted_conv` instead of `conv`, and the doubled
`.conv.conv.` / `.bn.bn.` segments vary between versions; both are accepted. once-for-all
applies a kernel transformation as `F.linear(taps, M)` and so do we: matrices load as they are.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from supernet.errors import CheckpointError
from supernet.mbconv.space import MBConvSpace
from supernet.mbconv.supernet import MBConvSupernet
from supernet.space import SearchSpace, get_space

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def normalize_ofa_key(key: str) -> str:
    """One spelling for every once-for-all layout version (see the module docstring)."""
    if key.startswith("module."):  # saved from DataParallel / DDP
        key = key[len("module.") :]
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    for doubled, single in (
        (".conv.conv.", ".conv."),
        (".bn.bn.", ".bn."),
        (".linear.linear.", ".linear."),
    ):
        key = key.replace(doubled, single)
    return key


def ofa_key_map(net: MBConvSupernet) -> dict[str, str]:
    """Our state-dict key -> once-for-all's key (normalized spelling)."""
    mapping: dict[str, str] = {}

    def conv_bn(ours: str, theirs: str, bn: bool = True) -> None:
        mapping[f"{ours}.conv.weight"] = f"{theirs}.conv.weight"
        if bn:
            for k in BN_KEYS:
                mapping[f"{ours}.bn.{k}"] = f"{theirs}.bn.{k}"

    conv_bn("stem", "first_conv")
    conv_bn("first_block.depthwise", "blocks.0.conv.depth_conv")
    conv_bn("first_block.project", "blocks.0.conv.point_linear")
    for i, block in enumerate(net.blocks):
        ours, theirs = f"blocks.{i}", f"blocks.{i + 1}.conv"
        conv_bn(f"{ours}.expand", f"{theirs}.inverted_bottleneck")
        conv_bn(f"{ours}.depthwise", f"{theirs}.depth_conv")
        dw = block.depthwise.conv
        for small, large in itertools.pairwise(dw.kernel_sizes):
            mapping[f"{ours}.depthwise.conv.{dw.transform_name(large, small)}"] = (
                f"{theirs}.depth_conv.conv.{large}to{small}_matrix"
            )
        if block.se is not None:
            for part in ("reduce", "expand"):
                for k in ("weight", "bias"):
                    mapping[f"{ours}.se.{part}.{k}"] = f"{theirs}.depth_conv.se.fc.{part}.{k}"
        conv_bn(f"{ours}.project", f"{theirs}.point_linear")
    conv_bn("final_expand", "final_expand_layer")
    conv_bn("feature_mix", "feature_mix_layer", bn=False)
    mapping["classifier.linear.weight"] = "classifier.linear.weight"
    mapping["classifier.linear.bias"] = "classifier.linear.bias"
    return mapping


def _read_state_dict(source: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(source, Mapping):
        state = source
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a truncated or foreign file
            raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise CheckpointError("checkpoint is not a state dict (a mapping of names to tensors)")
    return dict(state)


def load_ofa_checkpoint(
    source: str | os.PathLike | Mapping[str, Tensor],
    space: SearchSpace | str = "ofa-mbv3-w1.0",
) -> MBConvSupernet:
    """A supernet of `space` holding once-for-all's weights from a file or a state dict.

    Raises CheckpointError naming the first key that is missing, misshapen or unexpected.
    """
    space = get_space(space) if isinstance(space, str) else space
    if not isinstance(space, MBConvSpace) or space.config.head != "mbv3":
        raise CheckpointError(
            f"once-for-all MobileNetV3 checkpoints load only into MobileNetV3 spaces "
            f"(ofa-mbv3-w1.0, ofa-mbv3-w1.2, mnist-mbv3), not {space.name!r}"
        )
    raw = _read_state_dict(source)
    theirs: dict[str, tuple[str, Tensor]] = {}
    for key, tensor in raw.items():
        norm = normalize_ofa_key(key)
        if norm in theirs:
            raise CheckpointError(f"checkpoint key {key!r} duplicates {theirs[norm][0]!r}")
        theirs[norm] = (key, tensor)

    net = MBConvSupernet(space)
    ours = net.state_dict()
    mapping = ofa_key_map(net)
    missing_in_map = set(ours) - set(mapping)
    assert not missing_in_map, f"key map incomplete: {sorted(missing_in_map)[:3]}"

    loaded: dict[str, Tensor] = {}
    for our_key, their_key in mapping.items():
        expected = ours[our_key]
        if their_key not in theirs:
            if their_key.endswith("num_batches_tracked"):
                loaded[our_key] = expected  # not saved by every torch version
                continue
            raise CheckpointError(
                f"checkpoint has no key {their_key!r} (needed by space {space.name!r}); "
                "is this a once-for-all MobileNetV3 checkpoint?"
            )
        original_key, tensor = theirs.pop(their_key)
        if not isinstance(tensor, Tensor) or tuple(tensor.shape) != tuple(expected.shape):
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise CheckpointError(
                f"checkpoint key {original_key!r} has shape {shape}, but space "
                f"{space.name!r} expects {tuple(expected.shape)} (wrong width or space?)"
            )
        loaded[our_key] = tensor.to(expected.dtype)
    if theirs:
        first = next(iter(theirs.values()))[0]
        raise CheckpointError(
            f"checkpoint key {first!r} is not part of space {space.name!r} "
            f"({len(theirs)} unexpected key(s))"
        )
    net.load_state_dict(loaded)
    return net
