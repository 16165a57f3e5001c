"""The vocabulary of a layer: the ops and activations a LayerSpec may name, and its shape type.

Both the spec (which validates layers against it) and the numeric arrays (which encode layers
as codes in this order) read it, so it lives below both of them.
"""

from __future__ import annotations

Shape = tuple[int, int, int]  # per sample: (channels, height, width)

# op -> what it computes
OPS: dict[str, str] = {
    "conv": "2-D convolution (dense, grouped or depthwise), optional BatchNorm and activation",
    "linear": "fully connected layer on a (features, 1, 1) input",
    "avgpool": "local average pooling",
    "maxpool": "local max pooling",
    "global_avgpool": "average over the whole spatial extent, to (C, 1, 1)",
    "add": "element-wise sum of two equal-shaped inputs (residual)",
    "mul": "element-wise product, the second input broadcast (squeeze-and-excitation gate)",
    "act": "a standalone activation",
    "resize": "spatial resize of the input",
    "const": "a learned constant tensor (a generator's input); reads nothing",
}
# The activation names a layer may carry. The torch side maps each to a module
# (latency_models.torch.measure.ACT_MODULES) and back (latency_models.torch.tracing).
ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "relu6",
    "h_swish",
    "h_sigmoid",
    "sigmoid",
    "swish",
    "tanh",
    "gelu",
    "lrelu",
)
