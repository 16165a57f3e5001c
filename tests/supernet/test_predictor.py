"""The accuracy predictor: fit quality on a known function, save/load, mismatch refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

import supernet
from supernet.errors import UserError
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


@pytest.mark.parametrize("model", ["gbdt", "mlp"])
def test_fit_ranks_held_out_archs(tmp_path, model):
    space = supernet.get_space("mnist-mbv3")
    predictor = fit_predictor(
        space, synthetic(space, 400), "ab" * 32, held_out=100, epochs=150, model=model
    )
    assert predictor.kind == model and predictor.metrics["model"] == model
    assert predictor.metrics["kendall_tau"] > 0.8
    assert predictor.metrics["rmse"] < 0.01
    path = predictor.save(tmp_path / "predictor.pt")
    loaded = load_predictor(path)
    assert loaded.kind == model
    archs = [space.sample(i) for i in range(5)]
    assert np.allclose(loaded.predict(archs), predictor.predict(archs))
    assert loaded.metrics == predictor.metrics


def test_trees_predict_as_scikit_learn_does():
    """The numpy tree walk gives scikit-learn's own predictions of the same fitted trees."""
    from sklearn.ensemble import GradientBoostingRegressor

    from latency_models.trees import ensemble_of, fit_gbdt

    space = supernet.get_space("mnist-mbv3")
    rows = synthetic(space, 200)
    x = np.stack([space.encode(m.arch) for m in rows]).astype(np.float64)
    y = np.array([m.top1 for m in rows])
    exported = fit_gbdt(x, y, trees=40, max_depth=3, learning_rate=0.1, seed=3)
    reference = GradientBoostingRegressor(
        n_estimators=40, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=3
    ).fit(x, y)
    ours = ensemble_of(exported, space.encoding_size).predict(x)
    assert np.allclose(ours, reference.predict(x), atol=1e-7)


def test_a_damaged_tree_model_is_refused(tmp_path):
    import torch

    space = supernet.get_space("mnist-mbv3")
    path = fit_predictor(space, synthetic(space, 40), "0" * 64, held_out=5, trees=5).save(
        tmp_path / "p.pt"
    )
    data = torch.load(path, weights_only=True)
    data["model"]["trees"][0]["left"] = [0]
    torch.save(data, path)
    with pytest.raises(Exception, match="gbdt model is damaged"):
        load_predictor(path)


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
    data["space"] = "mcu-mbv2"  # a file of the time a predictor stored only its space's name
    del data["space_definition"], data["space_hash"]
    torch.save(data, path)
    with pytest.raises(PredictorMismatchError, match="encodes 141 features"):
        load_predictor(path)
    data["space_definition"] = supernet.get_space("mcu-mbv2").definition()  # a newer file
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


