"""An in-project feature network, and the GAN metrics measured in its feature space.

No pretrained VGG, Inception or LPIPS weights are available offline, so the project trains a
small classifier (`FeatureNet`) on the same data as the GAN and uses it for:

- `perceptual_distance`: an LPIPS-style distance (unit-normalised activations, squared
  differences, averaged over space, summed over layers). Differentiable in its inputs; used as
  the consistency loss between sub-generators and the full generator.
- `domain_fid`: the Fréchet distance between Gaussians fitted to the feature net's image
  statistics (`FeatureNet.statistics`) of two image sets. It is a *domain* FID: its values
  depend on this network and are not comparable with Inception FID figures from the
  literature.

Images everywhere in this module are float tensors (N, C, H, W) in [-1, 1], the generator's
output range; `to_gan_range` turns dataset images (uint8) into that form, so that real images,
generated images and the feature net agree.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from supernet.data import Dataset, random_shift, resize
from supernet.errors import CheckpointError
from supernet.io import read_checkpoint, save_atomic
from supernet.run import cosine_schedule

log = logging.getLogger(__name__)

FEATURE_NET_FORMAT = "nas-feature-net/1"


def to_gan_range(images: Tensor, size: int = 32) -> Tensor:
    """uint8 images (N, C, H, W) -> float32 (N, C, size, size) in [-1, 1].

    Images smaller than `size` by an even margin on both axes (MNIST: 28 -> 32) are padded
    with the background value -1 (uint8 0) equally on each side, so the digits keep their
    pixels. Other sizes are resized bilinearly (antialiased when shrinking).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"to_gan_range expects uint8 images, got dtype {images.dtype}")
    if images.dim() != 4:
        raise ValueError(
            f"to_gan_range expects (N, C, H, W) images, got shape {tuple(images.shape)}"
        )
    x = images.float() / 127.5 - 1.0
    h, w = x.shape[-2:]
    dh, dw = size - h, size - w
    if dh == 0 and dw == 0:
        return x
    if dh > 0 and dw > 0 and dh % 2 == 0 and dw % 2 == 0:
        return F.pad(x, (dw // 2, dw // 2, dh // 2, dh // 2), value=-1.0)
    if h != w:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x.clamp(-1.0, 1.0)
    return resize(x, size).clamp(-1.0, 1.0)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class FeatureNet(nn.Module):
    """A small CNN classifier whose activations define the perceptual distance and domain FID.

    Stages of conv-BN-ReLU at 32, 16, 8 and 4 px (one map per stage in `features`), global
    average pooling to the penultimate embedding (`embed`, `widths[-1]`-d), a linear classifier.

    Inputs are float images in [-1, 1]. Inputs of another size (a sub-generator's 8 or 16 px
    output) are first resized bilinearly to `image_size` inside the network, so images of every
    resolution are compared at one common size.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 128),
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("FeatureNet needs at least one stage width")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.widths, self.image_size = tuple(int(w) for w in widths), image_size
        stages, c_in = [], in_channels
        for i, width in enumerate(self.widths):
            # stage 0 keeps the full resolution; each later one halves it
            stages.append(_conv_bn_relu(c_in, width, stride=1 if i == 0 else 2))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(c_in, num_classes)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (saved with the weights)."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "widths": list(self.widths),
            "image_size": self.image_size,
        }

    def _prepare(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"FeatureNet expects (N, {self.in_channels}, H, W) images, got {tuple(x.shape)}"
            )
        return resize(x, self.image_size)

    def features(self, x: Tensor) -> list[Tensor]:
        """The activation map after each stage (post-ReLU), from 32 px down to 4 px."""
        x = self._prepare(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate embedding (N, widths[-1]): the globally pooled last stage."""
        return self.features(x)[-1].mean(dim=(2, 3))

    def statistics(self, x: Tensor) -> Tensor:
        """What domain FID compares (N, 2 * sum(widths)): the spatial mean and standard
        deviation of every channel of every stage. The early stages carry edges and strokes;
        with the penultimate embedding alone (class evidence), blurred blobs of the right
        shape score as well as sharp digits."""
        maps = self.features(x)
        return torch.cat([m.mean(dim=(2, 3)) for m in maps] + [m.std(dim=(2, 3)) for m in maps], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


# ----- training ----------------------------------------------------------------------------


@torch.no_grad()
def _accuracy(net: FeatureNet, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = net(images[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)


def train_feature_net(
    dataset: Dataset,
    epochs: int = 12,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    *,
    widths: tuple[int, ...] = (32, 64, 128, 128),
    image_size: int = 32,
    weight_decay: float = 5e-4,
    max_shift: int = 2,
    channels_last: bool = True,
) -> tuple[FeatureNet, dict[str, Any]]:
    """Train a `FeatureNet` on the train split; returns it (eval mode, frozen) and a summary.

    AdamW with linear warmup (a quarter of the steps) then cosine decay; random shifts as
    augmentation. Deterministic for a seed on CPU (the global
    RNG is left as it was). The summary holds the validation accuracy at full resolution
    (`val_accuracy`) and on images degraded to 16 and 8 px (`val_accuracy_16px`,
    `val_accuracy_8px`).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1 (got {epochs}, {batch_size})")
    train, val = dataset.train, dataset.val
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(dataset.in_channels, dataset.num_classes, widths, image_size)
    if channels_last:  # 1.5-2x faster conv steps on CPU
        net = net.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * steps_per_epoch
    scheduler = cosine_schedule(optimizer, warmup=math.ceil(0.25 * total_steps), total=total_steps)
    columns = (
        TextColumn("[bold]feature net[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("val acc {task.fields[acc]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    val_x = to_gan_range(val.images, image_size)
    loss_value, val_acc = float("nan"), float("nan")
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(
            "train", total=epochs * steps_per_epoch, epoch=f"1/{epochs}", loss=0.0, acc="-"
        )
        for epoch in range(epochs):
            net.train()
            bar.update(task, epoch=f"{epoch + 1}/{epochs}")
            order = torch.randperm(len(train), generator=generator)
            total, count = 0.0, 0
            for index in torch.split(order, batch_size):
                # random shifts only: blurred (down-up sampled) copies would teach the net to
                # ignore blur, and then neither FID nor the perceptual loss would see it
                x = to_gan_range(
                    random_shift(train.images[index], max_shift, generator), image_size
                )
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(net(x), train.labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total, count = total + loss.item() * len(index), count + len(index)
                bar.update(task, advance=1, loss=total / count)
            loss_value = total / count
            net.eval()
            if len(val):
                val_acc = _accuracy(net, val_x, val.labels)
            bar.update(task, acc=f"{val_acc:.4f}")
            log.info(
                "feature net epoch %d: loss %.4f, val acc %.4f", epoch + 1, loss_value, val_acc
            )
    optimizer.zero_grad(set_to_none=True)  # a frozen net carries no stale gradients
    net.eval().requires_grad_(False)
    summary: dict[str, Any] = {
        "val_accuracy": val_acc,
        "train_loss": loss_value,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train_images": len(train),
        "val_images": len(val),
        "seconds": round(time.perf_counter() - started, 2),
        "channels_last": channels_last,
    }
    for res in (image_size // 2, image_size // 4):
        if len(val) and res >= 4:
            summary[f"val_accuracy_{res}px"] = _accuracy(net, resize(val_x, res), val.labels)
    log.info(
        "feature net trained in %.1f s: val acc %.4f", summary["seconds"], summary["val_accuracy"]
    )
    return net, summary


# ----- files -------------------------------------------------------------------------------


def save_feature_net(net: FeatureNet, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write the net atomically: format tag, constructor config, weights and `meta`.

    `meta` must hold plain data (numbers, strings, lists, dicts): files are read back with
    `weights_only=True`.
    """
    channels_last = net.stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    save_atomic(
        {
            "format": FEATURE_NET_FORMAT,
            "config": net.config(),
            "channels_last": channels_last,
            "model": net.state_dict(),
            "meta": dict(meta),
        },
        Path(path),
    )


def load_feature_net(path: str | os.PathLike) -> tuple[FeatureNet, dict[str, Any]]:
    """A saved feature net, in eval mode with frozen weights, and its meta dict.

    Raises CheckpointError for a missing, corrupt or foreign file.
    """
    data = read_checkpoint(path, FEATURE_NET_FORMAT)
    try:
        net = FeatureNet(**data["config"])
        # the saved memory format is restored: conv results differ in the last bits otherwise
        if data.get("channels_last", False):
            net = net.to(memory_format=torch.channels_last)
        net.load_state_dict(data["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} holds an unusable feature net: {err}") from None
    return net.eval().requires_grad_(False), dict(data.get("meta", {}))


# ----- metrics -----------------------------------------------------------------------------


@contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    """Run with BN on its running statistics, then restore the caller's mode."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def _unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    # eps inside the root keeps the gradient finite at all-zero (dead ReLU) positions
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + eps)


def perceptual_distance(net: FeatureNet, a: Tensor, b: Tensor) -> Tensor:
    """LPIPS-style distance (N,) between image batches `a` and `b` (same shape, in [-1, 1]).

    For each stage map: unit-normalise the channel vector at each position, take the squared
    difference summed over channels (in [0, 4]) and averaged over positions; then sum over the
    stages. Zero for identical inputs, symmetric, differentiable in the inputs. The net is
    used frozen and in eval mode whatever its state: no gradient reaches its weights and its
    BN statistics do not change.
    """
    if a.shape != b.shape:
        raise ValueError(f"perceptual_distance needs equal shapes, got {a.shape} and {b.shape}")
    n = len(a)
    # detached copies of the weights: the net's own requires_grad flags are left untouched
    params = {f"net.{name}": p.detach() for name, p in net.named_parameters()}
    with _eval_mode(net):
        # both batches in one pass: half the kernel launches of two calls
        maps = torch.func.functional_call(_FeatureTap(net), params, (torch.cat([a, b]),))
    total = a.new_zeros(n)
    for fmap in maps:
        unit = _unit_channels(fmap)
        total = total + (unit[:n] - unit[n:]).pow(2).sum(dim=1).mean(dim=(1, 2))
    return total


class _FeatureTap(nn.Module):
    """`net.features` as a forward, so torch.func.functional_call can run it."""

    def __init__(self, net: FeatureNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.net.features(x)


def frechet_distance(feats_a: np.ndarray | Tensor, feats_b: np.ndarray | Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets.

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). The last trace is
    computed as the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2), which
    has the same eigenvalues as S_a S_b but is symmetric: two symmetric eigendecompositions,
    no complex round-off, and singular covariances (fewer samples than dimensions, dead
    units) need no special case.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in dimension: {a.shape[1]} and {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b
    trace_sqrt = _trace_sqrt_product(cov_a, cov_b)
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
    # round-off can leave a tiny negative for (nearly) identical sets
    return max(value, 0.0)


def _as_features(feats: np.ndarray | Tensor, name: str) -> np.ndarray:
    if isinstance(feats, Tensor):
        feats = feats.detach().cpu().numpy()
    array = np.asarray(feats, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]  # N scalars: one-dimensional features
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be an (N, D) array with N >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((cov_a @ cov_b)^(1/2)) for symmetric positive semi-definite matrices.

    On one BLAS thread: these matrices are a few hundred wide, and OpenBLAS's threads, on
    cores torch's own threads already hold, made one eigh of a 256-wide covariance take
    2.8 s here instead of 0.03 s."""
    with threadpool_limits(limits=1, user_api="blas"):
        values, vectors = np.linalg.eigh(cov_a)
        root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
        inner = root_a @ cov_b @ root_a
        eigen = np.linalg.eigvalsh((inner + inner.T) / 2)  # symmetric up to round-off
    return float(np.sqrt(np.clip(eigen, 0.0, None)).sum())


@torch.no_grad()
def image_statistics(net: FeatureNet, images: Tensor, batch_size: int = 500) -> np.ndarray:
    """`FeatureNet.statistics` (N, D) as float64, in eval mode and without gradients.

    Float images must be in [-1, 1]; uint8 images are converted with `to_gan_range` first.
    Computing a real set's embeddings once lets many fakes be compared against it with
    `frechet_distance`.
    """
    if images.dtype == torch.uint8:
        images = to_gan_range(images, net.image_size)
    chunks = []
    with _eval_mode(net):
        for start in range(0, len(images), batch_size):
            chunks.append(net.statistics(images[start : start + batch_size].float()).double())
    if not chunks:
        raise ValueError("image_statistics got no images")
    return torch.cat(chunks).numpy()


def domain_fid(
    net: FeatureNet, fake_images: Tensor, real_images: Tensor, batch_size: int = 500
) -> float:
    """Domain FID: the Fréchet distance of the feature net's statistics of two image sets.

    Measured in the in-project `FeatureNet`'s space, so values are only comparable with other
    domain FIDs from the same feature net file, never with Inception FID. Images of a lower
    resolution are resized to the net's size inside it, so they are judged as the images
    they become at that size (GanEvaluator compares every sub-generator so). Use at least a
    few hundred images per set: the estimate is biased upwards for small sets.
    """
    fake = image_statistics(net, fake_images, batch_size)
    real = image_statistics(net, real_images, batch_size)
    return frechet_distance(fake, real)
