"""int8 fake quantization of an extracted subnet in torch, with the scheme of the int8 export
(nas.quantize): BatchNorm folded, weights int8 per output channel and symmetric, activations
int8 per tensor with min/max ranges over calibration images.

    fake = fake_quantized(static, calibration_images)   # calibrated; simulates int8 in float
    logits = fake(x)

It is torch's own quantization machinery (torch.ao FX graph mode), not a hand-written
quantizer. The module it returns computes in float with every weight and activation rounded
to its int8 grid: what an int8 runtime computes, up to where each runtime puts its
quantization points. Quantization-aware fine-tuning trains the same module.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

CALIBRATION_BATCH = 64


def int8_qconfig_mapping() -> object:
    """Per-channel symmetric int8 weights, per-tensor affine int8 activations, min/max."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.fake_quantize import FakeQuantize
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    qconfig = QConfig(
        activation=FakeQuantize.with_args(
            observer=MinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_affine,
        ),
        weight=FakeQuantize.with_args(
            observer=PerChannelMinMaxObserver,
            quant_min=-127,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        ),
    )
    return QConfigMapping().set_global(qconfig)


def fake_quantized(module: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """A calibrated fake-quantized copy of `module` (in eval mode; `module` is unchanged)."""
    from torch.ao.quantization import quantize_fx

    float_module = copy.deepcopy(module).eval()
    with warnings.catch_warnings():  # torch.ao's FX quantization warns of its deprecation
        warnings.simplefilter("ignore")
        fused = quantize_fx.fuse_fx(float_module)  # BatchNorm folded into the convolutions
        prepared = quantize_fx.prepare_qat_fx(
            fused.train(), int8_qconfig_mapping(), (calibration[:1],)
        )
    prepared.eval()
    prepared.apply(torch.ao.quantization.disable_fake_quant)  # observe float ranges first
    prepared.apply(torch.ao.quantization.enable_observer)
    with torch.no_grad():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            prepared(calibration[start : start + CALIBRATION_BATCH])
    prepared.apply(torch.ao.quantization.disable_observer)  # then freeze them
    prepared.apply(torch.ao.quantization.enable_fake_quant)
    return prepared
