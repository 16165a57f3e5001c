"""Ranking within a family of networks (experiments/gpu_families.py): the shipped GPU
profiles order the networks of each held-out family at least as well as MACs do."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

import latency_models as lm

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "latency_models" / "profiles" / "gpu"
sys.path.insert(0, str(ROOT / "experiments"))
from gpu_families import (  # noqa: E402
    HELD_OUT_FAMILIES,
    family_ranking,
    held_out_family,
    kendall_tau_b,
    ranking_family,
    stratified_tau,
)


def test_families_group_timm_names() -> None:
    assert ranking_family("regnetx_032") == "regnetx"
    assert ranking_family("tf_efficientnet_b3") == "tf_efficientnet"
    assert ranking_family("efficientnet_b3") == "efficientnet"
    assert ranking_family("not_a_network") is None
    assert not held_out_family(None)
    assert "regnetx" in HELD_OUT_FAMILIES and "regnety" not in HELD_OUT_FAMILIES


def test_fit_never_sees_a_held_out_family() -> None:
    from fit_gpu_profiles import validation_network

    for fits in GPU.glob("fits/*.csv"):
        with open(fits, newline="") as f:
            for row in csv.DictReader(f):
                if held_out_family(ranking_family(row["network"])):
                    assert row["split"] == "validation", (fits.name, row["network"])
                    assert validation_network(row["network"])


def test_kendall_tau_b_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 30).astype(float)
    tau, pairs = kendall_tau_b(x, y)
    assert pairs == 30 * 29 // 2
    assert tau == pytest.approx(kendalltau(x, y).statistic)
    assert np.isnan(kendall_tau_b(np.ones(4), np.arange(4.0))[0])


def test_stratified_tau_compares_rows_of_one_stratum_only() -> None:
    # each stratum in order, but the second stratum's values all lie below the first's
    predicted = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    measured = np.array([10.0, 20.0, 30.0, 1.0, 2.0, 3.0])
    assert stratified_tau(list("aaabbb"), predicted, measured) == pytest.approx(1.0)
    assert kendall_tau_b(predicted, measured)[0] < 0.5
    # the pairs weigh: a 3-row stratum (3 pairs) in order, a 2-row one (1 pair) reversed
    tau = stratified_tau(list("aaabb"), np.array([1, 2, 3, 1, 2.0]), np.array([1, 2, 3, 2, 1.0]))
    assert tau == pytest.approx((3 - 1) / 4)


def _used_rows(profile: str) -> list[dict[str, str]]:
    with open(GPU / "fits" / f"{profile}.csv", newline="") as f:
        used = list(csv.DictReader(f))
    tables: dict[str, list[dict[str, str]]] = {}
    for u in used:
        if u["file"] not in tables:
            with open(GPU / "public" / u["file"], newline="") as f:
                tables[u["file"]] = list(csv.DictReader(f))
    # each row in the stack that timed it, as bench_fidelity.py predicts it
    return [{**tables[u["file"]][int(u["line"]) - 2], "stack": u["stack"]} for u in used]


@pytest.mark.parametrize("profile", ["rtx4090", "v100-sxm2"])
def test_held_out_families_rank_at_least_as_well_as_macs(profile: str) -> None:
    rows = [r for r in _used_rows(profile) if held_out_family(ranking_family(r["network"]))]
    model = lm.load_hardware(profile)
    checked = family_ranking(model, rows, (32, 1 << 30))
    assert checked, f"{profile}: no held-out family at batch >= 32"
    for family in checked:
        assert family["kendall_tau"] >= family["macs_kendall_tau"], (profile, family)
