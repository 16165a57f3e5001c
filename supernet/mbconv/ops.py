"""Elastic layers: weight sharing by slicing, as in once-for-all.

Every elastic layer has one small interface:
- its active setting, as attributes (`active_out`, `active_kernel`); input channels are
  read from the input tensor;
- `extract(...)`, which returns a plain torch module holding copies of the active weights;
- `config` and `from_config`, a JSON round-trip of its constructor arguments.
At the largest setting no slice is copied, so the supernet runs as fast as a static net.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supernet.distributed import global_batch_dropout, sync_batch_norm
from supernet.mbconv.space import mid_channels, se_channels

# The torch modules of the activations these blocks use: a subset of the names a NetworkSpec
# knows (latency_models.ACTIVATIONS), so every block can be costed.
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "h_swish": nn.Hardswish,
    "h_sigmoid": nn.Hardsigmoid,
}


def build_activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    try:
        return ACTIVATION_MODULES[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; allowed: {sorted(ACTIVATION_MODULES)}"
        ) from None


class ElasticConv2d(nn.Module):
    """A dense convolution with elastic input and output channels."""

    def __init__(
        self,
        max_in_channels: int,
        max_out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.max_in_channels, self.max_out_channels = max_in_channels, max_out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.weight = nn.Parameter(
            torch.empty(max_out_channels, max_in_channels, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(max_out_channels)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.active_out = max_out_channels

    def active_weight(self, in_channels: int, out_channels: int) -> Tensor:
        if (out_channels, in_channels) == (self.max_out_channels, self.max_in_channels):
            return self.weight
        return self.weight[:out_channels, :in_channels].contiguous()

    def active_bias(self, out_channels: int) -> Tensor | None:
        if self.bias is None or out_channels == self.max_out_channels:
            return self.bias
        return self.bias[:out_channels]

    def active(self, in_channels: int) -> tuple[Tensor, Tensor | None, dict[str, int]]:
        """The active weight, bias and F.conv2d settings for an input of `in_channels`."""
        weight = self.active_weight(in_channels, self.active_out)
        settings = {"stride": self.stride, "padding": self.kernel_size // 2, "groups": 1}
        return weight, self.active_bias(self.active_out), settings

    def forward(self, x: Tensor) -> Tensor:
        weight, bias, settings = self.active(x.shape[1])
        return F.conv2d(x, weight, bias, **settings)

    def extract(self, in_channels: int) -> nn.Conv2d:
        out = self.active_out
        conv = nn.Conv2d(
            in_channels,
            out,
            self.kernel_size,
            self.stride,
            self.kernel_size // 2,
            bias=self.bias is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(self.active_weight(in_channels, out))
            if self.bias is not None:
                conv.bias.copy_(self.active_bias(out))
        return conv

    @property
    def config(self) -> dict[str, Any]:
        return {
            "max_in_channels": self.max_in_channels,
            "max_out_channels": self.max_out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "bias": self.bias is not None,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElasticConv2d:
        return cls(**config)

    def permute_out(self, order: Tensor) -> None:
        self.weight.data = self.weight.data[order]
        if self.bias is not None:
            self.bias.data = self.bias.data[order]

    def permute_in(self, order: Tensor) -> None:
        self.weight.data = self.weight.data[:, order]


class ElasticDepthwiseConv2d(nn.Module):
    """A depthwise convolution with elastic channels and elastic kernel size.

    once-for-all's kernel transformation: a smaller kernel is the centre crop of the next
    larger one (7 -> 5 -> 3), passed through a learned per-layer linear map of the
    flattened k*k taps, initialised to the identity. The map is applied as
    `F.linear(taps, M)`, i.e. taps @ M.T, which is how once-for-all stores it.
    """

    def __init__(self, max_channels: int, kernel_sizes: Sequence[int], stride: int = 1) -> None:
        super().__init__()
        self.max_channels, self.stride = max_channels, stride
        self.kernel_sizes = sorted(set(kernel_sizes))
        self.max_kernel = self.kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        for small, large in itertools.pairwise(self.kernel_sizes):
            self.register_parameter(
                self.transform_name(large, small), nn.Parameter(torch.eye(small * small))
            )
        self.active_kernel = self.max_kernel

    @staticmethod
    def transform_name(large: int, small: int) -> str:
        return f"transform_{large}to{small}"

    def active_weight(self, channels: int, kernel: int) -> Tensor:
        if channels == self.max_channels and kernel == self.max_kernel:
            return self.weight  # as stored, so a channels_last weight stays channels_last
        weight = self.weight if channels == self.max_channels else self.weight[:channels]
        size = self.max_kernel
        for small in reversed(self.kernel_sizes[:-1]):
            if size <= kernel:
                break
            start = (size - small) // 2
            crop = weight[:, :, start : start + small, start : start + small]
            matrix = getattr(self, self.transform_name(size, small))
            weight = F.linear(crop.reshape(-1, small * small), matrix)
            weight = weight.view(channels, 1, small, small)
            size = small
        if size != kernel:
            raise ValueError(f"kernel size {kernel} not in {self.kernel_sizes}")
        return weight.contiguous()

    def active(self, in_channels: int) -> tuple[Tensor, Tensor | None, dict[str, int]]:
        """The active weight, bias and F.conv2d settings for an input of `in_channels`."""
        kernel = self.active_kernel
        weight = self.active_weight(in_channels, kernel)
        return weight, None, {"stride": self.stride, "padding": kernel // 2, "groups": in_channels}

    def forward(self, x: Tensor) -> Tensor:
        weight, bias, settings = self.active(x.shape[1])
        return F.conv2d(x, weight, bias, **settings)

    def extract(self, channels: int) -> nn.Conv2d:
        kernel = self.active_kernel
        conv = nn.Conv2d(
            channels, channels, kernel, self.stride, kernel // 2, groups=channels, bias=False
        )
        with torch.no_grad():
            conv.weight.copy_(self.active_weight(channels, kernel))
        return conv

    @property
    def config(self) -> dict[str, Any]:
        return {
            "max_channels": self.max_channels,
            "kernel_sizes": list(self.kernel_sizes),
            "stride": self.stride,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElasticDepthwiseConv2d:
        return cls(**config)

    def permute_out(self, order: Tensor) -> None:
        self.weight.data = self.weight.data[order]  # transforms are shared by all channels


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels; running statistics are updated in place.
    `synced` (set by data-parallel training on every rank) makes training-mode statistics
    those of the global batch across the ranks (supernet.distributed.sync_batch_norm)."""

    synced = False

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        if channels == self.num_features and not (self.synced and self.training):
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum
            factor = 1.0 / float(self.num_batches_tracked) if momentum is None else momentum
        if self.synced and self.training:
            return sync_batch_norm(
                x,
                self.weight[:channels],
                self.bias[:channels],
                self.running_mean[:channels] if self.running_mean is not None else None,
                self.running_var[:channels] if self.running_var is not None else None,
                factor,
                self.eps,
            )
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:channels] if self.running_mean is not None else None,
            self.running_var[:channels] if self.running_var is not None else None,
            self.weight[:channels],
            self.bias[:channels],
            use_batch_stats,
            factor,
            self.eps,
        )

    def extract(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn

    @property
    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElasticBatchNorm2d:
        return cls(**config)

    def permute(self, order: Tensor) -> None:
        for tensor in (self.weight, self.bias, self.running_mean, self.running_var):
            tensor.data = tensor.data[order]


class ElasticLinear(nn.Module):
    """A linear classifier with elastic input features. `batch_shard` (start, total), set
    by data-parallel training for each step, draws the dropout mask for the global batch
    and takes this rank's rows (supernet.distributed.global_batch_dropout)."""

    batch_shard: tuple[int, int] | None = None

    def __init__(self, max_in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.max_in_features, self.out_features, self.dropout_rate = (
            max_in_features,
            out_features,
            dropout,
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(max_in_features, out_features)

    def active_weight(self, in_features: int) -> Tensor:
        if in_features == self.max_in_features:
            return self.linear.weight
        return self.linear.weight[:, :in_features].contiguous()

    def forward(self, x: Tensor) -> Tensor:
        # the dropout module's own mode: BN recalibration trains with dropout kept off
        if self.batch_shard is not None and self.dropout.training and self.dropout_rate > 0:
            x = global_batch_dropout(x, self.dropout_rate, *self.batch_shard)
        else:
            x = self.dropout(x)
        return F.linear(x, self.active_weight(x.shape[1]), self.linear.bias)

    def extract(self, in_features: int) -> nn.Sequential:
        linear = nn.Linear(in_features, self.out_features)
        with torch.no_grad():
            linear.weight.copy_(self.active_weight(in_features))
            linear.bias.copy_(self.linear.bias)
        dropout = nn.Dropout(self.dropout_rate) if self.dropout_rate > 0 else nn.Identity()
        return nn.Sequential(dropout, linear)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "max_in_features": self.max_in_features,
            "out_features": self.out_features,
            "dropout": self.dropout_rate,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElasticLinear:
        return cls(**config)


class ConvBNAct(nn.Module):
    """An elastic convolution, an optional elastic BatchNorm and an optional activation."""

    def __init__(
        self,
        conv: ElasticConv2d | ElasticDepthwiseConv2d,
        bn: ElasticBatchNorm2d | None,
        act: str | None,
    ) -> None:
        super().__init__()
        self.conv, self.bn, self.act_name = conv, bn, act
        self.act = build_activation(act)
        # in eval mode, fold BatchNorm into the convolution (SupernetEvaluator can turn it off)
        self.fold = bn is not None and bn.track_running_stats

    def forward(self, x: Tensor) -> Tensor:
        if self.fold and self.bn is not None and not self.training:
            x = self._folded(x)  # evaluation: BatchNorm folded into the convolution
        else:
            x = self.conv(x)
            if self.bn is not None:
                x = self.bn(x)
        return x if self.act is None else self.act(x)

    def _folded(self, x: Tensor) -> Tensor:
        """conv then BatchNorm with its running statistics, as one convolution: weight x s
        and bias x s + (beta - mean x s), s = gamma / sqrt(var + eps) per output channel.
        A pass over every activation less per layer; the same result up to rounding."""
        assert self.bn is not None
        weight, bias, settings = self.conv.active(x.shape[1])
        c = weight.shape[0]
        bn = self.bn
        assert bn.running_mean is not None and bn.running_var is not None
        scale = bn.weight[:c] * torch.rsqrt(bn.running_var[:c] + bn.eps)
        shift = bn.bias[:c] - bn.running_mean[:c] * scale
        if bias is not None:
            shift = shift + bias * scale
        weight = weight * scale.view(-1, 1, 1, 1)
        return F.conv2d(x, weight, shift, **settings)

    def extract(self, in_channels: int) -> nn.Sequential:
        conv = self.conv.extract(in_channels)
        layers: list[nn.Module] = [conv]
        if self.bn is not None:
            layers.append(self.bn.extract(conv.out_channels))
        if self.act is not None:
            layers.append(build_activation(self.act_name))
        return nn.Sequential(*layers)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "conv": {"type": type(self.conv).__name__, **self.conv.config},
            "bn": None if self.bn is None else self.bn.config,
            "act": self.act_name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConvBNAct:
        conv_config = dict(config["conv"])
        conv_type = {c.__name__: c for c in (ElasticConv2d, ElasticDepthwiseConv2d)}[
            conv_config.pop("type")
        ]
        bn = None if config["bn"] is None else ElasticBatchNorm2d.from_config(config["bn"])
        return cls(conv_type.from_config(conv_config), bn, config["act"])


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excitation: x * h_sigmoid(expand(relu(reduce(mean(x)))))."""

    def __init__(self, reduce: nn.Conv2d, expand: nn.Conv2d) -> None:
        super().__init__()
        self.reduce, self.act, self.expand, self.gate = reduce, nn.ReLU(), expand, nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class ElasticSE(nn.Module):
    """Squeeze-and-excitation whose channels follow its input; bottleneck = C/4 rounded to 8."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.max_channels = max_channels
        mid = se_channels(max_channels)
        self.reduce = ElasticConv2d(max_channels, mid, 1, bias=True)
        self.expand = ElasticConv2d(mid, max_channels, 1, bias=True)
        self.act, self.gate = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        self.reduce.active_out, self.expand.active_out = se_channels(channels), channels
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))

    def extract(self, channels: int) -> SqueezeExcite:
        self.reduce.active_out, self.expand.active_out = se_channels(channels), channels
        return SqueezeExcite(
            self.reduce.extract(channels), self.expand.extract(se_channels(channels))
        )

    @property
    def config(self) -> dict[str, Any]:
        return {"max_channels": self.max_channels}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElasticSE:
        return cls(**config)


class MBConvBlock(nn.Module):
    """Static inverted-residual block: [expand 1x1] -> depthwise -> [SE] -> project 1x1."""

    def __init__(
        self,
        expand: nn.Module,
        depthwise: nn.Module,
        se: nn.Module,
        project: nn.Module,
        residual: bool,
    ) -> None:
        super().__init__()
        self.expand, self.depthwise, self.se, self.project = expand, depthwise, se, project
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class ElasticMBConvBlock(nn.Module):
    """Inverted-residual block with elastic kernel, expand ratio and output width.

    Middle channels = make_divisible(round(in_channels * expand), 8), in_channels being the
    active input width, exactly as once-for-all computes them.
    """

    def __init__(
        self,
        max_in_channels: int,
        max_out_channels: int,
        kernel_sizes: Sequence[int],
        expand_ratios: Sequence[int],
        stride: int,
        act: str,
        se: bool,
        residual: bool,
    ) -> None:
        super().__init__()
        self.max_in_channels, self.max_out_channels = max_in_channels, max_out_channels
        self.kernel_sizes, self.expand_ratios = sorted(kernel_sizes), sorted(expand_ratios)
        self.stride, self.act_name, self.use_se, self.residual = stride, act, se, residual
        max_mid = mid_channels(max_in_channels, max(expand_ratios))
        self.max_mid_channels = max_mid
        self.expand = (
            None
            if max(expand_ratios) == 1
            else ConvBNAct(
                ElasticConv2d(max_in_channels, max_mid), ElasticBatchNorm2d(max_mid), act
            )
        )
        self.depthwise = ConvBNAct(
            ElasticDepthwiseConv2d(max_mid, kernel_sizes, stride), ElasticBatchNorm2d(max_mid), act
        )
        self.se = ElasticSE(max_mid) if se else None
        self.project = ConvBNAct(
            ElasticConv2d(max_mid, max_out_channels), ElasticBatchNorm2d(max_out_channels), None
        )
        self.active_kernel = max(kernel_sizes)
        self.active_expand = max(expand_ratios)
        self.active_out = max_out_channels

    def middle_channels(self, in_channels: int) -> int:
        return in_channels if self.expand is None else mid_channels(in_channels, self.active_expand)

    def _apply_active(self, in_channels: int) -> None:
        if self.expand is not None:
            self.expand.conv.active_out = self.middle_channels(in_channels)
        self.depthwise.conv.active_kernel = self.active_kernel
        self.project.conv.active_out = self.active_out

    def forward(self, x: Tensor) -> Tensor:
        self._apply_active(x.shape[1])
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y

    def extract(self, in_channels: int) -> MBConvBlock:
        self._apply_active(in_channels)
        mid = self.middle_channels(in_channels)
        return MBConvBlock(
            nn.Identity() if self.expand is None else self.expand.extract(in_channels),
            self.depthwise.extract(mid),
            nn.Identity() if self.se is None else self.se.extract(mid),
            self.project.extract(mid),
            self.residual,
        )

    @property
    def config(self) -> dict[str, Any]:
        return {
            "max_in_channels": self.max_in_channels,
            "max_out_channels": self.max_out_channels,
            "kernel_sizes": list(self.kernel_sizes),
            "expand_ratios": list(self.expand_ratios),
            "stride": self.stride,
            "act": self.act_name,
            "se": self.use_se,
            "residual": self.residual,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ElasticMBConvBlock:
        return cls(**config)

    @torch.no_grad()
    def sort_middle_channels(self, keep_boundaries: Sequence[int] = ()) -> Tensor:
        """Reorder middle channels by importance, largest first; the function is unchanged.

        Importance is the L1 norm of the projection weights that read a channel. Channels are
        sorted only within the segments cut at `keep_boundaries`, so a prefix that smaller
        expand ratios already trained on keeps its channels. Returns the order applied.
        """
        if self.expand is None:
            # The middle channels are the block's input: reordering them would change the
            # layer before, so a block without expansion keeps its order.
            return torch.arange(self.max_mid_channels)
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        cuts = sorted({0, self.max_mid_channels, *(b for b in keep_boundaries if b > 0)})
        cuts = [c for c in cuts if c <= self.max_mid_channels]
        order = torch.cat(
            [
                lo + torch.argsort(importance[lo:hi], descending=True, stable=True)
                for lo, hi in itertools.pairwise(cuts)
            ]
        )
        self.project.conv.permute_in(order)
        self.depthwise.conv.permute_out(order)
        self.depthwise.bn.permute(order)
        self.expand.conv.permute_out(order)
        self.expand.bn.permute(order)
        if self.se is not None:
            self.se.reduce.permute_in(order)
            self.se.expand.permute_out(order)
            se_importance = self.se.expand.weight.abs().sum(dim=(0, 2, 3))
            se_order = torch.argsort(se_importance, descending=True, stable=True)
            self.se.expand.permute_in(se_order)
            self.se.reduce.permute_out(se_order)
        return order
