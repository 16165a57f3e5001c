"""What a search driver tracks: limits and their violations, counts and best values, and the
outcome it reports. Plain data, rebuilt from SQL when a search resumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.config import Limit, Objective, limits_of  # noqa: F401 - limits_of re-exported
from nas.store.status import (  # noqa: F401 - the search's statuses, re-exported
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    INFEASIBLE,
    RUNNING,
)

Metrics = dict[str, float]


def violations(metrics: Metrics, limits: Sequence[Limit]) -> list[float]:
    """Relative excess over each limit, (value - limit) / limit, of the value the limit
    checks (its upper bound where it asks for confidence): feasible when <= 0."""
    return [(lim.value_of(metrics) - lim.value) / lim.value for lim in limits]


@dataclass
class Outcome:
    search_id: int
    status: str
    message: str
    generations_done: int
    generations_total: int
    candidates: int
    evaluations: int
    feasible: int
    best: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SearchState:
    """Counts and best values between generations."""

    limits: list[Limit]
    objectives: list[Objective]
    cache: dict[str, Metrics] = field(default_factory=dict)  # arch id -> metrics
    candidates: int = 0
    feasible: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_seen: dict[str, float] = field(default_factory=dict)  # limit metrics, feasible or not
    seconds: float = 0.0

    def account(self, metrics: Metrics) -> None:
        """Count one candidate, and keep the best values (feasible ones for objectives)."""
        feasible = all(v <= 0 for v in violations(metrics, self.limits))
        self.candidates += 1
        for lim in self.limits:
            seen = self.best_seen.get(lim.metric)
            value = lim.value_of(metrics)
            self.best_seen[lim.metric] = value if seen is None else min(seen, value)
        if not feasible:
            return
        self.feasible += 1
        for o in self.objectives:
            value, best = metrics[o.metric], self.best.get(o.metric)
            better = best is None or (value > best if o.goal == "maximize" else value < best)
            if better:
                self.best[o.metric] = value

    def infeasible_message(self) -> str:
        ratios = {lim.metric: self.best_seen[lim.metric] / lim.value for lim in self.limits}
        tightest = max(ratios, key=ratios.get)
        limit = next(lim for lim in self.limits if lim.metric == tightest)
        return (
            f"infeasible: no candidate met every limit in {self.candidates} candidates; "
            f"tightest limit {limit.checked} <= {limit.value:.4g}, best value seen "
            f"{self.best_seen[tightest]:.4g} ({ratios[tightest]:.2f}x the limit)"
        )

    def summary(self) -> str:
        best = ", ".join(f"{k} {v:.4g}" for k, v in self.best.items())
        return f"completed: {self.feasible} of {self.candidates} candidates feasible; best {best}"
