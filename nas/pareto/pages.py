"""A front sorted and cut to one page, for a table that shows a large front a page at a time
(the web page's, GET /searches/{id}/pareto?sort=...&offset=...&limit=...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.errors import QueryError
from nas.pareto.conditions import _resolve_metric
from nas.pareto.queries import CandidateRow, Front

# a row's own fields a front may be sorted by, besides its metrics
ROW_FIELDS = {
    "candidate": lambda c: c.trial,
    "generation": lambda c: c.generation,
    "arch_id": lambda c: c.arch_id,
}
ORDERS = ("asc", "desc")


@dataclass
class FrontPage:
    rows: list[CandidateRow]
    total: int  # rows on the whole front
    offset: int
    sort: str | None  # the metric (resolved: "device.metric") or row field; None: front order
    order: str | None


def front_page(
    front: Front,
    sort: str | None = None,
    order: str | None = None,
    offset: int = 0,
    limit: int | None = None,
    target: str | None = None,
) -> FrontPage:
    """Rows `offset` to `offset + limit` of `front`, sorted by `sort` (a metric, named as in
    a `--where` filter, or candidate, generation, arch_id) in `order`: by default best first
    for an objective, ascending otherwise. Rows that lack the metric come last; ties keep
    the front's order (best quality first), which is also the order without `sort`."""
    if order is not None and order not in ORDERS:
        raise QueryError(f"order must be asc or desc, not {order!r}")
    if offset < 0:
        raise QueryError(f"offset must be >= 0, not {offset}")
    if limit is not None and limit < 1:
        raise QueryError(f"limit must be >= 1, not {limit}")
    rows = front.front
    if sort is not None:
        sort, value = _sort_key(front, sort, target)
        goals = {o.metric: o.goal for o in front.objectives}
        order = order or ("desc" if goals.get(sort) == "maximize" else "asc")
        present = [c for c in rows if value(c) is not None]
        missing = [c for c in rows if value(c) is None]
        rows = sorted(present, key=value, reverse=order == "desc") + missing
    end = None if limit is None else offset + limit
    return FrontPage(rows[offset:end], len(front.front), offset, sort, order)


def _sort_key(front: Front, sort: str, target: str | None) -> tuple[str, Any]:
    """The resolved name to sort by, and a row's value of it (None where it has none)."""
    if sort in ROW_FIELDS:
        return sort, ROW_FIELDS[sort]
    if front.config is None:
        raise QueryError(f"cannot sort by {sort!r}: the front has no search config")
    try:
        metric = _resolve_metric(sort, front.config, target)
    except QueryError as err:
        fields = ", ".join(ROW_FIELDS)
        raise QueryError(f"cannot sort the front by {sort!r}: {err} (or by {fields})") from None
    return metric, lambda c: c.value(metric)
