"""How well accuracy predictors rank archs they never saw, against how well a measurement can.

Prints one JSON object per figure:
  predictor_model_kendall_tau   per model (gbdt, mlp, the two averaged by rank, ridge): the
                                held-out Kendall tau over --splits random splits of the
                                measured archs (--held-out each), mean and spread: how the
                                default model was chosen
  predictor_kendall_tau         the default predictor (`nas predictor fit`), trained on all
                                but the last --held-out measured archs, on those (full labels)
  measurement_ceiling_tau       the same held-out archs measured twice by the supernet, on two
                                disjoint halves of the validation split (even and odd images):
                                Kendall tau between the two, the most any predictor can show
                                against a measurement of that size
  predictor_vs_half_tau         the predictor against each half's measurement (mean of the
                                two): the figure to hold beside the ceiling (goal: within
                                0.03 of it, or predictor_kendall_tau >= 0.85)
  accuracy_interval_coverage    per residual scale: over --interval-splits random three-way
                                splits of the measured archs (train / calibrate / test, 60 /
                                20 / 20%), the share of test archs whose measured top-1 lies
                                in the nominal 90% interval of a predictor fitted on the train
                                archs with the calibrate archs held out (as `nas predictor
                                fit` does), and the interval's mean width. scale=binomial
                                (residuals divided by sqrt(p(1 - p))) is what the predictor
                                ships (goal: coverage 0.85-0.95); the others show what plain
                                residuals in points (absolute) or a GBDT of out-of-fold
                                |residuals| of the train archs as the spread would give; each
                                also gives its coverage in the low, middle and high third
                                of the predicted top-1

    python experiments/bench_predictor.py [--checkpoint runs/mnist-supernet] [--held-out 200]
        [--figures models ceiling intervals]

Needs a trained supernet with its measured archs (`make demo`, or `nas supernet train` and
`nas predictor fit`); measuring the halves takes about a third of a second per held-out arch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau, rankdata
from sklearn.linear_model import Ridge

from latency_models.trees import ensemble_of, fit_gbdt
from latency_models.uncertainty import AdditiveResiduals
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.predictor import (
    Measurement,
    fit_predictor,
    measurements_path,
    read_measurements,
)
from supernet.space import SearchSpace


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def tau(a: np.ndarray, b: np.ndarray) -> float:
    return float(kendalltau(a, b).statistic)


def compare_models(space: SearchSpace, rows: list[Measurement], held_out: int, splits: int) -> None:
    x = np.stack([space.encode(m.arch) for m in rows]).astype(np.float64)
    y = np.array([m.top1 for m in rows])
    taus: dict[str, list[float]] = {"gbdt": [], "mlp": [], "rank_average": [], "ridge": []}
    for split in range(splits):
        order = np.random.default_rng(split).permutation(len(rows))
        train, test = order[held_out:], order[:held_out]
        shuffled = [rows[i] for i in np.concatenate([train, test])]
        predicted = {}
        for model in ("gbdt", "mlp"):
            fitted = fit_predictor(space, shuffled, "-", held_out=held_out, model=model)
            predicted[model] = fitted.predict_encoded(x[test])
        predicted["rank_average"] = rankdata(predicted["gbdt"]) + rankdata(predicted["mlp"])
        predicted["ridge"] = Ridge(1.0).fit(x[train], y[train]).predict(x[test])
        for model, values in predicted.items():
            taus[model].append(tau(values, y[test]))
    for model, values in taus.items():
        emit(
            "predictor_model_kendall_tau",
            round(float(np.mean(values)), 4),
            "tau",
            model=model,
            std=round(float(np.std(values)), 4),
            splits=splits,
            held_out=held_out,
            train=len(rows) - held_out,
        )


def ceiling(checkpoint: Path, rows: list[Measurement], held_out: int) -> None:
    trained = load_supernet(checkpoint)
    space = trained.space
    predictor = fit_predictor(space, rows, trained.sha256, held_out=held_out)
    test = rows[-held_out:]
    predicted = predictor.predict([m.arch for m in test])
    full = np.array([m.top1 for m in test])
    evaluator = trained.evaluator()
    halves = []
    for m in test:
        correct = evaluator.correct(m.arch).to(torch.float64)
        halves.append((float(correct[0::2].mean()), float(correct[1::2].mean())))
    a, b = np.array(halves).T
    context = {"held_out": held_out, "model": predictor.kind, "images_per_half": len(correct) // 2}
    emit("predictor_kendall_tau", round(tau(predicted, full), 4), "tau", goal=">= 0.85",
         labels=f"top1 on all {len(correct)} validation images", **context)  # fmt: skip
    ceiling_tau = tau(a, b)
    emit("measurement_ceiling_tau", round(ceiling_tau, 4), "tau",
         labels="top1 on the even images against top1 on the odd images", **context)  # fmt: skip
    vs_half = (tau(predicted, a) + tau(predicted, b)) / 2
    emit("predictor_vs_half_tau", round(vs_half, 4), "tau", ceiling=round(ceiling_tau, 4),
         gap=round(ceiling_tau - vs_half, 4), goal="gap <= 0.03", **context)  # fmt: skip


def residual_spread_model(
    x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5
) -> Callable[[np.ndarray], np.ndarray]:
    """A spread estimate: a small GBDT of the |out-of-fold residuals| of the train archs (at
    least 0.1 points, so that no interval collapses)."""
    fold = np.arange(len(y)) % folds
    out_of_fold = np.zeros(len(y))
    for k in range(folds):
        model = ensemble_of(fit_gbdt(x[fold != k], y[fold != k], seed=seed), x.shape[1])
        out_of_fold[fold == k] = y[fold == k] - model.predict(x[fold == k])
    exported = fit_gbdt(x, np.abs(out_of_fold), trees=100, max_depth=2, seed=seed)
    spread = ensemble_of(exported, x.shape[1])
    return lambda rows_x: np.maximum(spread.predict(rows_x), 1e-3)


def interval_coverage(
    space: SearchSpace, rows: list[Measurement], splits: int, coverage: float = 0.9
) -> None:
    x = np.stack([space.encode(m.arch) for m in rows]).astype(np.float64)
    y = np.array([m.top1 for m in rows])
    n_test = n_calibrate = len(rows) // 5
    scales = ("binomial", "absolute", "residual_gbdt")
    hits: dict[str, list[float]] = {s: [] for s in scales}
    widths: dict[str, list[float]] = {s: [] for s in scales}
    # inside or not, per test arch, by the third of the split's predictions it falls in
    by_third: dict[str, list[list[bool]]] = {s: [[], [], []] for s in scales}
    for split in range(splits):
        order = np.random.default_rng(1000 + split).permutation(len(rows))
        test, calibrate = order[:n_test], order[n_test : n_test + n_calibrate]
        train = order[n_test + n_calibrate :]
        # the shipped path: fit on train, residuals of the calibrate archs held out
        shuffled = [rows[i] for i in np.concatenate([train, calibrate])]
        predictor = fit_predictor(space, shuffled, "-", held_out=n_calibrate, seed=split)
        predicted = predictor.predict_encoded(x[test])
        calibrated = predictor.predict_encoded(x[calibrate])
        bounds = {"binomial": predictor.bounds_of(predicted, coverage)}  # as shipped
        absolute = AdditiveResiduals.of(calibrated, y[calibrate], "calibrate archs")
        bounds["absolute"] = absolute.bounds(predicted, coverage)
        spread = residual_spread_model(x[train], y[train], seed=split)
        scaled = AdditiveResiduals.of(
            calibrated, y[calibrate], "calibrate archs", spread=spread(x[calibrate])
        )
        bounds["residual_gbdt"] = scaled.bounds(predicted, coverage, spread(x[test]))
        third = np.digitize(predicted, np.quantile(predicted, [1 / 3, 2 / 3]))
        for scale, (low, high) in bounds.items():
            inside = (y[test] >= low) & (y[test] <= high)
            hits[scale].append(float(np.mean(inside)))
            widths[scale].append(float(np.mean(high - low)))
            for k in range(3):
                by_third[scale][k] += inside[third == k].tolist()
    for scale in scales:
        emit(
            "accuracy_interval_coverage",
            round(float(np.mean(hits[scale])), 4),
            "share of test archs inside",
            scale=scale,
            shipped=scale == "binomial",
            nominal=coverage,
            goal="0.85-0.95",
            std=round(float(np.std(hits[scale])), 4),
            min=round(float(np.min(hits[scale])), 4),
            max=round(float(np.max(hits[scale])), 4),
            mean_width_points=round(100 * float(np.mean(widths[scale])), 3),
            # low, middle, high third of the predicted top-1: where the misses fall
            coverage_by_predicted_third=[round(float(np.mean(t)), 4) for t in by_third[scale]],
            splits=splits,
            train=len(rows) - n_test - n_calibrate,
            calibrate=n_calibrate,
            test=n_test,
            model=predictor.kind,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet", type=Path)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--interval-splits", type=int, default=20)
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=("models", "ceiling", "intervals"),
        default=["models", "ceiling", "intervals"],
    )
    args = parser.parse_args()
    trained = load_supernet(args.checkpoint)
    rows = read_measurements(measurements_path(trained))
    if {"models", "ceiling"} & set(args.figures) and len(rows) < 2 * args.held_out:
        raise SystemExit(
            f"{len(rows)} measured archs for {args.checkpoint}; need at least "
            f"{2 * args.held_out} (nas predictor fit --n)"
        )
    if "models" in args.figures:
        compare_models(trained.space, rows, args.held_out, args.splits)
    if "ceiling" in args.figures:
        ceiling(args.checkpoint, rows, args.held_out)
    if "intervals" in args.figures:
        if len(rows) < 50:  # 10 archs at least to calibrate on and to test
            raise SystemExit(f"{len(rows)} measured archs for {args.checkpoint}; need 50")
        interval_coverage(trained.space, rows, args.interval_splits)


if __name__ == "__main__":
    main()