def test_too_few_training_archs_are_refused_before_measuring(tiny_supernet, tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app
    from supernet.errors import UserError
    from supernet.mbconv.predictor import PredictorFitError, check_split, measurements_path

    with pytest.raises(PredictorFitError, match="leave 2 to train on") as err:
        check_split(12, 10)
    assert isinstance(err.value, UserError)
    path = tmp_path / "m.jsonl"
    with pytest.raises(PredictorFitError):
        measure_archs(tiny_supernet, 12, path=path, progress=False, held_out=10)
    assert not path.exists()
    log = measurements_path(tiny_supernet)
    before = log.read_bytes() if log.exists() else None
    folder = tiny_supernet.path.parent
    result = CliRunner().invoke(
        app, ["predictor", "fit", "-c", str(folder), "--n", "12", "--held-out", "10"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("error: need at least 10 training and 2 held-out archs")
    assert "--n" in result.output and "--held-out" in result.output
    assert (log.read_bytes() if log.exists() else None) == before  # nothing measured


def test_a_torn_last_line_is_dropped_once(tiny_supernet, tmp_path, caplog):
    path = tmp_path / "measurements.jsonl"
    first = measure_archs(tiny_supernet, 3, seed=5, path=path, progress=False)
    text = path.read_text()
    path.write_text(text[: len(text) - 20])  # a killed write: the last record cut short
    with caplog.at_level("WARNING"):
        again = measure_archs(tiny_supernet, 4, seed=5, path=path, progress=False)
    torn = [r for r in caplog.records if "torn last line" in r.getMessage()]
    assert len(torn) == 1
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and path.read_text().endswith("\n")
    assert [json.loads(line)["arch_id"] for line in lines[:2]] == [m.arch_id for m in first[:2]]
    assert {json.loads(line)["arch_id"] for line in lines} == {m.arch_id for m in again}
    caplog.clear()
    with caplog.at_level("WARNING"):
        measure_archs(tiny_supernet, 4, seed=5, path=path, progress=False)
    assert not [
        r for r in caplog.records if "torn" in r.getMessage() or "damaged" in r.getMessage()
    ]
    assert len(path.read_text().splitlines()) == 4


def test_a_whole_last_record_without_its_newline_is_kept(tiny_supernet, tmp_path):
    path = tmp_path / "measurements.jsonl"
    measure_archs(tiny_supernet, 2, seed=6, path=path, progress=False)
    path.write_text(path.read_text().rstrip("\n"))
    more = measure_archs(tiny_supernet, 3, seed=6, path=path, progress=False)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and [json.loads(x)["arch_id"] for x in lines] == [
        m.arch_id for m in more
    ]


def test_a_run_folder_stands_for_its_predictor(tiny_supernet, tiny_predictor):
    folder = tiny_supernet.path.parent
    assert load_predictor(folder, folder).artifact.path == type(folder)(tiny_predictor).resolve()


def noisy(space, n, seed):
    """`synthetic` plus measurement noise (0.5 points): what an interval must cover."""
    rng = np.random.default_rng(seed + 1000)
    return [
        Measurement(m.arch, m.arch_id, m.top1 + float(rng.normal(0, 0.005)), m.loss)
        for m in synthetic(space, n, seed)
    ]


def test_intervals_cover_archs_neither_the_model_nor_its_residuals_saw(tmp_path):
    space = supernet.get_space("mnist-mbv3")
    # trained on 200, residuals of 100 held out; checked on 300 archs drawn afresh
    measured = noisy(space, 300, 0)
    predictor = fit_predictor(space, measured, "ab" * 32, held_out=100, trees=100)
    test = noisy(space, 300, 1)
    archs, truth = [m.arch for m in test], np.array([m.top1 for m in test])
    predicted = predictor.predict(archs)
    low, high = predictor.predict_bounds(archs, 0.9)
    assert np.all(low <= predicted) and np.all(predicted <= high)
    assert 0.8 <= np.mean((truth >= low) & (truth <= high)) <= 0.97
    narrow, _ = predictor.predict_bounds(archs, 0.5)
    with pytest.raises(UserError, match=r"coverage: 1.0 is not in \(0, 1\)"):
        predictor.predict_bounds(archs, 1.0)
    assert np.all(narrow >= low)  # a lower coverage asks for a narrower interval
    width = high - low  # binomial spread: narrower nearer 1
    assert width[np.argmax(predicted)] < width[np.argmin(predicted)]
    m = predictor.metrics
    assert 0.8 <= m["interval_coverage"] <= 0.97 and m["interval_nominal"] == 0.9
    held_low, held_high = predictor.predict_bounds([r.arch for r in measured[-100:]])
    assert m["interval_width"] == pytest.approx(float(np.mean(held_high - held_low)))
    loaded = load_predictor(predictor.save(tmp_path / "p.pt"))
    assert loaded.residuals == predictor.residuals
    assert np.allclose(loaded.predict_bounds(archs)[1], high)


def test_a_predictor_saved_before_intervals_loads_and_gives_no_bounds(tmp_path):
    import torch

    space = supernet.get_space("mnist-mbv3")
    path = fit_predictor(space, synthetic(space, 40), "0" * 64, held_out=5, trees=5).save(
        tmp_path / "p.pt"
    )
    data = torch.load(path, weights_only=True)
    torch.save({**data, "residual_scale": "log"}, path)
    with pytest.raises(Exception, match="residual_scale 'log' is not known"):
        load_predictor(path)
    del data["residuals"], data["residual_scale"]  # the file format before intervals
    torch.save(data, path)
    old = load_predictor(path)
    archs = [space.sample(i) for i in range(3)]
    assert old.predict(archs).shape == (3,) and not old.has_bounds
    with pytest.raises(UserError, match="kept no held-out residuals"):
        old.predict_bounds(archs)
    # two held-out archs say nothing about a spread: no intervals either
    two = fit_predictor(space, synthetic(space, 40), "0" * 64, held_out=2, trees=5)
    assert not two.has_bounds and "interval_coverage" not in two.metrics
