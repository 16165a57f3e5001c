"""Accuracy of subnets of a trained supernet, with BatchNorm recalibration.

A weight-shared supernet's BatchNorm running statistics belong to no subnet in particular
(training uses batch statistics), so before a subnet is evaluated they are re-estimated on
a fixed set of training images, as once-for-all does. Images stay in memory as tensors; each
resolution is resized once and cached, so evaluating many archs decodes nothing again.

Precision: "auto" (the default) runs recalibration and evaluation under bfloat16 autocast
where the hardware has native bfloat16 (oneDNN on a CPU with AVX512-BF16 or AMX, a CUDA GPU
that supports it) and in float32 elsewhere. On this project's AMD EPYC (AVX512-BF16) that
takes a candidate from 0.38 to 0.22 s, and moves top-1 by at most a tenth of a point, far
below the measurement's own noise (experiments/bench_supernet_eval.py). An export's card
measures in float32: it reports the model that is deployed. Evaluation also folds each
BatchNorm into its convolution (ConvBNAct), one pass over the activations less per layer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor, nn

from supernet.data import Dataset, resize
from supernet.space import Arch, SearchSpace

EVAL_PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> "bf16" where the device computes bfloat16 natively, else "fp32"."""
    if precision not in EVAL_PRECISIONS:
        raise ValueError(
            f"unknown evaluation precision {precision!r}; choose from {EVAL_PRECISIONS}"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:  # oneDNN's own check (AVX512-BF16 or AMX); a build without oneDNN has no such op
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if device.type == "cpu" and native else "fp32"


@dataclass(frozen=True)
class EvalResult:
    arch_id: str
    top1: float  # fraction of correct predictions, in [0, 1]
    loss: float  # mean cross-entropy
    images: int
    resolution: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Iterable[Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their average over `batches`.

    Uses torch's cumulative moving average (momentum=None) in train mode; dropout is kept off
    so recalibration consumes no randomness and is repeatable.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    was_training = net.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    try:
        for x in batches:
            net(x)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        net.train(was_training)


@torch.no_grad()
def top1_of(module: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Top-1 of a plain (static) module on preprocessed images, in eval mode."""
    module.eval()
    correct = sum(
        int((module(xb).argmax(1) == yb).sum())
        for xb, yb in zip(images.split(batch_size), labels.split(batch_size), strict=True)
    )
    return correct / max(len(labels), 1)


# The one-sided confidence of successive halving's bound: z = 2 leaves about 2.3% of archs
# that would have joined the front stopped on their partial figure (where the normal
# approximation holds).
HALVING_Z = 2.0


def top1_upper_bound(correct: int, n: int, z: float = HALVING_Z) -> float:
    """The Wilson score upper bound of a proportion measured as `correct` of `n`: unlike
    the normal interval it stays inside [0, 1] and is not zero-width at 0 or n correct."""
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


class SupernetEvaluator:
    """`evaluate(arch)` / `evaluate_many(archs)` on one split of a dataset."""

    def __init__(
        self,
        net: nn.Module,
        space: SearchSpace,
        dataset: Dataset,
        *,
        split: str = "val",
        recalibration_images: int = 500,
        batch_size: int = 500,
        channels_last: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        fold_batch_norm: bool = True,
    ) -> None:
        if recalibration_images < 1:
            raise ValueError("recalibration_images must be >= 1")
        self.net, self.space, self.dataset = net, space, dataset
        self.split, self.batch_size, self.channels_last = split, batch_size, channels_last
        self.device = torch.device(device)  # the net's; images are copied there once
        self.precision = resolve_precision(precision, self.device)
        # BatchNorm folded into each convolution while evaluating (ConvBNAct.fold)
        self.fold_batch_norm = fold_batch_norm
        self._foldable = [m for m in net.modules() if hasattr(m, "fold") and m.bn is not None]
        target = dataset.split(split)
        if len(target) == 0:
            raise ValueError(f"split {split!r} of dataset {dataset.name!r} is empty")
        self.images = dataset.normalize(target.images)
        self.labels = target.labels.to(self.device)
        # A fixed, seeded subset of training images for BN statistics.
        gen = torch.Generator().manual_seed(seed)
        n_cal = min(recalibration_images, len(dataset.train))
        pick = torch.randperm(len(dataset.train), generator=gen)[:n_cal]
        self.calibration = dataset.normalize(dataset.train.images[pick])
        self._resized: dict[tuple[str, int], Tensor] = {}

    def _at(self, which: str, resolution: int) -> Tensor:
        key = (which, resolution)
        if key not in self._resized:
            images = self.images if which == "eval" else self.calibration
            x = resize(images, resolution)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self._resized[key] = x.to(self.device)
        return self._resized[key]

    def _batches(self, x: Tensor) -> list[Tensor]:
        return list(torch.split(x, self.batch_size))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def recalibrate(self, arch: Arch) -> None:
        self.net.set_active(arch)
        with self._autocast():  # BatchNorm's statistics are kept in float32 all the same
            recalibrate_bn(self.net, self._batches(self._at("calibration", arch["r"])))

    @torch.no_grad()
    def evaluate(self, arch: Arch) -> EvalResult:
        arch = self.space.canonical(arch)
        correct, loss_sum = self._run(arch)
        n = len(self.labels)
        top1 = int(correct.sum()) / n
        return EvalResult(self.space.arch_id(arch), top1, loss_sum / n, n, arch["r"])

    @torch.no_grad()
    def evaluate_staged(
        self, arch: Arch, first: int, go_on: Callable[[int, int], bool]
    ) -> EvalResult:
        """Successive halving's measurement: top-1 on the split's first `first` images; then,
        only where `go_on(correct, first)` says the arch could still matter, on the rest too,
        with the BN statistics of the one recalibration. The result says how many images it
        used (`images`); one that went on to the end equals `evaluate(arch)`'s up to the
        batching of bfloat16 arithmetic."""
        arch = self.space.canonical(arch)
        first = min(max(first, 1), len(self.labels))
        self.recalibrate(arch)
        hits, loss_sum = self._pass(arch, slice(0, first))
        if first < len(self.labels) and go_on(int(hits.sum()), first):
            more, more_loss = self._pass(arch, slice(first, None))
            hits, loss_sum = torch.cat([hits, more]), loss_sum + more_loss
        n = len(hits)
        top1 = int(hits.sum()) / n
        return EvalResult(self.space.arch_id(arch), top1, loss_sum / n, n, arch["r"])

    @torch.no_grad()
    def correct(self, arch: Arch) -> Tensor:
        """Whether each image of the split is classified right (bool, in split order): two
        disjoint halves of it are two independent measurements of the same arch."""
        return self._run(self.space.canonical(arch))[0].cpu()

    def _run(self, arch: Arch) -> tuple[Tensor, float]:
        """BN recalibrated for `arch`, then per image: right or not; and the summed loss."""
        self.recalibrate(arch)
        return self._pass(arch, slice(None))

    def _pass(self, arch: Arch, images: slice) -> tuple[Tensor, float]:
        """Per image of `images` (of the split): right or not; and the summed loss, with the
        BN statistics in place (recalibrated for `arch`)."""
        was_training = self.net.training
        self.net.eval()
        for module in self._foldable:
            module.fold = self.fold_batch_norm and module.bn.track_running_stats
        x = self._at("eval", arch["r"])[images]
        labels = self.labels[images]
        hits, loss_sum = [], 0.0
        batches = zip(self._batches(x), torch.split(labels, self.batch_size), strict=True)
        with torch.inference_mode(), self._autocast():
            for xb, yb in batches:
                logits = self.net(xb).float()
                loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
                hits.append(logits.argmax(1) == yb)
        self.net.train(was_training)
        return torch.cat(hits), loss_sum

    def evaluate_many(
        self, archs: Sequence[Arch], progress: bool = False, description: str = "evaluating"
    ) -> list[EvalResult]:
        results = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(description, total=len(archs))
            for arch in archs:
                results.append(self.evaluate(arch))
                bar.advance(task)
        return results
