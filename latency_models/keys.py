"""Look-up-table keys for blocks, in the formats the tables use.

`ofa-mbv3` is the format of once-for-all's published Note10 tables, exactly:

    expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0
    Conv-input:224x224x3-output:112x112x24          (first conv)
    Conv_1-input:7x7x192-output:7x7x1152            (final 1x1 expand conv)
    AvgPool2D-input:7x7x1152-output:1x1x1152        (global pool)
    Conv_2-input:1x1x1152-output:1x1x1536           (feature-mix 1x1 conv, after the pool)
    Logits-input:1x1x1536-output:1000               (classifier)

`generic` names every block by its kind, shapes and all its attrs, so any space can be tabled:

    mbconv-input:14x14x24-output:14x14x24-act:relu-expand:3-kernel:5-mid:72-se:1-skip:1-stride:1
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any

from latency_models.errors import UnsupportedSpecError
from latency_models.ops import Shape

# A block as a hashable value: (kind, in_shape, out_shape, attrs as sorted (name, value) pairs).
BlockSig = tuple[str, Shape, Shape, tuple[tuple[str, Any], ...]]


def _hwc(shape: Shape) -> str:
    c, h, w = shape
    return f"{h}x{w}x{c}"


def _flag(value: Hashable) -> int:
    return int(bool(value))


def ofa_mbv3_key(sig: BlockSig, index: int) -> str:
    kind, in_shape, out_shape, attrs_items = sig
    attrs = dict(attrs_items)
    io = f"input:{_hwc(in_shape)}-output:{_hwc(out_shape)}"
    if kind == "mbconv":
        return (
            f"expanded_conv-{io}-expand:{attrs['mid']}-kernel:{attrs['kernel']}"
            f"-stride:{attrs['stride']}-idskip:{_flag(attrs['skip'])}-se:{_flag(attrs['se'])}"
            f"-hs:{int(attrs.get('act') == 'h_swish')}"
        )
    if kind == "conv":
        if index == 0:
            return f"Conv-{io}"
        return f"Conv_2-{io}" if in_shape[1:] == (1, 1) else f"Conv_1-{io}"
    if kind == "global_avgpool":
        return f"AvgPool2D-{io}"
    if kind == "linear":
        return f"Logits-input:{_hwc(in_shape)}-output:{out_shape[0]}"
    raise UnsupportedSpecError(
        f"block kind {kind!r} has no key in the ofa-mbv3 table format; "
        "allowed kinds: mbconv, conv, global_avgpool, linear"
    )


@functools.lru_cache(maxsize=1 << 16)  # a search builds the same blocks' keys again and again
def generic_key(sig: BlockSig, index: int) -> str:
    kind, in_shape, out_shape, attrs_items = sig
    parts = [f"{kind}-input:{_hwc(in_shape)}-output:{_hwc(out_shape)}"]
    for name, value in attrs_items:  # sorted by name in the signature
        if isinstance(value, bool):
            value = int(value)
        parts.append(f"{name}:{value}")
    return "-".join(parts)


KEY_FORMATS: dict[str, Callable[[BlockSig, int], str]] = {
    "ofa-mbv3": ofa_mbv3_key,
    "generic": generic_key,
}


def conv_size(size: int, stride: int) -> int:
    """Output size of a 'same'-padded layer with an odd kernel: ceil(size / stride)."""
    return -(-size // stride)


def rescale(sig: BlockSig, stride_before: int, resolution: int) -> tuple[BlockSig, int]:
    """The block as it is in the same network at another input resolution, and its input
    pixel count there (for interpolation between tables)."""
    kind, in_shape, out_shape, attrs_items = sig
    attrs = dict(attrs_items)
    size = 1 if stride_before == 0 else conv_size(resolution, stride_before)
    pooled = kind == "global_avgpool" or ("stride" not in attrs and out_shape[1:] == (1, 1))
    out = 1 if pooled or stride_before == 0 else conv_size(size, int(attrs.get("stride", 1)))
    new = (kind, (in_shape[0], size, size), (out_shape[0], out, out), attrs_items)
    return new, size * size
