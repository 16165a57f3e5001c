"""The Pareto algorithm alone (`nas.pareto.front`): hand-made fronts, and random sets checked
against the O(n²) definition, through each sweep (2 columns, the 3-column staircase, blocks)."""

from __future__ import annotations

import numpy as np
import pytest

from nas.pareto.front import _BLOCK_ROWS, _dominated_by, non_dominated


def brute_force(points: np.ndarray) -> list[int]:
    """The definition: a row is kept unless another is <= in every column and < in one."""
    points = np.asarray(points, dtype=float)
    no_worse = np.all(points[:, None, :] <= points[None, :, :], axis=2)  # [j, i]: j <= i
    better = np.any(points[:, None, :] < points[None, :, :], axis=2)
    return np.flatnonzero(~np.any(no_worse & better, axis=0)).tolist()


def test_no_points_no_front():
    assert non_dominated(np.empty((0, 2))) == []
    assert non_dominated(np.empty((0, 4))) == []


@pytest.mark.parametrize("columns", [1, 2, 3, 4, 6])
def test_one_point_is_its_own_front(columns):
    assert non_dominated(np.ones((1, columns))) == [0]


def test_one_column_keeps_every_copy_of_the_minimum():
    assert non_dominated([[3.0], [1.0], [2.0], [1.0]]) == [1, 3]


def test_two_columns_hand_made():
    points = [[1, 5], [2, 3], [3, 4], [4, 1], [2, 6], [5, 1]]
    # [3, 4] by [2, 3]; [2, 6] by [1, 5] and [2, 3]; [5, 1] by [4, 1] (a tie in one column)
    assert non_dominated(points) == [0, 1, 3]


def test_a_tie_in_one_column_is_decided_by_the_other():
    assert non_dominated([[1, 3], [1, 2]]) == [1]
    assert non_dominated([[2, 1], [1, 1]]) == [1]


@pytest.mark.parametrize("columns", [2, 3, 5])
def test_equal_rows_are_all_kept(columns):
    best = [0.0] * columns
    worse = [1.0] * columns
    assert non_dominated([worse, best, best, worse, best]) == [1, 2, 4]


def test_all_dominated_but_one():
    points = [[3, 3, 3], [1, 2, 2], [0, 0, 0], [0, 0, 1], [5, 0, 0], [0, 9, 0]]
    assert non_dominated(points) == [2]
    assert non_dominated(np.asarray(points)[:, :2]) == [2, 3]  # [0, 0] twice


def test_three_columns_hand_made():
    points = [
        [1, 2, 3],
        [2, 1, 3],
        [3, 3, 0],
        [2, 2, 3],  # by [1, 2, 3] and [2, 1, 3]
        [1, 2, 4],  # by [1, 2, 3]: equal in two columns
        [0, 9, 9],
        [4, 0, 1],
        [4, 1, 1],  # by [4, 0, 1]
        [5, 3, 0],  # by [3, 3, 0]
    ]
    assert non_dominated(points) == [0, 1, 2, 5, 6]


def test_three_columns_a_step_replaced_on_the_staircase_still_dominates():
    """[0, 5, 5] is taken off the staircase by [1, 4, 4]; [2, 5, 6] is dominated by both."""
    points = [[0, 5, 5], [1, 4, 4], [2, 5, 6], [3, 6, 3]]
    assert non_dominated(points) == [0, 1, 3]


def test_four_columns_hand_made():
    points = [[1, 1, 1, 2], [1, 1, 2, 1], [1, 1, 2, 2], [0, 3, 3, 3], [2, 2, 2, 2]]
    assert non_dominated(points) == [0, 1, 3]


def test_indices_are_of_the_input_rows_in_order_whatever_its_order():
    rng = np.random.default_rng(1)
    points = rng.integers(0, 6, size=(200, 3)).astype(float)
    order = rng.permutation(len(points))
    front = non_dominated(points)
    assert front == sorted(front) and all(type(i) is int for i in front)
    assert sorted(order[non_dominated(points[order])].tolist()) == front


@pytest.mark.parametrize("columns", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_ties_and_duplicates_match_the_definition(columns, seed):
    points = np.random.default_rng(seed).integers(0, 8, size=(400, columns))
    assert non_dominated(points) == brute_force(points)


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_random_continuous_points_match_the_definition(columns):
    points = np.random.default_rng(columns).normal(size=(500, columns))
    assert non_dominated(points) == brute_force(points)


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_points_on_one_trade_off_are_all_kept(columns):
    """Rows that sum to the same total: none dominates another."""
    rng = np.random.default_rng(3)
    points = rng.dirichlet(np.ones(columns), size=300)
    assert non_dominated(points) == list(range(300))


def test_the_block_sweep_over_many_blocks_matches_the_definition():
    """4 columns go through the block sweep: more distinct rows than a few blocks, a front
    spread over every block, and dominators in earlier blocks than the rows they dominate."""
    rng = np.random.default_rng(4)
    trade_off = rng.dirichlet(np.ones(4), size=700)  # mutually non-dominated
    points = np.concatenate([trade_off, trade_off + rng.uniform(0, 0.05, size=(700, 4))])
    points = points[rng.permutation(len(points))]
    assert len(np.unique(points, axis=0)) > 4 * _BLOCK_ROWS
    front = non_dominated(points)
    assert front == brute_force(points)
    assert 600 < len(front) < 1400  # most of the first 700, few of the shifted copies


def test_the_block_sweep_compares_with_the_front_of_every_earlier_block():
    """Rows of the last block, each dominated by one row of the first block alone."""
    rng = np.random.default_rng(5)
    n = 4 * _BLOCK_ROWS
    plane = rng.dirichlet(np.ones(3), size=n)  # columns 2-4 sum to 1: no row <= another
    trade_off = np.column_stack([rng.uniform(0, 1, size=n), plane])
    first = np.argsort(trade_off[:, 0])[:5]  # in the first block
    late = trade_off[first] + [2.0, 0.0, 0.0, 0.0]  # in the last block
    points = np.concatenate([trade_off, late])
    assert non_dominated(points) == list(range(n))
    assert brute_force(points) == list(range(n))


def test_block_boundaries_exactly():
    for n in (_BLOCK_ROWS - 1, _BLOCK_ROWS, _BLOCK_ROWS + 1, 2 * _BLOCK_ROWS):
        points = np.random.default_rng(n).integers(0, 5, size=(n, 5))
        assert non_dominated(points) == brute_force(points)


def test_dominated_by_needs_strictly_better_in_one_column():
    rows = np.array([[1.0, 1.0], [2.0, 2.0], [0.0, 3.0]])
    others = np.array([[1.0, 1.0]])
    assert _dominated_by(rows, others).tolist() == [False, True, False]
    assert _dominated_by(rows, others[:0]).tolist() == [False, False, False]
    assert _dominated_by(rows[:0], others).tolist() == []
