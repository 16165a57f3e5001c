"""A learned latency predictor (nn-Meter style): gradient-boosted trees on per-layer features.

Each network becomes a vector of per-layer features summed per layer class (MACs, input and
output elements, layer counts for conv / pointwise / depthwise / linear / pool / element-wise
layers) plus weights, batch, resolution and block count. Trees (scikit-learn's
GradientBoostingRegressor, trained by `train`) predict log latency. The trees are stored in
the profile as plain arrays and evaluated with numpy (latency_models.trees), so predicting
needs neither scikit-learn nor pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latency_models.arrays import LAYER_CLASSES, SpecBatch
from latency_models.base import CostModel, Fit, Reader, mape
from latency_models.errors import HardwareError
from latency_models.spec import NetworkSpec
from latency_models.trees import TreeEnsemble, ensemble_of, fit_gbdt
from latency_models.uncertainty import Residuals

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
FIELDS = (
    "name",
    "kind",
    "description",
    "reference",
    "target",
    "features",
    "model",
    "trained_on",
    "uncertainty",
)
CV_FOLDS = 5  # the folds of the cross-validation that gives a trained profile its residuals
MODEL_FIELDS = ("type", "init", "learning_rate", "max_depth", "trees")


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
            b.input_shapes[:, 1].astype(float),
            b.block_counts.astype(float),
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
        if not isinstance(trees, list):
            raise m.error("trees", "expected a non-empty list of trees")
        self.trees = TreeEnsemble(
            self.init,
            self.learning_rate,
            self.max_depth,
            trees,
            len(FEATURES),
            error=lambda where, message: m.error(where, message),
        )
        self.trained_on = dict(r.raw("trained_on", {}) or {})

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("latency_ms", "macs", "params")

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "trees": self.trees.n_trees,
            "max_depth": self.max_depth,
            "trained_on": self.trained_on,
        }

    def _columns(self, batch: SpecBatch, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not len(batch):
            return {"latency_ms": np.zeros(0)}
        return {"latency_ms": np.exp(self.trees.predict(features(batch)))}

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
            trees=self.trees.n_trees,
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
    folds: int = CV_FOLDS,
) -> dict[str, Any]:
    """Train gradient-boosted trees on measured latencies; returns a `learned` profile, whose
    `uncertainty` holds the `folds`-fold cross-validated residuals: each row predicted by
    trees trained, with the same settings, on the other folds (rows those trees never saw)."""
    if len(specs) < 10:
        raise HardwareError(f"training needs at least 10 measured networks, got {len(specs)}")
    y = np.log(np.asarray(latency_ms, float))
    x = features(specs)
    model = fit_gbdt(x, y, trees, max_depth, learning_rate, seed)
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    held_out = np.empty(len(y))
    for k in range(folds):
        others = fit_gbdt(x[fold != k], y[fold != k], trees, max_depth, learning_rate, seed)
        held_out[fold == k] = ensemble_of(others, len(FEATURES)).predict(x[fold == k])
    residuals = Residuals.of(
        np.exp(held_out),
        np.exp(y),
        f"{folds}-fold cross-validation: each of the {len(y)} training rows predicted by trees "
        "trained on the other folds",
    )
    fitted = np.exp(ensemble_of(model, len(FEATURES)).predict(x))
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
        "model": {"type": "gbdt", **model},
        "trained_on": info,
        "uncertainty": {"latency_ms": residuals.to_profile()},
    }
