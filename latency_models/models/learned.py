"""A learned latency predictor (nn-Meter style): gradient-boosted trees on per-layer features.

Each network becomes a vector of per-layer features summed per layer class (MACs, input and
output elements, layer counts for conv / pointwise / depthwise / linear / pool / element-wise
layers) plus weights, batch, resolution and block count. Trees (scikit-learn's
GradientBoostingRegressor, trained by `train`) predict log latency. The trees are stored in
the profile as plain arrays and evaluated here with numpy, so predicting needs neither
scikit-learn nor pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latency_models.arrays import LAYER_CLASSES, SpecBatch
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError
from latency_models.spec import NetworkSpec

_MAC_CLASSES = ("conv", "pointwise", "depthwise", "grouped", "linear")
FEATURES: tuple[str, ...] = (
    *(f"{c}_macs" for c in _MAC_CLASSES),
    *(f"{c}_in_elems" for c in LAYER_CLASSES),
    *(f"{c}_out_elems" for c in LAYER_CLASSES),
    *(f"{c}_layers" for c in LAYER_CLASSES),
    "weights",
    "batch",
    "resolution",
    "blocks",
)
FIELDS = ("name", "kind", "description", "reference", "target", "features", "model", "trained_on")
MODEL_FIELDS = ("type", "init", "learning_rate", "max_depth", "trees")
TREE_FIELDS = ("feature", "threshold", "left", "right", "value")


def features(specs: Sequence[NetworkSpec] | SpecBatch) -> np.ndarray:
    """The (n_specs, len(FEATURES)) feature matrix; work is per inference (x batch)."""
    b = specs if isinstance(specs, SpecBatch) else SpecBatch.of(specs)
    n, k = len(b), len(LAYER_CLASSES)
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    # one bin per (spec, layer class): three bincounts give every per-class sum
    bins = np.repeat(np.arange(n), b.counts) * k + b.col("cls")
    samples = b.per_layer(b.batch)

    def per_class(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(bins, weights, minlength=n * k).reshape(n, k)

    macs = per_class(b.col("macs") * samples)[:, : len(_MAC_CLASSES)]
    ins = per_class(b.col("in_elems") * samples)
    outs = per_class(b.col("out_elems") * samples)
    layers = per_class(None)
    extra = np.stack(
        [
            b.sum(b.col("weights").astype(np.float64)),
            b.batch,
            np.fromiter((s.input_shape[1] for s in b.specs), float, n),
            np.fromiter((len(s.arrays.block_keys) for s in b.specs), float, n),
        ],
        axis=1,
    )
    return np.concatenate([macs, ins, outs, layers, extra], axis=1)


class LearnedModel(CostModel):
    kind = "learned"
    description_of_kind = "gradient-boosted trees on per-layer features, trained on measurements"

    def __init__(self, name: str, profile: Mapping[str, Any], source: str) -> None:
        super().__init__(name, profile, source)
        r = Reader(profile, source)
        r.only(FIELDS)
        r.string("target", "log_latency_ms", choices=("log_latency_ms",))
        names = r.raw("features")
        if list(names) != list(FEATURES):
            raise r.error(
                "features", "does not match this version's feature list; retrain the model"
            )
        m = r.mapping("model")
        m.only(MODEL_FIELDS)
        m.string("type", "gbdt", choices=("gbdt",))
        self.init = m.number("init", minimum=-1e9)
        self.learning_rate = m.number("learning_rate", positive=True)
        self.max_depth = m.integer("max_depth")
        trees = m.raw("trees")
        if not isinstance(trees, list) or not trees:
            raise m.error("trees", "expected a non-empty list of trees")
        self._pack(trees, m)
        self.trained_on = dict(r.raw("trained_on", {}) or {})

    def _pack(self, trees: list[Any], m: Reader) -> None:
        """Pad the trees into (n_trees, max_nodes) arrays; leaves point at themselves. Then
        flatten them: node ids become global (tree x max_nodes + node) and `_child` holds the
        right child at 2 id and the left child at 2 id + 1."""
        size = max(len(t.get("value", [])) if isinstance(t, Mapping) else 0 for t in trees)
        shape = (len(trees), max(size, 1))
        self._feature = np.zeros(shape, np.int64)
        self._threshold = np.zeros(shape)
        self._left = np.tile(np.arange(shape[1]), (shape[0], 1))
        self._right = self._left.copy()
        self._value = np.zeros(shape)
        for i, tree in enumerate(trees):
            t = Reader(tree, m.source, m.path(f"trees[{i}]") + ".")
            t.only(TREE_FIELDS)
            arrays = {k: np.asarray(t.raw(k)) for k in TREE_FIELDS}
            n = len(arrays["value"])
            if any(len(a) != n for a in arrays.values()) or n == 0:
                raise t.error("value", "feature/threshold/left/right/value differ in length")
            feat, left, right = arrays["feature"], arrays["left"], arrays["right"]
            if feat.max() >= len(FEATURES) or left.max() >= n or right.max() >= n:
                raise t.error("feature", "index out of range")
            leaf = left < 0
            self._feature[i, :n] = np.where(leaf, 0, feat)
            self._threshold[i, :n] = arrays["threshold"]
            nodes = np.arange(n)
            self._left[i, :n] = np.where(leaf, nodes, left)
            self._right[i, :n] = np.where(leaf, nodes, right)
            self._value[i, :n] = arrays["value"]
        offsets = (np.arange(shape[0]) * shape[1])[:, None]
        self._roots = offsets.ravel()
        self._child = np.stack([self._right + offsets, self._left + offsets], axis=2).ravel()
        self._feature_flat = self._feature.ravel()
        self._threshold_flat = self._threshold.ravel()
        self._value_flat = self._value.ravel()

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("latency_ms", "macs", "params")

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "trees": int(self._value.shape[0]),
            "max_depth": self.max_depth,
            "trained_on": self.trained_on,
        }

    def _raw(self, x: np.ndarray) -> np.ndarray:
        # scikit-learn compares float32 features with its thresholds; do the same
        x = x.astype(np.float32).astype(np.float64)
        flat = x.ravel()
        row_start = (np.arange(len(x)) * x.shape[1])[:, None]
        node = np.broadcast_to(self._roots, (len(x), len(self._roots)))
        for _ in range(self.max_depth):
            go_left = flat[row_start + self._feature_flat[node]] <= self._threshold_flat[node]
            node = self._child[2 * node + go_left]
        return self.init + self.learning_rate * self._value_flat[node].sum(axis=1)

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not len(batch):
            return {"latency_ms": np.zeros(0)}
        return {"latency_ms": np.exp(self._raw(features(batch)))}

    def fit(
        self, specs: Sequence[NetworkSpec], measured: Mapping[str, np.ndarray], **options: Any
    ) -> Fit:
        """Retrain on new measurements with this profile's tree settings."""
        if "latency_ms" not in measured:
            raise HardwareError("training a learned profile needs measured latency_ms values")
        y = np.asarray(measured["latency_ms"], float)
        before = self.predict_arrays(specs)["latency_ms"]
        profile = train(
            specs,
            y,
            name=self.name,
            trees=self._value.shape[0],
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            description=self.description,
        )
        after = LearnedModel(self.name, profile, self.source).predict_arrays(specs)["latency_ms"]
        return Fit(
            profile, {"latency_ms_mape": mape(before, y)}, {"latency_ms_mape": mape(after, y)}
        )


def train(
    specs: Sequence[NetworkSpec],
    latency_ms: Sequence[float],
    name: str,
    trees: int = 300,
    max_depth: int = 3,
    learning_rate: float = 0.05,
    seed: int = 0,
    description: str = "",
    trained_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train gradient-boosted trees on measured latencies; returns a `learned` profile."""
    from sklearn.ensemble import GradientBoostingRegressor  # only training needs sklearn

    if len(specs) < 10:
        raise HardwareError(f"training needs at least 10 measured networks, got {len(specs)}")
    y = np.log(np.asarray(latency_ms, float))
    x = features(specs)
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
    fitted = np.exp(model.predict(x))
    info = {
        "rows": len(specs),
        "train_mape": round(mape(fitted, np.exp(y)), 4),
        **(dict(trained_on) if trained_on else {}),
    }
    return {
        "name": name,
        "kind": "learned",
        "description": description or f"gradient-boosted trees trained on {len(specs)} networks",
        "target": "log_latency_ms",
        "features": list(FEATURES),
        "model": {
            "type": "gbdt",
            "init": float(model.init_.constant_.ravel()[0]),
            "learning_rate": learning_rate,
            "max_depth": max_depth,
            "trees": exported,
        },
        "trained_on": info,
    }
