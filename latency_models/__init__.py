"""Per-device cost models. They see only a NetworkSpec, never a torch module."""

from latency_models.spec import (
    ACTIVATIONS,
    OPS,
    BlockSpec,
    LayerSpec,
    NetworkSpec,
    SpecBuilder,
    SpecError,
    conv_output_size,
)

__all__ = [
    "ACTIVATIONS",
    "OPS",
    "BlockSpec",
    "LayerSpec",
    "NetworkSpec",
    "SpecBuilder",
    "SpecError",
    "conv_output_size",
]
