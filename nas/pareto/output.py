"""A front as JSON and CSV text (each made once per front), and the columns of its table."""

from __future__ import annotations

import csv
import io
import json

from nas.config import NETWORK_METRICS, SearchConfig
from nas.pareto.queries import Front


def columns_of(front: Front, config: SearchConfig | None = None) -> list[str]:
    """Objectives first, then the limited metrics; with `config`, macs/params once and only
    the metrics a limit or objective names (the table); without, every metric (CSV)."""
    metrics = [o.metric for o in front.objectives]
    every = sorted({k for c in front.front for k in c.metrics} - set(metrics))
    if config is None:
        return ["candidate", "arch_id", *metrics, *every]
    limited = [f"{d}.{m}" for d, t in config.targets.items() for m in t.limits]
    shown = [m for m in limited if m not in metrics]
    network = [m for m in NETWORK_METRICS if m not in metrics]
    return ["candidate", "arch_id", *metrics, *shown, *network]


def to_json(front: Front) -> str:
    if "json" not in front.rendered:
        front.rendered["json"] = json.dumps(
            {
                "search": front.search_id,
                "objectives": [o.model_dump() for o in front.objectives],
                "where": [str(c) for c in front.conditions],
                "front": [c.to_dict() for c in front.front],
            }
        )
    return front.rendered["json"]


def to_csv(front: Front) -> str:
    if "csv" not in front.rendered:
        buffer = io.StringIO()
        cols = columns_of(front)
        writer = csv.writer(buffer)
        writer.writerow([*cols, "top1_measured", "arch"])
        for c in front.front:
            row = c.to_dict()
            writer.writerow([row.get(k) for k in cols] + [c.top1_measured, json.dumps(c.arch)])
        front.rendered["csv"] = buffer.getvalue()
    return front.rendered["csv"]
