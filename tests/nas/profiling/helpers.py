"""Measurement rows made from a profile's own predictions: a device whose true speed is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import latency_models as lm
from nas import profiling

# classic CNNs of latency_models.families, named by timm
NETWORKS = (
    "efficientnet_b0",
    "lcnet_100",
    "mnasnet_100",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "regnetx_004",
    "regnety_008",
    "efficientnet_lite0",
    "fbnetc_100",
    "mobilenetv2_140",
    "regnetx_016",
)


def predicted_rows(
    hardware: str, networks: tuple[str, ...], scale: float, batch: int = 64, **options: str
) -> list[dict[str, Any]]:
    """One row per network: `hardware`'s predicted latency times `scale`."""
    model = lm.load_hardware(hardware)
    rows = []
    for network in networks:
        spec = lm.reference_spec(network, batch=batch)
        latency = model.predict(spec, **options)["latency_ms"]
        rows.append({"network": network, "batch": batch, **options, "latency_ms": scale * latency})
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    profiling.write_csv(path, rows, fields=list(rows[0]))
    return path
