"""A front drawn over every candidate of its search: quality against a cost metric.
matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.config import ACCURACY, NETWORK_METRICS
from nas.errors import QueryError
from nas.pareto.conditions import _device_metrics
from nas.pareto.queries import Front
from supernet.io import short_repr

PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # what the plot may be written as
DEFAULT_PLOT_SUFFIX = ".png"


def plot_file(path: str | Path) -> Path:
    """The file a plot goes to: `front` -> `front.png`; a suffix other than PLOT_SUFFIXES is
    refused (QueryError), so a caller can check it before computing anything."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + DEFAULT_PLOT_SUFFIX)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise QueryError(
            f"--plot {path}: cannot write a {path.suffix!r} file; use one of "
            f"{', '.join(PLOT_SUFFIXES)} (no suffix: {DEFAULT_PLOT_SUFFIX})"
        )
    return path


def plot(
    front: Front, path: str | Path, x_metric: str | None = None, everything: dict | None = None
) -> Path:
    """Quality against a cost metric: every candidate (`everything`, from `candidate_points`
    with the quality and x metrics; left out when None), feasible or not, and the front.
    Returns the path written (see `plot_file`: `front` becomes `front.png`)."""
    path = plot_file(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality, x_metric = plot_axes(front, x_metric)
    if everything is not None and x_metric not in everything["metrics"]:
        raise QueryError(f"the candidates' points have no {x_metric!r} column")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        _draw(ax, front, quality, x_metric, everything)
        fig.tight_layout()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120)
        except OSError as err:
            raise QueryError(f"cannot write the plot {path}: {err.strerror or err}") from None
    finally:  # a failed plot leaves no figure open in a long-lived server
        plt.close(fig)
    return path


def plot_axes(front: Front, x_metric: str | None) -> tuple[str, str]:
    """The plot's quality (y) and cost (x) metrics; QueryError for an x the search lacks."""
    quality = front.objectives[0].metric  # top1 for classifiers, fid for generators
    costs = [o.metric for o in front.objectives[1:]]
    x_metric = x_metric or (costs[0] if costs else None)
    if x_metric is None:
        raise QueryError("the plot needs a cost objective for its x axis")
    assert front.config is not None
    known = [o.metric for o in front.objectives] + [
        f"{device}.{name}"
        for device, metrics in _device_metrics(front.config).items()
        for name in metrics
        if name not in NETWORK_METRICS
    ]
    known = list(dict.fromkeys([*known, *NETWORK_METRICS]))
    if x_metric not in known:
        raise QueryError(
            f"unknown metric {short_repr(x_metric)} for the plot's x axis; "
            f"this search has: {', '.join(known)}"
        )
    return quality, x_metric


def _draw(ax: Any, front: Front, quality: str, x_metric: str, everything: dict | None) -> None:
    """The scatter of every candidate that has the x metric, and the front over it."""
    scale = 100.0 if quality == ACCURACY else 1.0
    if everything is not None:
        xs, ys = everything["metrics"][x_metric], everything["metrics"][quality]
        for feasible, style in (
            (False, {"color": "0.8", "label": "infeasible"}),
            (True, {"color": "tab:blue", "alpha": 0.4, "label": "feasible"}),
        ):
            group = [
                (x, scale * y)
                for x, y, f in zip(xs, ys, everything["feasible"], strict=True)
                if f == feasible and x is not None and y is not None
            ]
            if group:
                ax.scatter(*zip(*group, strict=True), s=8, **style)
    points = sorted(
        (c for c in front.front if x_metric in c.metrics), key=lambda c: c.metrics[x_metric]
    )
    # With more than two objectives the front is not a curve in this projection: no line.
    style = "o-" if len(front.objectives) == 2 else "o"
    ax.plot(
        [c.metrics[x_metric] for c in points],
        [scale * c.metrics[quality] for c in points],
        style,
        color="tab:red",
        markersize=4,
        label=f"front ({len(points)})",
    )
    ax.set_xlabel(x_metric)
    ax.set_ylabel("top-1 (%)" if quality == ACCURACY else quality)
    ax.set_title(f"search {front.search_id}: {quality} vs {x_metric}")
    ax.grid(alpha=0.3)
    ax.legend()
