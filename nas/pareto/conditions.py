"""`--where` filters (`peak_sram_kb<=256`, `stm32f746.latency_ms<500`) and the resolution of
a metric name against a search's devices."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

from latency_models.uncertainty import BOUND_SUFFIXES
from nas.config import ACCURACY, NETWORK_METRICS, SearchConfig, limits_of
from nas.errors import QueryError
from supernet.family import quality_metric_names

# metrics of the network itself (stored without a device): quality, macs, params
NETWORK_LEVEL = quality_metric_names() | set(NETWORK_METRICS)
OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass
class Condition:
    metric: str  # device.metric or top1
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_conditions(
    texts: Sequence[str], config: SearchConfig, target: str | None
) -> list[Condition]:
    """'peak_sram_kb<=256' (device taken from --target, or the only device that has it)."""
    conditions = []
    for text in texts:
        match = _CONDITION.match(text)
        if not match:
            raise QueryError(
                f"cannot read filter {text!r}; write METRIC<=VALUE (or <, >=, >), e.g. "
                "'peak_sram_kb<=256' or 'stm32f746.latency_ms<500'"
            )
        name, op, text_value = match.groups()
        try:
            value = float(text_value)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise QueryError(
                f"filter {text!r}: {text_value!r} is not a number; write METRIC<=VALUE, e.g. "
                "'peak_sram_kb<=256'"
            )
        conditions.append(Condition(_resolve_metric(name, config, target), op, value))
    return conditions


def beyond_limits(conditions: Sequence[Condition], config: SearchConfig) -> list[Condition]:
    """The conditions a feasible candidate can fail, each once. A front holds feasible
    candidates only, and a feasible one meets every limit of its search on the value that
    limit checks (`m <= limit`, a limit > 0; `m_high <= limit` for a limit with confidence):
    so `m<=v` with v >= that limit, or `m<v` with v > it, filters nothing and is dropped.
    The web page sends the search's own limits as conditions; dropped, its front is the
    plain one, which a server keeps (`FrontCache`)."""
    limits = {
        lim.checked: lim.value
        for lim in limits_of(config)
        if lim.value > 0  # a limit is > 0 (checked at launch): never assume more than that
    }
    kept: list[Condition] = []
    for cond in conditions:
        limit = limits.get(cond.metric)
        implied = limit is not None and (
            (cond.op == "<=" and cond.value >= limit) or (cond.op == "<" and cond.value > limit)
        )
        if not implied and cond not in kept:
            kept.append(cond)
    return kept


def check_target(config: SearchConfig, target: str | None) -> None:
    """A `--target` must be one of the search's devices."""
    if target is not None and target not in config.targets:
        raise QueryError(f"search has no target {target!r}; targets: {list(config.targets)}")


def _device_metrics(config: SearchConfig) -> dict[str, tuple[str, ...]]:
    import latency_models as lm

    return {device: lm.load_hardware(device).metrics for device in config.targets}


def _resolve_metric(name: str, config: SearchConfig, target: str | None) -> str:
    """The stored name of a metric as a user writes it: `latency_ms`, `h100-sxm.latency_ms`,
    or a bound of one, `latency_ms_high` (stored where the device states its residuals)."""
    if name in NETWORK_LEVEL:
        return name
    for suffix in BOUND_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name:
            if base in NETWORK_METRICS:
                raise QueryError(f"{base} is exact: it has no {suffix.lstrip('_')} bound")
            return _resolve_metric(base, config, target) + suffix
    devices = _device_metrics(config)
    device, _, metric = name.rpartition(".")  # a device may be a profile path with dots
    if device in devices:
        if metric in devices[device]:
            return name
        raise QueryError(
            f"device {device} has no metric {metric!r}; it has {list(devices[device])}"
        )
    if target is not None:
        check_target(config, target)
        if name in devices[target]:
            return f"{target}.{name}"
        raise QueryError(f"device {target} has no metric {name!r}; it has {list(devices[target])}")
    owners = [d for d, metrics in devices.items() if name in metrics]
    if len(owners) == 1:
        return f"{owners[0]}.{name}"
    if not owners:
        known = sorted({m for metrics in devices.values() for m in metrics} | {ACCURACY})
        known = [m for m in known if m not in NETWORK_METRICS] + list(NETWORK_METRICS)
        raise QueryError(f"no device of this search reports {name!r}; metrics: {known}")
    raise QueryError(f"{name!r} is reported by {owners}; write DEVICE.{name} or pass --target")
