"""Data-parallel supernet training: what a rank does differently from a lone process.

N ranks at a per-rank batch B train like one process at batch N x B. Every rank draws the
same data order and the same sandwich archs from the same seeded streams, builds the same
global batch of N x B images, and takes its own slice of it. What makes the step equal to
the single process's:
- BatchNorm normalises with the statistics of the whole global batch, summed across the
  ranks in the forward pass (and differentiated through that sum): `sync_batch_norm`.
- Each rank's losses are weighted by its share of the global batch, and the gradients of
  all the step's subnets are summed over the ranks once, just before the optimizer step:
  `all_reduce_gradients`.
It runs on any torch.distributed process group (gloo on CPU, NCCL on GPU); Ray Train makes
one in `nas.training`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's rank among `world` training processes (0 of 1 when alone).
    `grouped`: in a torch.distributed process group (Ray Train), even one of one. A grouped
    run computes the same way at every world size (synchronised BatchNorm, global-batch
    dropout masks), so 2 workers at B step like 1 worker at 2B; a lone process uses
    torch's own BatchNorm and dropout kernels, whose float rounding differs."""

    rank: int = 0
    world: int = 1
    grouped: bool = False

    @classmethod
    def current(cls) -> Ranks:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), grouped=True)
        return cls()

    @property
    def distributed(self) -> bool:
        return self.grouped

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes files, logs and shows progress."""
        return self.rank == 0

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's slice of a global batch (sizes differ by at most one)."""
        return batch.tensor_split(self.world)[self.rank]

    def shard_start(self, total: int) -> int:
        """Where this rank's slice of a global batch of `total` starts."""
        return sum(len(part) for part in torch.arange(total).tensor_split(self.world)[: self.rank])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's share of work split between the ranks: items[rank::world]."""
        return list(items[self.rank :: self.world])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), indexed by rank, on every rank."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_gradients(parameters: Iterable[Tensor]) -> None:
    """Sum each gradient over the ranks: one all-reduce of one flat buffer per optimizer
    step. Each rank's losses were weighted by its share of the global batch (`loss_scale`
    of sandwich_step), so the sum is the global batch's gradient, the part that flows
    through synchronised BatchNorm statistics included. Every rank trains the same
    subnets, so the same parameters have gradients on every rank."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def global_batch_dropout(x: Tensor, p: float, start: int, total: int) -> Tensor:
    """Dropout whose mask is drawn for the whole global batch of `total` (the same draw on
    every rank: they share the seeded torch generator) and sliced at `start`."""
    keep = torch.empty((total, *x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep[start : start + x.shape[0]] / (1 - p)


def sync_batch_norm(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    factor: float,
    eps: float,
) -> Tensor:
    """Training-mode BatchNorm over the global batch spread across the ranks (torch's
    SyncBatchNorm runs on GPUs only). Running statistics are updated as F.batch_norm
    updates them (unbiased variance)."""
    y, mean, var, n = _SyncBatchNorm.apply(x, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            running_var.mul_(1 - factor).add_(var * (n / max(n - 1, 1)), alpha=factor)
    return y


class _SyncBatchNorm(torch.autograd.Function):
    """Forward: the mean from all-reduced sums and counts, then the variance from
    all-reduced centred sums of squares (two passes, as F.batch_norm computes it).
    Backward: BatchNorm's closed form, whose two batch sums (of the gradient, and of the
    gradient times the normalised input) are all-reduced; differentiating through the
    forward's arithmetic instead loses digits on channels of near-zero variance. The
    weight's and bias's gradients stay local: they are summed with the others."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Any:
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        wide = x.double()  # F.batch_norm accumulates its statistics in double on CPU
        sums = torch.cat([wide.sum(dims), wide.new_tensor([x.numel() / channels])])
        dist.all_reduce(sums)
        n = float(sums[-1])
        mean = sums[:channels] / n
        centred = wide - mean.view(shape)
        var = (centred * centred).sum(dims)
        dist.all_reduce(var)
        var /= n
        invstd = torch.rsqrt(var + eps)
        normalised = (centred * invstd.view(shape)).to(x.dtype)
        mean, var, invstd = mean.to(x.dtype), var.to(x.dtype), invstd.to(x.dtype)
        ctx.save_for_backward(normalised, weight, invstd)
        ctx.n, ctx.dims, ctx.shape = n, dims, shape
        y = normalised * weight.view(shape) + bias.view(shape)
        return y, mean, var, n

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> Any:
        normalised, weight, invstd = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        grad_bias = grad.double().sum(dims)
        grad_weight = (grad.double() * normalised).sum(dims)
        totals = torch.cat([grad_bias, grad_weight])
        dist.all_reduce(totals)
        channels = grad_bias.numel()
        mean_grad = (totals[:channels] / ctx.n).to(grad.dtype).view(shape)
        mean_grad_normalised = (totals[channels:] / ctx.n).to(grad.dtype).view(shape)
        grad_bias, grad_weight = grad_bias.to(grad.dtype), grad_weight.to(grad.dtype)
        grad_x = (grad - mean_grad - normalised * mean_grad_normalised) * (weight * invstd).view(
            shape
        )
        return grad_x, grad_weight, grad_bias, None
