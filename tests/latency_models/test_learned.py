"""The learned predictor: features, exact tree export, training, profile errors."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
import supernet
from latency_models.models.learned import FEATURES, features, train
from tests.latency_models.conftest import residual_net


def _data(n: int = 60):
    space = supernet.get_space("mnist-mbv3")
    rng = np.random.default_rng(0)
    specs = [space.to_spec(space.sample(rng)) for _ in range(n)]
    # a synthetic device: per-layer overhead plus work (a stand-in for a measurement CSV)
    latency = np.array([0.03 * len(s.layers) + s.macs / 2e8 for s in specs])
    return specs, latency


def test_features_by_hand():
    x = features([residual_net()])[0]
    f = dict(zip(FEATURES, x, strict=True))
    assert f["conv_macs"] == 1152 and f["depthwise_macs"] == 576 and f["pointwise_macs"] == 256
    assert f["conv_layers"] == 1 and f["elementwise_layers"] == 1
    assert f["elementwise_out_elems"] == 64 and f["batch"] == 1 and f["resolution"] == 4
    x4 = features([residual_net(batch=4)])[0]
    assert dict(zip(FEATURES, x4, strict=True))["conv_macs"] == 4 * 1152


def test_exported_trees_predict_exactly_as_sklearn():
    from sklearn.ensemble import GradientBoostingRegressor

    specs, latency = _data()
    profile = train(specs, latency, name="toy", trees=50, max_depth=3, seed=0)
    hw = lm.from_profile(profile, "toy.yaml")
    reference = GradientBoostingRegressor(
        n_estimators=50, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=0
    ).fit(features(specs), np.log(latency))
    expected = np.exp(reference.predict(features(specs)))
    assert np.allclose(hw.predict_arrays(specs)["latency_ms"], expected, rtol=1e-9)
    assert profile["trained_on"]["train_mape"] < 0.1


def test_fit_retrains_and_needs_enough_rows():
    specs, latency = _data()
    hw = lm.from_profile(train(specs, latency, name="t", trees=20), "t.yaml")
    fit = hw.fit(specs, {"latency_ms": latency * 2})
    assert fit.after["latency_ms_mape"] < fit.before["latency_ms_mape"]
    with pytest.raises(lm.HardwareError, match="at least 10 measured networks"):
        train(specs[:5], latency[:5], name="t")


def test_profile_errors():
    specs, latency = _data(20)
    good = train(specs, latency, name="t", trees=5)
    with pytest.raises(lm.ProfileError, match="field 'features': does not match"):
        lm.from_profile({**good, "features": ["macs"]}, "t.yaml")
    trees = [dict(t) for t in good["model"]["trees"]]
    trees[1]["left"] = trees[1]["left"][:-1]
    bad = {**good, "model": {**good["model"], "trees": trees}}
    with pytest.raises(lm.ProfileError, match=r"model\.trees\[1\]': .*differ in length"):
        lm.from_profile(bad, "t.yaml")
    with pytest.raises(lm.ProfileError, match=r"field 'model\.type': value 'mlp' is not allowed"):
        lm.from_profile({**good, "model": {**good["model"], "type": "mlp"}}, "t.yaml")
