"""Gradient-boosted regression trees as plain arrays, evaluated with numpy.

scikit-learn's GradientBoostingRegressor trains them (`fit_gbdt`); `export` turns the fitted
trees into lists of numbers (JSON, YAML, a torch file without pickled classes), and
`TreeEnsemble` evaluates them for many rows at once, so predicting needs neither
scikit-learn nor pickle. The learned latency model and the accuracy predictor both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

TREE_FIELDS = ("feature", "threshold", "left", "right", "value")

# error(where, message) -> the exception to raise for a malformed tree
ErrorFactory = Callable[[str, str], Exception]


def _value_error(where: str, message: str) -> Exception:
    return ValueError(f"{where}: {message}")


class TreeEnsemble:
    """init + learning_rate x (sum of every tree's leaf value), for rows of features.

    The trees are padded into (n_trees, max_nodes) arrays, leaves pointing at themselves,
    then flattened: node ids become global (tree x max_nodes + node), and `_child` holds the
    right child at 2 id and the left child at 2 id + 1, so every tree descends one level
    per numpy step."""

    def __init__(
        self,
        init: float,
        learning_rate: float,
        max_depth: int,
        trees: Sequence[Mapping[str, Any]],
        n_features: int,
        error: ErrorFactory = _value_error,
    ) -> None:
        if not trees:
            raise error("trees", "expected a non-empty list of trees")
        self.init, self.learning_rate, self.max_depth = init, learning_rate, max_depth
        self.n_trees = len(trees)
        size = max(len(t.get("value", [])) if isinstance(t, Mapping) else 0 for t in trees)
        shape = (len(trees), max(size, 1))
        feature = np.zeros(shape, np.int64)
        threshold = np.zeros(shape)
        left = np.tile(np.arange(shape[1]), (shape[0], 1))
        right = left.copy()
        value = np.zeros(shape)
        for i, tree in enumerate(trees):
            where = f"trees[{i}]"
            if not isinstance(tree, Mapping) or set(tree) != set(TREE_FIELDS):
                raise error(where, f"expected the fields {', '.join(TREE_FIELDS)}")
            arrays = {k: np.asarray(tree[k]) for k in TREE_FIELDS}
            n = len(arrays["value"])
            if any(len(a) != n for a in arrays.values()) or n == 0:
                raise error(where, "feature/threshold/left/right/value differ in length")
            feat, lft, rgt = arrays["feature"], arrays["left"], arrays["right"]
            if feat.max() >= n_features or lft.max() >= n or rgt.max() >= n:
                raise error(where, "index out of range")
            leaf = lft < 0
            nodes = np.arange(n)
            feature[i, :n] = np.where(leaf, 0, feat)
            threshold[i, :n] = arrays["threshold"]
            left[i, :n] = np.where(leaf, nodes, lft)
            right[i, :n] = np.where(leaf, nodes, rgt)
            value[i, :n] = arrays["value"]
        offsets = (np.arange(shape[0]) * shape[1])[:, None]
        self._roots = offsets.ravel()
        self._child = np.stack([right + offsets, left + offsets], axis=2).ravel()
        self._feature = feature.ravel()
        self._threshold = threshold.ravel()
        self._value = value.ravel()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One value per row of `x` (n_rows, n_features)."""
        # scikit-learn compares float32 features with its thresholds; do the same
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        if not len(x):
            return np.zeros(0)
        flat = x.ravel()
        row_start = (np.arange(len(x)) * x.shape[1])[:, None]
        node = np.broadcast_to(self._roots, (len(x), len(self._roots)))
        for _ in range(self.max_depth):
            go_left = flat[row_start + self._feature[node]] <= self._threshold[node]
            node = self._child[2 * node + go_left]
        return self.init + self.learning_rate * self._value[node].sum(axis=1)


def fit_gbdt(
    x: np.ndarray,
    y: np.ndarray,
    trees: int = 300,
    max_depth: int = 3,
    learning_rate: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit scikit-learn's GradientBoostingRegressor (least squares, 80% subsamples) and
    export it: {"init", "learning_rate", "max_depth", "trees"}, plain numbers only."""
    from sklearn.ensemble import GradientBoostingRegressor  # only training needs sklearn

    model = GradientBoostingRegressor(
        n_estimators=trees,
        max_depth=max_depth,
        learning_rate=learning_rate,
        subsample=0.8,
        random_state=seed,
    )
    model.fit(x, y)
    exported = []
    for (est,) in model.estimators_:
        t = est.tree_
        exported.append(
            {
                "feature": t.feature.tolist(),
                "threshold": [float(f"{v:.9g}") for v in t.threshold.tolist()],
                "left": t.children_left.tolist(),
                "right": t.children_right.tolist(),
                "value": [float(f"{v:.9g}") for v in t.value[:, 0, 0].tolist()],
            }
        )
    return {
        "init": float(model.init_.constant_.ravel()[0]),
        "learning_rate": learning_rate,
        "max_depth": max_depth,
        "trees": exported,
    }


def ensemble_of(data: Mapping[str, Any], n_features: int) -> TreeEnsemble:
    """The TreeEnsemble of what `fit_gbdt` exported."""
    return TreeEnsemble(
        float(data["init"]),
        float(data["learning_rate"]),
        int(data["max_depth"]),
        data["trees"],
        n_features,
    )
