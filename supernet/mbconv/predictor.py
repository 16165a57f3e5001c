"""Accuracy predictor: gradient-boosted trees (default) or an MLP (once-for-all style) on
`space.encode(arch)`.

`measure_archs` evaluates random archs with the trained supernet (BN recalibrated, validation
split) and appends each result to a JSONL file named after the checkpoint's hash, so a killed
measurement resumes where it stopped. `fit_predictor` trains the model on all but `held_out`
of them and reports Kendall tau and RMSE on the held-out archs.

Trees are the default because they rank better: on the demo's 1,000 measured MNIST archs,
five random 800/200 splits give held-out Kendall tau 0.760 (GBDT, 300 trees of depth 3)
against 0.731 (the MLP) and 0.753 (the two averaged by rank), ridge regression 0.716
(experiments/bench_predictor.py reproduces the comparison). The saved predictor records the
space and the checkpoint's SHA-256; loading it against another checkpoint is refused.

Prediction intervals are split conformal on the same held-out archs: the shipped model is the
one trained on the train split (it is not refit on all rows), so its held-out residuals
(measured - predicted top-1) are of archs it never saw, and the saved predictor keeps them
(`AdditiveResiduals`, the finite-sample rule of latency_models.uncertainty), each divided by
the binomial spread sqrt(p(1 - p)) of its prediction p: a measured accuracy's noise shrinks
towards 1. `predict_bounds(archs, coverage)` gives p + (low, high) * sqrt(p(1 - p)). On 20
random train / calibrate / test splits (180 / 60 / 60) of the quick demo's 300 measured
archs, that 90% interval holds 0.901 of the test archs, 2.87 points wide on average, and
0.855 / 0.915 / 0.933 of those in the low / middle / high third of the predictions.
Residuals in plain points hold 0.898, 2.97 points wide, but only 0.808 of the low third and
0.955 of the high; a second GBDT of out-of-fold |residuals| as the spread holds 0.908, the
most evenly (0.883 / 0.923 / 0.918), but 3.22 points wide (experiments/bench_predictor.py
`accuracy_interval_coverage`).

A file saved before intervals (or fitted with under 3 held-out archs) has no residuals: it
predicts as before and gives no bounds (`has_bounds` is False; `predict_bounds` says why).
The int8 prediction has no bounds: its drop model is fitted on archs the top-1 model trained
on, so no residuals of it are out of sample.

A killed measurement can leave a torn last line in the JSONL file: before it appends,
`measure_archs` drops that line (warning once) so the next record starts on a line of its own.
A last line that is a whole record and lacks only its newline is kept and completed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from scipy.stats import kendalltau
from torch import nn

from latency_models.trees import TreeEnsemble, ensemble_of, fit_gbdt
from latency_models.uncertainty import DEFAULT_COVERAGE, MIN_T_ROWS, AdditiveResiduals
from supernet.errors import CheckpointError, ConfigError, PredictorMismatchError, UserError
from supernet.family import OpenedArtifact, TrainedModel
from supernet.io import Artifact, file_sha256, read_artifact, resolve_artifact_path, save_atomic
from supernet.mbconv.checkpoint import TrainedSupernet
from supernet.mbconv.evaluate import EvalResult
from supernet.mbconv.family import CLASSIFIER
from supernet.space import Arch, SearchSpace, as_rng, saved_space, space_record

log = logging.getLogger(__name__)
PREDICTOR_FORMAT = "nas-accuracy-predictor/1"
RESIDUAL_SCALE = "binomial"  # what the saved residuals are divided by (binomial_spread)
# what a run folder given as a predictor (or a checkpoint) stands for: the family's file names
PREDICTOR_FILE_NAMES = (CLASSIFIER.predictor_file_name,)
MIN_TRAIN, MIN_HELD_OUT = 10, 2  # archs a fit needs: to train on, and to evaluate on
MODELS = ("gbdt", "mlp")


def binomial_spread(top1: np.ndarray) -> np.ndarray:
    """sqrt(p(1 - p)) of predicted top-1 fractions: the scale of an accuracy's error, which
    shrinks near 1 (clipped so that no interval collapses to a point)."""
    p = np.clip(np.asarray(top1, float), 1e-3, 1 - 1e-3)
    return np.sqrt(p * (1 - p))


class PredictorFitError(UserError, ValueError):
    """Measurements that cannot fit a predictor (too few, a space with too few archs)."""


def check_split(n: int, held_out: int) -> None:
    """PredictorFitError unless `n` archs with `held_out` of them kept back leave enough to
    train on; callers check this before measuring anything."""
    if held_out < MIN_HELD_OUT or n - held_out < MIN_TRAIN:
        raise PredictorFitError(
            f"need at least {MIN_TRAIN} training and {MIN_HELD_OUT} held-out archs: {n} archs "
            f"with held_out={held_out} leave {max(n - held_out, 0)} to train on; measure at "
            f"least {max(held_out, MIN_HELD_OUT) + MIN_TRAIN} (--n) or hold out fewer "
            "(--held-out)"
        )


class AccuracyMLP(nn.Module):
    """encode(arch) -> accuracy = base + scale * mlp(x).

    base and scale are the mean and standard deviation of the training accuracies: the MLP
    learns standardised targets, which matters because subnet accuracies differ by tenths
    of a percent while an untrained MLP's outputs are of order one.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int = 400,
        layers: int = 3,
        base: float = 0.0,
        scale: float = 1.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*blocks)
        self.register_buffer("base", torch.tensor(float(base)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardized(x) * self.scale + self.base


@dataclass
class Measurement:
    arch: Arch
    arch_id: str
    top1: float
    loss: float


@dataclass
class Int8DropModel:
    """Top-1 (fraction) lost to the int8 export's static quantization, predicted from the
    arch encoding by ridge regression fitted on a small measured sample: the predictor's
    stand-in for top1_int8 (= predicted top1 - predicted drop). Its `metrics` hold its
    leave-one-out RMSE beside that of the sample's mean drop, so a user sees whether the
    arch tells anything beyond the mean."""

    coef: np.ndarray
    intercept: float
    metrics: dict[str, Any]

    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(encoded, dtype=np.float64) @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "intercept": self.intercept, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Int8DropModel:
        return cls(np.asarray(data["coef"], np.float64), float(data["intercept"]), data["metrics"])


def fit_int8_drop(
    space: SearchSpace, archs: Sequence[Arch], drops: Sequence[float]
) -> Int8DropModel:
    """Ridge regression of measured int8 drops on the arch encoding, its penalty chosen by
    exact leave-one-out error (the hat-matrix shortcut) among a few decades."""
    if len(archs) < 8:
        raise PredictorFitError(
            f"an int8 drop model needs at least 8 measured archs, got {len(archs)}"
        )
    x = np.stack([space.encode(a) for a in archs]).astype(np.float64)
    y = np.asarray(drops, dtype=np.float64)
    x_mean, y_mean = x.mean(0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in (0.1, 1.0, 10.0, 100.0, 1000.0):
        inverse = np.linalg.inv(xc.T @ xc + alpha * np.eye(x.shape[1]))
        coef = inverse @ xc.T @ yc
        hat = np.einsum("ij,jk,ik->i", xc, inverse, xc)
        # 1/n of the hat diagonal comes from the centring (the fitted intercept)
        loo = (yc - xc @ coef) / (1 - hat - 1 / len(y))
        rmse = float(np.sqrt(np.mean(loo**2)))
        if best is None or rmse < best[0]:
            best = (rmse, alpha, coef)
    assert best is not None
    rmse, alpha, coef = best
    mean_only = float(np.sqrt(np.mean((yc * len(y) / (len(y) - 1)) ** 2)))  # LOO of the mean
    return Int8DropModel(
        coef,
        float(y_mean - x_mean @ coef),
        {
            "n": len(y),
            "mean_drop_points": round(float(100 * y_mean), 3),
            "loo_rmse_points": round(100 * rmse, 3),
            "mean_only_loo_rmse_points": round(100 * mean_only, 3),
            "alpha": alpha,
            "target": "top1 - top1_int8 on the validation split (the int8 export's scheme, "
            "torch fake quantization)",
        },
    )


@dataclass
class AccuracyPredictor:
    space: SearchSpace
    model: AccuracyMLP | TreeEnsemble
    checkpoint_sha256: str
    metrics: dict[str, Any] = field(default_factory=dict)
    hidden: int = 400
    layers: int = 3
    dropout: float = 0.2
    # the file it was loaded from, with the hash of the bytes read (None until saved/loaded)
    artifact: Artifact | None = None
    int8_drop: Int8DropModel | None = None  # `nas predictor fit --int8-sample N`
    trees: dict[str, Any] | None = None  # a gbdt model as fit_gbdt exported it
    # measured - predicted top-1 of the held-out archs (None: a file saved before intervals)
    residuals: AdditiveResiduals | None = None

    @property
    def kind(self) -> str:
        return "gbdt" if isinstance(self.model, TreeEnsemble) else "mlp"

    @torch.no_grad()
    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """Predicted top-1 (fraction) for rows of `space.encode` vectors."""
        if isinstance(self.model, TreeEnsemble):
            return self.model.predict(np.asarray(encoded, dtype=np.float64))
        self.model.eval()
        x = torch.as_tensor(np.asarray(encoded, dtype=np.float32))
        return self.model(x).numpy().astype(np.float64)

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        return self.predict_encoded(np.stack([self.space.encode(a) for a in archs]))

    @property
    def has_bounds(self) -> bool:
        return self.residuals is not None

    def predict_bounds(
        self, archs: Sequence[Arch], coverage: float = DEFAULT_COVERAGE
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) top-1 of each arch at `coverage`, from the held-out residuals."""
        return self.bounds_of(self.predict(archs), coverage)

    def bounds_of(
        self, predicted: np.ndarray, coverage: float = DEFAULT_COVERAGE
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) around top-1 values this predictor predicted (a caller that already
        has them need not predict twice)."""
        if isinstance(coverage, bool) or not isinstance(coverage, int | float):
            raise ConfigError(f"coverage: expected a number in (0, 1), got {coverage!r}")
        if not 0.0 < coverage < 1.0:
            raise ConfigError(f"coverage: {coverage!r} is not in (0, 1)")
        if self.residuals is None:
            raise PredictorFitError(
                "this predictor kept no held-out residuals (a file saved before intervals, or "
                "a fit on under 3 held-out archs), so it gives no intervals; refit it with "
                "`nas predictor fit` to get them"
            )
        return self.residuals.bounds(predicted, coverage, binomial_spread(predicted))

    def predict_int8(self, archs: Sequence[Arch]) -> np.ndarray:
        """Predicted top-1 after int8 quantization: predicted top1 - predicted drop."""
        if self.int8_drop is None:
            raise PredictorFitError("this predictor has no int8 drop model (--int8-sample)")
        if not archs:
            return np.zeros(0)
        encoded = np.stack([self.space.encode(a) for a in archs])
        return self.predict_encoded(encoded) - self.int8_drop.predict_encoded(encoded)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        save_atomic(
            {
                "format": PREDICTOR_FORMAT,
                **space_record(self.space),  # rebuilt from the file, as a supernet.pt's
                "encoding_size": self.space.encoding_size,
                "checkpoint_sha256": self.checkpoint_sha256,
                "kind": self.kind,
                "hidden": self.hidden,
                "layers": self.layers,
                "dropout": self.dropout,
                # trees as plain numbers; an MLP as its tensors
                "model": self.trees if self.kind == "gbdt" else self.model.state_dict(),
                "metrics": self.metrics,
                "int8_drop": self.int8_drop.to_dict() if self.int8_drop else None,
                "residuals": self.residuals.to_dict() if self.residuals else None,
                "residual_scale": RESIDUAL_SCALE,
            },
            path,
        )
        return path


def load_predictor(
    path: str | os.PathLike,
    checkpoint: str | os.PathLike | TrainedModel | OpenedArtifact | None = None,
    expected_sha256: str | None = None,
) -> AccuracyPredictor:
    """Load a predictor; with `checkpoint` (a path, or a trained file already opened), refuse
    it unless it was fitted on that file; with `expected_sha256`, unless it is that file."""
    artifact = read_artifact(resolve_artifact_path(path, PREDICTOR_FILE_NAMES), PREDICTOR_FORMAT)
    artifact.check_sha256(expected_sha256, "predictor")
    path, data = artifact.path, artifact.data
    space = saved_space(data)
    if data["encoding_size"] != space.encoding_size:
        raise PredictorMismatchError(
            f"predictor {path} encodes {data['encoding_size']} features but space "
            f"{space.name!r} has {space.encoding_size}"
        )
    if checkpoint is not None:
        if isinstance(checkpoint, TrainedModel | OpenedArtifact):
            sha, where, ck_space = checkpoint.sha256, checkpoint.path, checkpoint.space.name
        else:
            where = resolve_artifact_path(checkpoint, (CLASSIFIER.file_name,))
            if not where.is_file():
                raise CheckpointError(f"checkpoint file not found: {where}")
            sha, ck_space = file_sha256(where), None
        if sha != data["checkpoint_sha256"]:
            raise PredictorMismatchError(
                f"predictor {path} was fitted on a checkpoint with SHA-256 "
                f"{data['checkpoint_sha256'][:12]}..., but {where} has {sha[:12]}...; refit it "
                f"with `nas predictor fit --checkpoint {where}`"
            )
        if ck_space is not None and ck_space != space.name:
            raise PredictorMismatchError(
                f"predictor {path} is for space {space.name!r}, checkpoint is {ck_space!r}"
            )
    kind = data.get("kind", "mlp")  # files written before trees were added hold an MLP
    trees = None
    model: AccuracyMLP | TreeEnsemble
    try:
        if kind == "gbdt":
            trees = data["model"]
            model = ensemble_of(trees, space.encoding_size)
        else:
            model = AccuracyMLP(
                space.encoding_size, data["hidden"], data["layers"], dropout=data["dropout"]
            )
            model.load_state_dict(data["model"])
            model.eval()
        # files saved before intervals have none: they give no bounds
        residuals = data.get("residuals")
        if residuals is not None:
            if data.get("residual_scale") != RESIDUAL_SCALE:
                raise ValueError(f"residual_scale {data.get('residual_scale')!r} is not known")
            residuals = AdditiveResiduals.from_dict(residuals)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"predictor {path}: its {kind} model is damaged: {err}") from None
    return AccuracyPredictor(
        space,
        model,
        data["checkpoint_sha256"],
        dict(data["metrics"]),
        data["hidden"],
        data["layers"],
        data["dropout"],
        artifact,
        Int8DropModel.from_dict(data["int8_drop"]) if data.get("int8_drop") else None,
        trees,
        residuals,
    )


def measurements_path(trained: TrainedSupernet) -> Path:
    return trained.path.parent / f"measurements.{trained.sha256[:12]}.jsonl"


def read_measurements(path: Path) -> list[Measurement]:
    if not path.exists():
        return []
    rows = []
    with path.open() as f:
        for line in f:
            if line.strip():
                try:
                    rows.append(Measurement(**json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    log.warning("skipping a damaged line in %s (a killed write?)", path)
    return rows


def _parse_measurement(line: bytes) -> Measurement | None:
    try:
        return Measurement(**json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return None


def repair_torn_tail(path: Path) -> None:
    """Drop a torn last line (one a killed write left: no newline, or not a whole record), so
    that the next append starts a line of its own; warns once, as the file is fixed. A whole
    record that lacks only its newline is completed instead."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if not data:
        return
    body = data[:-1] if data.endswith(b"\n") else data
    start = body.rfind(b"\n") + 1  # where the last line begins
    last = body[start:]
    if not last.strip():
        return
    whole = _parse_measurement(last) is not None
    if whole and data.endswith(b"\n"):
        return
    with path.open("r+b") as f:
        if whole:  # the record was written, its newline was not
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            return
        f.truncate(start)
    log.warning(
        "dropped a torn last line of %s (%d bytes, a killed write?); its arch is measured again",
        path,
        len(data) - start,
    )


def measure_archs(
    trained: TrainedSupernet,
    n: int,
    seed: int = 0,
    path: Path | None = None,
    progress: bool = True,
    held_out: int | None = None,
    measure: Callable[[Sequence[Arch]], Iterable[EvalResult]] | None = None,
) -> list[Measurement]:
    """`n` distinct random archs with their supernet accuracy; resumes from `path`. With
    `held_out`, first check that a fit on them would have enough archs (`check_split`).

    `measure(archs)` yields each arch's EvalResult as it is done, in any order; by default
    they are evaluated one by one in this process. A pool of worker processes (`nas
    predictor fit --workers N`) passes its own: each result is written as it arrives, so an
    interrupted run resumes from every arch already measured."""
    if held_out is not None:
        check_split(n, held_out)
    path = path or measurements_path(trained)
    repair_torn_tail(path)
    done = read_measurements(path)
    by_id = {m.arch_id: m for m in done}
    rng = as_rng(seed)
    space = trained.space
    wanted: list[Arch] = []
    seen: set[str] = set()
    attempts = 0
    # The same seed yields the same sequence, so a resumed run asks for the same archs.
    while len(wanted) < n:
        attempts += 1
        if attempts > 100 * n:
            raise PredictorFitError(f"space {space.name!r} has fewer than {n} distinct archs")
        arch = space.sample(rng)
        arch_id = space.arch_id(arch)
        if arch_id not in seen:
            seen.add(arch_id)
            wanted.append(arch)
    todo = [a for a in wanted if space.arch_id(a) not in by_id]
    if todo:
        log.info(
            "measuring %d archs with the supernet (%d already in %s)",
            len(todo),
            len(wanted) - len(todo),
            path,
        )
        if measure is None:
            evaluator = trained.evaluator()

            def measure(archs: Sequence[Arch]) -> Iterator[EvalResult]:
                return (evaluator.evaluate(arch) for arch in archs)

        arch_of = {space.arch_id(a): a for a in todo}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f, Progress(disable=not progress) as bar:
            task = bar.add_task("measuring subnets", total=len(todo))
            for result in measure(todo):
                arch = arch_of[result.arch_id]
                m = Measurement(arch, result.arch_id, result.top1, result.loss)
                f.write(json.dumps(m.__dict__) + "\n")
                f.flush()
                by_id[m.arch_id] = m
                bar.advance(task)
    return [by_id[space.arch_id(a)] for a in wanted]


def measure_int8_drops(
    trained: TrainedSupernet, archs: Sequence[Arch], progress: bool = True
) -> list[float]:
    """top1 - top1_int8 (fractions) of each arch, measured with the supernet."""
    drops = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task("measuring int8 drops", total=len(archs))
        for arch in archs:
            (row,) = trained.measure_quality([arch], ["top1_int8"])
            drops.append(row["top1"] - row["top1_int8"])
            bar.advance(task)
    return drops


def fit_predictor(
    space: SearchSpace,
    measurements: Sequence[Measurement],
    checkpoint_sha256: str,
    held_out: int = 200,
    epochs: int = 300,
    seed: int = 0,
    hidden: int = 400,
    layers: int = 3,
    dropout: float = 0.2,
    weight_decay: float = 1.0,
    model: str = "gbdt",
    trees: int = 300,
    max_depth: int = 3,
    learning_rate: float = 0.05,
) -> AccuracyPredictor:
    """Fit a model (`gbdt` or `mlp`) on all but the last `held_out` measurements; report
    Kendall tau and RMSE on those, and keep their residuals for intervals (with the
    leave-one-out coverage of the 90% interval among them and its width).

    gbdt: scikit-learn's gradient boosting (least squares, 80% subsamples), `trees` trees
    of depth `max_depth`. mlp: a few hundred measured archs whose accuracies differ by about
    their measurement noise are easy to memorise: dropout and strong decoupled weight decay
    (AdamW) keep it smooth (held-out tau 0.70 -> 0.73 over the unregularised MLP).
    """
    if model not in MODELS:
        raise PredictorFitError(f"unknown predictor model {model!r}; choose from {MODELS}")
    check_split(len(measurements), held_out)
    x = np.stack([space.encode(m.arch) for m in measurements]).astype(np.float32)
    y = np.array([m.top1 for m in measurements], dtype=np.float32)
    if model == "gbdt":
        exported = fit_gbdt(
            x[:-held_out].astype(np.float64),
            y[:-held_out].astype(np.float64),
            trees,
            max_depth,
            learning_rate,
            seed,
        )
        predictor = AccuracyPredictor(
            space,
            ensemble_of(exported, space.encoding_size),
            checkpoint_sha256,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            trees=exported,
        )
        settings: dict[str, Any] = {
            "trees": trees,
            "max_depth": max_depth,
            "learning_rate": learning_rate,
        }
    else:
        mlp = _fit_mlp(x[:-held_out], y[:-held_out], space, epochs, seed, hidden, layers,
                       dropout, weight_decay)  # fmt: skip
        predictor = AccuracyPredictor(
            space, mlp, checkpoint_sha256, hidden=hidden, layers=layers, dropout=dropout
        )
        settings = {"epochs": epochs, "hidden": hidden, "layers": layers, "dropout": dropout}
    predicted = predictor.predict_encoded(x[-held_out:])
    truth = y[-held_out:].astype(np.float64)
    tau = kendalltau(predicted, truth).statistic
    train_pred = predictor.predict_encoded(x[:-held_out])
    interval: dict[str, Any] = {}
    if held_out >= MIN_T_ROWS:  # fewer residuals say nothing about a spread: no bounds
        predictor.residuals = AdditiveResiduals.of(
            predicted,
            truth,
            f"{held_out} held-out archs of {len(measurements)} ({model}), / sqrt(p(1 - p))",
            spread=binomial_spread(predicted),
        )
        low, high = predictor.bounds_of(predicted, DEFAULT_COVERAGE)
        interval = {
            # each held-out arch against the interval from the others: out-of-sample
            "interval_coverage": predictor.residuals.leave_one_out_coverage(DEFAULT_COVERAGE),
            "interval_nominal": DEFAULT_COVERAGE,
            "interval_width": float(np.mean(high - low)),  # over the held-out archs
        }
    predictor.metrics = {
        "kendall_tau": float(tau),
        "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
        **interval,
        "train_rmse": float(np.sqrt(np.mean((train_pred - y[:-held_out]) ** 2))),
        "n_train": len(measurements) - held_out,
        "n_held_out": held_out,
        "target": "top1 on the validation split (fraction), supernet with BN recalibration",
        "model": model,
        **settings,
        "seed": seed,
    }
    return predictor


def _fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    space: SearchSpace,
    epochs: int,
    seed: int,
    hidden: int,
    layers: int,
    dropout: float,
    weight_decay: float,
) -> AccuracyMLP:
    x_train, y_train = torch.from_numpy(x), torch.from_numpy(y)
    torch.manual_seed(seed)
    base, scale = float(y_train.mean()), max(float(y_train.std()), 1e-6)
    model = AccuracyMLP(space.encoding_size, hidden, layers, base, scale, dropout)
    target = (y_train - base) / scale
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    gen = torch.Generator().manual_seed(seed)
    batch = 128
    model.train()
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(y_train), generator=gen), batch):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model.standardized(x_train[idx]), target[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model.eval()
