"""once-for-all's own OFAMobileNetV3 (the `ofa` package from PyPI), as the test oracle.

The package imports torchvision for its ImageNet data loaders only; torchvision cannot be
installed beside this torch, so a stand-in with the two names it touches at import time is
put in place before importing it. The network code itself runs unmodified.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any


def _stub_torchvision() -> None:
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    torchvision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")

    class _Unavailable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("torchvision is not installed; this stub only satisfies imports")

    transforms.RandomResizedCrop = _Unavailable
    transforms.RandomCrop = _Unavailable
    transforms.functional = functional
    torchvision.transforms = transforms
    sys.modules.setdefault("torchvision", torchvision)
    sys.modules.setdefault("torchvision.transforms", transforms)
    sys.modules.setdefault("torchvision.transforms.functional", functional)


def ofa_mobilenet_v3(width_mult: float, n_classes: int = 1000) -> Any:
    _stub_torchvision()
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    return OFAMobileNetV3(
        n_classes=n_classes,
        width_mult=width_mult,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
