"""The accuracy predictor: fit quality on a known function, save/load, mismatch refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

import supernet
from supernet.mbconv.predictor import (
    Measurement,
    PredictorMismatchError,
    fit_predictor,
    load_predictor,
    measure_archs,
)


def synthetic(space, n, seed=0):
    """Accuracy that really depends on the genes: bigger and sharper is better."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(99).uniform(0, 1, space.encoding_size)
    rows = []
    for _ in range(n):
        arch = space.sample(rng)
        top1 = 0.8 + 0.002 * float(space.encode(arch) @ weights)
        rows.append(Measurement(arch, space.arch_id(arch), top1, 1 - top1))
    return rows


def test_fit_ranks_held_out_archs(tmp_path):
    space = supernet.get_space("mnist-mbv3")
    predictor = fit_predictor(space, synthetic(space, 400), "ab" * 32, held_out=100, epochs=150)
    assert predictor.metrics["kendall_tau"] > 0.8
    assert predictor.metrics["rmse"] < 0.01
    path = predictor.save(tmp_path / "predictor.pt")
    loaded = load_predictor(path)
    archs = [space.sample(i) for i in range(5)]
    assert np.allclose(loaded.predict(archs), predictor.predict(archs))
    assert loaded.metrics == predictor.metrics


def test_fit_needs_enough_archs():
    space = supernet.get_space("mnist-mbv3")
    with pytest.raises(ValueError, match="at least 10 training"):
        fit_predictor(space, synthetic(space, 12), "0" * 64, held_out=5)


def test_mismatched_checkpoint_is_refused(tmp_path, tiny_supernet):
    space = tiny_supernet.space
    predictor = fit_predictor(space, synthetic(space, 40), "f" * 64, held_out=5, epochs=2)
    path = predictor.save(tmp_path / "p.pt")
    with pytest.raises(PredictorMismatchError, match="refit it with `nas predictor fit"):
        load_predictor(path, tiny_supernet)
    with pytest.raises(PredictorMismatchError, match="SHA-256"):
        load_predictor(path, tiny_supernet.path)
    good = fit_predictor(space, synthetic(space, 40), tiny_supernet.sha256, held_out=5, epochs=2)
    good_path = good.save(tmp_path / "good.pt")
    assert load_predictor(good_path, tiny_supernet.path).checkpoint_sha256 == tiny_supernet.sha256


def test_predictor_for_another_space_is_refused(tmp_path):
    space = supernet.get_space("mnist-mbv3")
    path = fit_predictor(space, synthetic(space, 40), "0" * 64, held_out=5, epochs=2).save(
        tmp_path / "p.pt"
    )
    import torch

    data = torch.load(path, weights_only=True)
    data["space"] = "mcu-mbv2"
    torch.save(data, path)
    with pytest.raises(PredictorMismatchError, match="encodes 141 features"):
        load_predictor(path)


def test_measurements_resume_from_their_file(tiny_supernet, tmp_path):
    from supernet.mbconv.predictor import measurements_path

    assert measurements_path(tiny_supernet).name == (
        f"measurements.{tiny_supernet.sha256[:12]}.jsonl"
    )
    path = tmp_path / "measurements.jsonl"
    first = measure_archs(tiny_supernet, 4, seed=3, path=path, progress=False)
    assert len(path.read_text().splitlines()) == 4
    more = measure_archs(tiny_supernet, 6, seed=3, path=path, progress=False)
    assert [m.arch_id for m in more[:4]] == [m.arch_id for m in first]
    lines = path.read_text().splitlines()
    assert len(lines) == 6  # the first four were not measured again
    assert all(0.0 <= json.loads(line)["top1"] <= 1.0 for line in lines)
