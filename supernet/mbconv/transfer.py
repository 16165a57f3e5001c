"""Once-for-all transfer: start a supernet run on a user's data from trained weights.

The source is an official once-for-all MobileNetV3 checkpoint (a state dict file, read by
`load_ofa_checkpoint` into the base space) or a trained `supernet.pt` of the same base space.
Every tensor whose shape fits is copied. The classifier is left freshly initialised when the
number of classes differs, and the first convolution's kernel is summed over its input
channels when the data has one channel where the source had three (a grey image is the same
value in R, G and B). Anything else that does not fit is an error that names the tensor: a
run never trains from a silently partial copy.

    report = transfer_weights(net, base_space, "ofa_mbv3_d234_e346_k357_w1.2")
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from supernet.errors import CheckpointError
from supernet.io import file_sha256, read_artifact
from supernet.mbconv.family import SUPERNET_FORMAT
from supernet.mbconv.ofa_import import load_ofa_checkpoint
from supernet.space import SearchSpace, saved_space, space_reference

CLASSIFIER_PREFIX = "classifier."
OFA_SPACES = ("ofa-mbv3-w1.0", "ofa-mbv3-w1.2")


def check_source(source: str | os.PathLike) -> str:
    """The source's path; CheckpointError unless it is a file (a run checks it before it
    builds anything)."""
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise CheckpointError(f"init_from: file not found: {path}")
    return path


def source_state(
    source: str | os.PathLike, base: SearchSpace
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The source's state dict in this project's key layout, and what it was."""
    path = check_source(source)
    try:
        artifact = read_artifact(path, SUPERNET_FORMAT)
    except CheckpointError:
        artifact = None
    if artifact is not None:
        state, kind = artifact.data["model"], f"supernet.pt of space {artifact.data['space']!r}"
        sha = artifact.sha256
    else:  # an official once-for-all file: refused, naming the key, if it is not one
        state = load_ofa_checkpoint(path, base).state_dict()
        kind, sha = f"once-for-all MobileNetV3 checkpoint ({base.name})", file_sha256(path)
    return dict(state), {"path": os.path.abspath(path), "sha256": sha, "kind": kind}


@torch.no_grad()
def transfer_weights(
    net: nn.Module, base: SearchSpace, source: str | os.PathLike
) -> dict[str, Any]:
    """Copy the source's weights into `net` (see the module docstring); returns what was
    copied, adapted and left initialised, for the run's record."""
    theirs, origin = source_state(source, base)
    ours = net.state_dict()
    adapted, fresh = [], []
    loaded: dict[str, Tensor] = {}
    for key, target in ours.items():
        tensor = theirs.get(key)
        if tensor is None:
            raise CheckpointError(f"init_from {origin['path']}: no tensor {key!r} for this space")
        if tensor.shape == target.shape:
            loaded[key] = tensor.to(target.dtype)
        elif key.startswith(CLASSIFIER_PREFIX) and tensor.shape[1:] == target.shape[1:]:
            fresh.append(key)  # another number of classes: this data's head starts anew
        elif (
            tensor.dim() == 4
            and target.shape[1] == 1
            and tensor.shape[1] == 3
            and tensor.shape[0] == target.shape[0]
            and tensor.shape[2:] == target.shape[2:]
        ):
            loaded[key] = tensor.sum(1, keepdim=True).to(target.dtype)  # RGB -> grey
            adapted.append(key)
        else:
            raise CheckpointError(
                f"init_from {origin['path']}: tensor {key!r} has shape {tuple(tensor.shape)}, "
                f"this run's space expects {tuple(target.shape)} (another width or space?)"
            )
    net.load_state_dict({**ours, **loaded})
    return {
        **origin,
        "copied": len(loaded) - len(adapted),
        "adapted_rgb_to_grey": adapted,
        "reinitialised": fresh,
    }


def infer_space(source: str | os.PathLike) -> str | dict[str, Any]:
    """The base space a source belongs to: a supernet.pt's own (its preset's name, or the
    definition it stores of a space that is not a preset), or the once-for-all MobileNetV3
    space whose tensor shapes the file fits (w1.0, then w1.2)."""
    path = os.fspath(source)
    try:
        data = read_artifact(path, SUPERNET_FORMAT).data
    except CheckpointError:
        pass
    else:
        reference = space_reference(saved_space(data))
        return reference if isinstance(reference, dict) else reference.split("[", 1)[0]
    problems = []
    for name in OFA_SPACES:
        try:
            load_ofa_checkpoint(path, name)
            return name
        except CheckpointError as err:
            problems.append(f"{name}: {err}")
    raise CheckpointError(
        f"init_from {path} is neither a supernet.pt nor a once-for-all MobileNetV3 "
        f"checkpoint of {', '.join(OFA_SPACES)} ({'; '.join(problems)})"
    )


def transfer_phases(space: SearchSpace, epochs: int, lr: float) -> list[dict[str, Any]]:
    """A short progressive-shrinking schedule for weights that are already elastic: the
    largest network first (the new head learns the data's classes), then kernel, depth and
    expand ratio (and width, where the space has it) opened one after another."""
    c = space.config  # an MBConvSpace
    depths = sorted({d for s in c.stages for d in s.depths})
    kernel = {"ks": list(c.kernel_sizes)}
    depth = {**kernel, "d": depths}
    expand = {**depth, "e": list(c.expand_ratios)}
    phases = [
        {"name": "largest", "epochs": epochs, "lr": lr, "warmup_epochs": 0},
        {"name": "kernel", "epochs": epochs, "lr": lr / 2, **kernel},
        {"name": "depth", "epochs": epochs, "lr": lr / 2, **depth},
        {"name": "expand", "epochs": epochs, "lr": lr / 2, **expand},
    ]
    if len(c.width_mults) > 1:
        phases.append({"name": "width", "epochs": epochs, "lr": lr / 2, **expand,
                       "w": list(c.width_mults)})  # fmt: skip
    return phases
