"""A front as JSON and CSV text (the whole front's made once per front), and the columns of its
table."""

from __future__ import annotations

import csv
import io
import json

from latency_models.uncertainty import bound_keys
from nas.config import ACCURACY, NETWORK_METRICS, SearchConfig
from nas.pareto.pages import FrontPage, front_page
from nas.pareto.queries import CandidateRow, Front


def columns_of(front: Front, config: SearchConfig | None = None) -> list[str]:
    """Objectives first, then the limited metrics; with `config`, macs/params once and only
    the metrics a limit or objective names (the table, whose cells show each interval:
    `cell_text`); without, every metric, each followed by its bounds where it has them,
    "METRIC_low" and "METRIC_high" (CSV)."""
    metrics = [o.metric for o in front.objectives]
    every = sorted({k for c in front.front for k in c.metrics} - set(metrics))
    if config is None:
        bounded = {k for c in front.front for k in c.bounds}
        columns = [
            key
            for m in [*metrics, *every]
            for key in ([m, *bound_keys(m)] if m in bounded else [m])
        ]
        return ["candidate", "arch_id", *columns]
    limited = [f"{d}.{m}" for d, t in config.targets.items() for m in t.limits]
    shown = [m for m in limited if m not in metrics]
    network = [m for m in NETWORK_METRICS if m not in metrics]
    return ["candidate", "arch_id", *metrics, *shown, *network]


def to_json(front: Front, page: FrontPage | None = None) -> str:
    """The front as `nas pareto --json` prints it: `front` holds `page`'s rows (default:
    the whole front, in its order), `total` counts the whole front's."""
    if page is not None:
        return _json(front, page)
    if "json" not in front.rendered:
        front.rendered["json"] = _json(front, front_page(front))
    return front.rendered["json"]


def _json(front: Front, page: FrontPage) -> str:
    return json.dumps(
        {
            "search": front.search_id,
            "objectives": [o.model_dump() for o in front.objectives],
            "where": [str(c) for c in front.conditions],
            "total": page.total,
            "offset": page.offset,
            "sort": page.sort,
            "order": page.order,
            "front": [c.to_dict() for c in page.rows],
        }
    )


def to_csv(front: Front, page: FrontPage | None = None) -> str:
    """A row per candidate of `page` (default: the whole front), every metric a column."""
    if page is not None:
        return _csv(front, page.rows)
    if "csv" not in front.rendered:
        front.rendered["csv"] = _csv(front, front.front)
    return front.rendered["csv"]


def _csv(front: Front, rows: list[CandidateRow]) -> str:
    buffer = io.StringIO()
    cols = columns_of(front)
    writer = csv.writer(buffer)
    writer.writerow([*cols, "coverage", "top1_measured", "arch"])
    for c in rows:
        row = c.to_dict()
        for metric, (low, high) in c.bounds.items():
            row.update(zip(bound_keys(metric), (low, high), strict=True))
        coverage = row["coverage"]
        writer.writerow(
            [row.get(k) for k in cols] + [coverage, c.top1_measured, json.dumps(c.arch)]
        )
    return buffer.getvalue()


def cell_text(c: CandidateRow, col: str) -> str:
    """A table's cell: the value (top1 as a percentage) and, where the metric has bounds,
    its interval: `1.93 [1.71, 2.2]`."""
    value = c.to_dict().get(col) if col not in c.metrics else c.metrics[col]
    if value is None:
        return "-"
    if not isinstance(value, float):
        return str(value)
    text = _number(col, value)
    if col in c.bounds:
        low, high = c.bounds[col]
        text += f" [{_number(col, low)}, {_number(col, high)}]"
    return text


def _number(col: str, value: float) -> str:
    return f"{value:.2%}" if col == ACCURACY else f"{value:.4g}"
