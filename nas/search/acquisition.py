"""What an active search (nas.search.active) decides with: a space-filling sample, a
predictor ensemble with an uncertainty, the hypervolume of a front, and the greedy choice of a
batch by optimistic hypervolume improvement.

Every objective vector here is in minimization form: a maximized objective is negated
(`signs`), so that "smaller is better" holds on every axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from latency_models.trees import ensemble_of, fit_gbdt

# The predictor ensemble: ENSEMBLE_SIZE gradient-boosted tree models, each fitted on a
# bootstrap resample of the measured archs; their spread is the uncertainty.
ENSEMBLE_SIZE = 5
ENSEMBLE_TREES = 150
ENSEMBLE_DEPTH = 3
ENSEMBLE_LEARNING_RATE = 0.1
# The optimistic value of a predicted quality: mean + OPTIMISM * std (towards better).
OPTIMISM = 1.0
# The reference point lies this fraction of the initial sample's range beyond its worst
# value on each axis, so that the initial sample's extreme points count in the hypervolume.
REFERENCE_MARGIN = 0.1
# The greedy choice scores at most this many candidates per pick (the best non-dominated
# layers of the optimistic values), POOL_PER_PICK per batch member.
POOL_PER_PICK = 4
MAX_POOL = 400


def stratified_genes(
    genes: Sequence[tuple[str, Sequence[Any]]], n: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """`n` gene assignments in which each choice of each gene appears about equally often
    (n // choices or one more times), the genes paired at random (a Latin-hypercube-like
    sample of a categorical space)."""
    columns = {}
    for name, choices in genes:
        order = rng.permutation(len(choices))  # which choices get the surplus: random
        columns[name] = rng.permutation(np.resize(order, n))
    return [{name: choices[int(columns[name][k])] for name, choices in genes} for k in range(n)]


class Ensemble:
    """K gradient-boosted tree models (latency_models.trees.fit_gbdt) on bootstrap resamples:
    `predict(x)` -> (mean, std) over the members."""

    def __init__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        self.members = []
        for _ in range(ENSEMBLE_SIZE):
            rows = rng.integers(len(x), size=len(x))
            exported = fit_gbdt(
                x[rows],
                y[rows],
                ENSEMBLE_TREES,
                ENSEMBLE_DEPTH,
                ENSEMBLE_LEARNING_RATE,
                int(rng.integers(2**31 - 1)),
            )
            self.members.append(ensemble_of(exported, x.shape[1]))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        predictions = np.stack([m.predict(x) for m in self.members])
        return predictions.mean(axis=0), predictions.std(axis=0)


def non_dominated(points: np.ndarray) -> np.ndarray:
    """A mask of the points no other point dominates (minimization on every axis)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    le = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    lt = (points[:, None, :] < points[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)  # [i, j]: i dominates j
    return ~dominated


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume that `points` dominate up to `reference` (minimization); points not better
    than the reference on every axis add nothing."""
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    points = points[(points < reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    if len(reference) == 1:
        return float(reference[0] - points[:, 0].min())
    # Optuna's own (WFG / a sort in 2-D); private in Optuna 5.0, which requirements pin
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points[non_dominated(points)], reference))


def reference_point(initial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference point and the scale of each axis, both from the initial sample (round 0,
    stored, so a resumed search finds the same): REFERENCE_MARGIN of its range beyond its
    worst value; the scale is the distance from its best value to the reference, so that
    the reported hypervolume is in units of the initial sample's box (comparable between
    rounds and searches on the same space)."""
    worst, best = initial.max(axis=0), initial.min(axis=0)
    spread = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    reference = worst + REFERENCE_MARGIN * spread
    return reference, reference - best


def greedy_batch(
    front: np.ndarray,
    optimistic: np.ndarray,
    spread: np.ndarray,
    reference: np.ndarray,
    k: int,
) -> list[int]:
    """`k` candidates (indices of `optimistic`), picked one at a time by the hypervolume
    each adds, at its optimistic value, to the measured `front` and the candidates picked
    before it (so a batch spreads along the front rather than piling on one point). Once no
    candidate adds any, the most uncertain ones (largest `spread`) are taken."""
    pool = _pool(optimistic, k)
    chosen: list[int] = []
    current = front.reshape(-1, len(reference))
    volume = hypervolume(current, reference)
    while len(chosen) < k and pool:
        gains = []
        for i in pool:
            point = optimistic[i]
            if ((current <= point).all(axis=1)).any():  # dominated: adds nothing
                gains.append(0.0)
                continue
            gains.append(hypervolume(np.vstack([current, point]), reference) - volume)
        best = int(np.argmax(gains))
        if gains[best] <= 0.0:
            rest = sorted(pool, key=lambda i: -spread[i])
            chosen += rest[: k - len(chosen)]
            break
        pick = pool.pop(best)
        chosen.append(pick)
        current = np.vstack([current, optimistic[pick]])
        volume += gains[best]
    return chosen


def _pool(points: np.ndarray, k: int) -> list[int]:
    """The indices of the best non-dominated layers of `points`, at least POOL_PER_PICK * k
    of them where there are (at most MAX_POOL)."""
    wanted = min(len(points), max(POOL_PER_PICK * k, k), MAX_POOL)
    left = np.arange(len(points))
    pool: list[int] = []
    while len(pool) < wanted and len(left):
        layer = non_dominated(points[left])
        pool += left[layer].tolist()
        left = left[~layer]
    return pool[:MAX_POOL]
