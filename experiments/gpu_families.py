"""Families of the public GPU rows' networks, the families no GPU fit ever sees, and the
ranking within a family that a cost model must get right.

A family is the networks of one design that differ in width, depth, kernel or resolution:
`latency_models.families.FAMILIES`' family of a network (efficientnet B0-B7, regnetx 200MF..
32GF, resnet 18..152 and its stems, ...), with timm's TensorFlow ports (`tf_*`, another
padding) a family of their own. A family whose sha256(name) % 3 == 0 is held out: none of
its networks is fitted by experiments/fit_gpu_profiles.py, on any GPU (efficientnet,
efficientnet_lite, tf_efficientnet_lite, tf_mobilenetv3, lcnet, regnetx, wide_resnet, fbnet).

Within a family the ranking that matters is the one a search makes between neighbours run
the same way: rows are compared only with rows of the same setting (framework, precision,
runtime, layout) and batch range, by the time per image (latency / batch: timm's tables
time each network at its own batch size), and MACs rank them by MACs per image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

import latency_models as lm
from latency_models.families import FAMILIES


def ranking_family(network: str) -> str | None:
    """The family a network is ranked within (None: not a family network)."""
    net = FAMILIES.get(network)
    if net is None:
        return None
    return f"tf_{net.family}" if network.startswith("tf_") else net.family


def held_out_family(family: str | None) -> bool:
    """One family in three is kept out of every fit, all its networks on every GPU."""
    return family is not None and int(hashlib.sha256(family.encode()).hexdigest(), 16) % 3 == 0


HELD_OUT_FAMILIES = sorted(
    {f for f in map(ranking_family, FAMILIES) if f is not None and held_out_family(f)}
)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Kendall's tau-b of two sequences (ties in either count as neither concordant nor
    discordant), and the number of pairs; nan when either is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    untied_x, untied_y = np.count_nonzero(dx), np.count_nonzero(dy)
    if not untied_x or not untied_y:
        return float("nan"), len(i)
    return float(np.sum(dx * dy) / np.sqrt(untied_x * untied_y)), len(i)


def stratified_tau(
    strata: Sequence[Hashable], predicted: np.ndarray, measured: np.ndarray
) -> float:
    """Kendall's tau-b within each stratum (pairs of rows of one setting only), averaged with
    each stratum's number of pairs as its weight; nan without a stratum of 2 rows."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(strata):
        groups.setdefault(key, []).append(i)
    total = weight = 0.0
    for idx in groups.values():
        if len(idx) < 2:
            continue
        tau, pairs = kendall_tau_b(predicted[idx], measured[idx])
        if np.isnan(tau):
            continue
        total += tau * pairs
        weight += pairs
    return total / weight if weight else float("nan")


def family_ranking(
    model: lm.CostModel, rows: Sequence[Mapping[str, str]], batches: tuple[int, int]
) -> list[dict[str, Any]]:
    """Per family of 3 networks or more among the public `rows` (their CSV fields) whose
    batch lies in `batches` (low, high): the model's within-family Kendall tau beside MACs'."""
    low, high = batches
    chosen = [
        r
        for r in rows
        if low <= int(r["batch"]) <= high and ranking_family(r["network"]) is not None
    ]
    if not chosen:
        return []
    specs = [lm.reference_spec(r["network"], int(r["resolution"]), int(r["batch"])) for r in chosen]
    predicted = np.empty(len(chosen))
    # each row in the stack that timed it where the row names one (gpu/fits/*.csv's column),
    # else the profile's stack of its runtime
    settings: dict[tuple[str, str, str | None, str], list[int]] = {}
    for i, r in enumerate(chosen):
        key = (r["precision"], r["runtime"], r.get("stack") or None, r["layout"])
        settings.setdefault(key, []).append(i)
    for (precision, runtime, stack, layout), idx in settings.items():
        out = model.predict_arrays(
            [specs[i] for i in idx],
            precision=precision,
            runtime=runtime,
            stack=stack,
            layout=layout,
        )
        predicted[idx] = out["latency_ms"]
    batch = np.array([int(r["batch"]) for r in chosen], float)
    per_image = {
        "model": predicted / batch,
        "macs": np.array([s.macs for s in specs], float),
        "measured": np.array([float(r["latency_ms"]) for r in chosen]) / batch,
    }
    families: dict[str, list[int]] = {}
    for i, r in enumerate(chosen):
        families.setdefault(str(ranking_family(r["network"])), []).append(i)
    out_rows = []
    for family, idx in sorted(families.items()):
        networks = {chosen[i]["network"] for i in idx}
        if len(networks) < 3:
            continue
        strata = [
            tuple(chosen[i][k] for k in ("framework", "precision", "runtime", "layout"))
            for i in idx
        ]
        measured = per_image["measured"][idx]
        out_rows.append(
            {
                "family": family,
                "held_out": held_out_family(family),
                "networks": len(networks),
                "rows": len(idx),
                "settings": len(set(strata)),
                "kendall_tau": round(stratified_tau(strata, per_image["model"][idx], measured), 4),
                "macs_kendall_tau": round(
                    stratified_tau(strata, per_image["macs"][idx], measured), 4
                ),
            }
        )
    return out_rows
