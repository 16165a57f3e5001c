"""The Pareto front of a set of points, every column minimised: pure numpy, no SQL, no
config. A caller negates the columns it maximises."""

from __future__ import annotations

import bisect

import numpy as np


def non_dominated(points: np.ndarray) -> list[int]:
    """Indices of the rows no other row dominates (every column is minimised; equal rows
    are all kept). Exact, and fast on the fronts of large searches (62,000 distinct archs
    of 3 objectives: 0.2 s, where comparing each row with the front kept so far took 5 s).

    Distinct rows in lexicographic order: only an earlier row can dominate a later one,
    and only a front row need be compared with (a dominated row's dominator dominates
    whatever it does). With 2 columns a row is dominated when an earlier row's second
    value is no larger; with 3, when the staircase of the front's (2nd, 3rd) values kept so
    far has a step below and left of it; with more, rows go in blocks against the front."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return []
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    columns = points.shape[1]
    if columns == 1:
        keep = np.arange(len(distinct)) == 0
    elif columns == 2:
        earlier_best = np.minimum.accumulate(np.concatenate([[np.inf], distinct[:-1, 1]]))
        keep = distinct[:, 1] < earlier_best
    elif columns == 3:
        keep = _staircase_sweep(distinct[:, 1:].tolist())
    else:
        keep = _block_sweep(distinct)
    return np.flatnonzero(keep[inverse.ravel()]).tolist()


def _staircase_sweep(rows: list[list[float]]) -> np.ndarray:
    """Front flags of distinct 3-column rows in lexicographic order, given their last two
    columns: the (y, z) of the front so far form a staircase (y rising, z falling), and a
    row is dominated when the last step with y' <= y has z' <= z."""
    ys: list[float] = []
    zs: list[float] = []
    keep = np.zeros(len(rows), dtype=bool)
    for i, (y, z) in enumerate(rows):
        at = bisect.bisect_right(ys, y)
        if at and zs[at - 1] <= z:
            continue
        keep[i] = True
        end = at
        while end < len(ys) and zs[end] >= z:  # steps this row now dominates
            end += 1
        ys[at:end], zs[at:end] = [y], [z]
    return keep


def _block_sweep(rows: np.ndarray) -> np.ndarray:
    """Front flags of distinct rows in lexicographic order, a block at a time: each block
    against the front kept so far, then against itself."""
    keep = np.zeros(len(rows), dtype=bool)
    front = rows[:0]
    for start in range(0, len(rows), _BLOCK_ROWS):
        block = np.arange(start, min(start + _BLOCK_ROWS, len(rows)))
        block = block[~_dominated_by(rows[block], front)]
        block = block[~_dominated_by(rows[block], rows[block])]
        keep[block] = True
        front = np.concatenate([front, rows[block]])
    return keep


_BLOCK_ROWS = 256


def _dominated_by(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of `rows`, whether some row of `others` dominates it (<= in every column
    and < in one)."""
    if len(others) == 0 or len(rows) == 0:
        return np.zeros(len(rows), dtype=bool)
    no_worse = np.all(others[None, :, :] <= rows[:, None, :], axis=2)
    better = np.any(others[None, :, :] < rows[:, None, :], axis=2)
    return np.any(no_worse & better, axis=1)
