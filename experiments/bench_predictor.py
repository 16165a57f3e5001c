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

    python experiments/bench_predictor.py [--checkpoint runs/mnist-supernet] [--held-out 200]

Needs a trained supernet with its measured archs (`make demo`, or `nas supernet train` and
`nas predictor fit`); measuring the halves takes about a third of a second per held-out arch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau, rankdata
from sklearn.linear_model import Ridge

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet", type=Path)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    trained = load_supernet(args.checkpoint)
    rows = read_measurements(measurements_path(trained))
    if len(rows) < 2 * args.held_out:
        raise SystemExit(
            f"{len(rows)} measured archs for {args.checkpoint}; need at least "
            f"{2 * args.held_out} (nas predictor fit --n)"
        )
    compare_models(trained.space, rows, args.held_out, args.splits)
    ceiling(args.checkpoint, rows, args.held_out)


if __name__ == "__main__":
    main()
