"""Per-device cost models. They see only a NetworkSpec, never a torch module.

    import latency_models as lm
    hw = lm.load_hardware("h100-sxm")     # a profile name (lm.list_hardware()) or a YAML path
    hw.predict(spec)                      # {"latency_ms": ..., "macs": ..., "params": ...}
    hw.predict_many(specs)                # one dict per spec, vectorised
    hw.predict(spec, precision="fp16")    # per-kind options (hw.options())
    hw.metrics                            # the metric names this device reports

`lm.trace(model, input_shape)` turns a torch module into a NetworkSpec; it (and the timing
helpers in latency_models.torch.measure) import torch lazily, so the models run without torch.
"""

from typing import Any

from latency_models.arrays import LAYER_CLASSES, SpecArrays, SpecBatch
from latency_models.base import CostModel, Fit
from latency_models.errors import (
    HardwareError,
    MeasurementError,
    MissingEntryError,
    OptionError,
    ProfileError,
    SpecError,
    TraceError,
    UnknownHardwareError,
    UnknownNetworkError,
    UnsupportedSpecError,
    UserError,
)
from latency_models.families import FAMILIES, family_spec
from latency_models.hardware import (
    KINDS,
    PROFILE_DIR,
    dump_profile,
    from_profile,
    hardware_path,
    list_hardware,
    load_hardware,
)
from latency_models.models.gpu import GPUModel
from latency_models.models.learned import LearnedModel
from latency_models.models.lut import LUTModel
from latency_models.models.mcu import MCUModel
from latency_models.models.measured import MeasuredModel
from latency_models.onnx_import import (
    NETWORK_FILE_SUFFIXES,
    spec_from_file,
    spec_from_onnx,
    spec_from_torchscript,
)
from latency_models.spec import (
    ACTIVATIONS,
    OPS,
    BlockSpec,
    LayerSpec,
    NetworkSpec,
    SpecBuilder,
    conv_output_size,
)
from latency_models.zoo import ZOO, reference_spec, zoo_spec


def __getattr__(name: str) -> Any:
    if name == "trace":  # imports torch: only when asked for
        from latency_models.torch.tracing import trace

        return trace
    raise AttributeError(f"module 'latency_models' has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "KINDS",
    "LAYER_CLASSES",
    "NETWORK_FILE_SUFFIXES",
    "OPS",
    "PROFILE_DIR",
    "ZOO",
    "BlockSpec",
    "CostModel",
    "Fit",
    "GPUModel",
    "HardwareError",
    "LUTModel",
    "LayerSpec",
    "LearnedModel",
    "MCUModel",
    "MeasuredModel",
    "MeasurementError",
    "MissingEntryError",
    "NetworkSpec",
    "OptionError",
    "ProfileError",
    "SpecArrays",
    "SpecBatch",
    "SpecBuilder",
    "SpecError",
    "TraceError",
    "UnknownHardwareError",
    "UnknownNetworkError",
    "UnsupportedSpecError",
    "UserError",
    "conv_output_size",
    "dump_profile",
    "family_spec",
    "from_profile",
    "hardware_path",
    "list_hardware",
    "load_hardware",
    "reference_spec",
    "spec_from_file",
    "spec_from_onnx",
    "spec_from_torchscript",
    "trace",
    "zoo_spec",
]
