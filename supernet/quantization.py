"""int8 fake quantization of an extracted subnet in torch, with the scheme of the int8 export
(nas.export.quantize): BatchNorm folded, weights int8 per output channel and symmetric, activations
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
# training images that calibrate the int8 activation ranges, unless a caller says otherwise
DEFAULT_CALIBRATION_IMAGES = 300


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


def prepared_for_qat(module: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """A copy of `module` with BatchNorm folded into its convolutions and a fake quantizer on
    every weight and activation (torch.ao FX), in train mode: observers on, fake quant on."""
    from torch.ao.quantization import quantize_fx

    float_module = copy.deepcopy(module).eval()
    with warnings.catch_warnings():  # torch.ao's FX quantization warns of its deprecation
        warnings.simplefilter("ignore")
        fused = quantize_fx.fuse_fx(float_module)  # BatchNorm folded into the convolutions
        return quantize_fx.prepare_qat_fx(fused.train(), int8_qconfig_mapping(), (example[:1],))


def calibrate(prepared: nn.Module, calibration: torch.Tensor, freeze: bool = True) -> None:
    """Set the activation ranges of `prepared` to the min/max over `calibration` (float
    outputs while observing); `freeze` then fixes them, with fake quantization on."""
    prepared.apply(torch.ao.quantization.disable_fake_quant)  # observe float ranges first
    prepared.apply(torch.ao.quantization.enable_observer)
    was_training = prepared.training
    prepared.eval()
    with torch.no_grad():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            prepared(calibration[start : start + CALIBRATION_BATCH])
    prepared.train(was_training)
    if freeze:
        prepared.apply(torch.ao.quantization.disable_observer)
    prepared.apply(torch.ao.quantization.enable_fake_quant)


def fake_quantized(module: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """A calibrated fake-quantized copy of `module` (in eval mode; `module` is unchanged)."""
    prepared = prepared_for_qat(module, calibration)
    calibrate(prepared, calibration)
    return prepared.eval()


def conv_bn_pairs(module: nn.Module) -> dict[str, str]:
    """Each Conv2d whose only consumer is a BatchNorm2d -> that BatchNorm (module names), as
    torch.fx traces `module`: the pairs FX quantization folds."""
    graph = torch.fx.symbolic_trace(module).graph
    modules = dict(module.named_modules())
    pairs: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules[source.target], nn.Conv2d)
            and len(source.users) == 1
        ):
            pairs[str(source.target)] = str(node.target)
    return pairs


@torch.no_grad()
def trained_float_weights(prepared: nn.Module, module: nn.Module) -> nn.Module:
    """A copy of `module` (the float module `prepared` was made from) computing what
    `prepared` computes without its fake quantizers: each convolution takes the folded,
    fine-tuned weights, and its BatchNorm becomes an identity that adds the folded bias
    (mean 0, variance 1 - eps, scale 1). The copy keeps `module`'s structure and
    state_dict keys, so every exporter and the card's rebuild recipe still apply."""
    out = copy.deepcopy(module).eval()
    pairs = conv_bn_pairs(out)
    for name, trained in prepared.named_modules():
        if not hasattr(trained, "weight_fake_quant"):
            continue
        layer = out.get_submodule(name)
        if layer.weight.shape != trained.weight.shape:
            raise RuntimeError(
                f"{name}: fine-tuned weight {tuple(trained.weight.shape)} does "
                f"not fit {tuple(layer.weight.shape)}"
            )
        layer.weight.copy_(trained.weight)
        bias = trained.bias if trained.bias is not None else None
        if name in pairs:
            bn = out.get_submodule(pairs[name])
            bn.running_mean.zero_()
            bn.running_var.fill_(1 - bn.eps)
            bn.weight.fill_(1)
            bn.bias.copy_(bias if bias is not None else torch.zeros_like(bn.bias))
            if layer.bias is not None:
                layer.bias.zero_()
        elif bias is not None:
            layer.bias.copy_(bias)
    return out
