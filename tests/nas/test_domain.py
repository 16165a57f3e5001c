"""A target's valid domain restricts the space: a Note10 search draws only what it can cost."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import latency_models as lm
import supernet
from nas import core
from nas.domain import search_domain
from nas.errors import SearchConfigError
from nas.pareto import load_candidates
from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Store
from supernet.data import DatasetConfig
from supernet.mbconv.checkpoint import save_supernet
from supernet.mbconv.predictor import Measurement, fit_predictor

# The Note10 tables time once-for-all's own network: 3 channels, 1,000 classes, width 1.2.
OFA = "ofa-mbv3-w1.2"


def test_note10_restricts_the_resolution_gene():
    space = supernet.get_space("ofa-mbv3-w1.0")
    domain = search_domain(
        space, {"note10": lm.load_hardware("note10"), "h100-sxm": lm.load_hardware("h100-sxm")}
    )
    assert domain is not None and domain.gene == "r"
    assert domain.choices[0] == 160 and domain.choices[-1] == 224
    assert set(domain.reasons) == {"note10"}
    assert search_domain(space, {"h100-sxm": lm.load_hardware("h100-sxm")}) is None


def test_targets_without_a_common_resolution_are_refused():
    with pytest.raises(SearchConfigError, match=r"no r of space 'mnist-mbv3' \(12..32\)"):
        search_domain(supernet.get_space("mnist-mbv3"), {"note10": lm.load_hardware("note10")})


@pytest.fixture(scope="module")
def ofa_files(tmp_path_factory):
    """An OFA MobileNetV3 supernet file (untrained weights, and a dataset it never reads:
    the test is about which archs are drawn) and a predictor fitted on made-up accuracies;
    a predictor-driven search runs neither network nor data."""
    out = tmp_path_factory.mktemp("ofa")
    space = supernet.get_space(OFA)
    data_config = DatasetConfig(kind="imagefolder", path=str(out / "never-read"))
    imagenet_like = SimpleNamespace(
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), classes=list(range(1000))
    )
    path = out / "supernet.pt"
    sha = save_supernet(supernet.build(space), space, imagenet_like, data_config, path, {})
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(16)]
    measurements = [
        Measurement(dict(a), space.arch_id(a), float(0.5 + 0.02 * a["r"] / 224), 1.0) for a in archs
    ]
    predictor = fit_predictor(space, measurements, sha, held_out=4, epochs=5)
    return path, predictor.save(out / "predictor.pt")


def test_a_note10_search_runs_on_the_tables_domain(ofa_files, tmp_path):
    supernet_path, predictor_path = ofa_files
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    config = check_search_config(
        {
            "supernet": str(supernet_path),
            "predictor": str(predictor_path),
            "targets": {"note10": {"latency_ms": 100}, "h100-sxm": {"batch": 64}},
            "algorithm": {"population": 8, "generations": 2},
            "database": db,
        }
    )
    outcome = launch_search(config, Store(db), progress=False)
    assert outcome.status == "completed"
    rows = load_candidates(Store(db), outcome.search_id)
    assert len(rows) == 16 and all(160 <= c.arch["r"] <= 224 for c in rows)
    shown = core.get_search(outcome.search_id, db)
    assert shown["domain"]["choices"][0] == 160
    assert "note10" in shown["domain"]["restricted_by"]


def test_a_config_whose_targets_cannot_cost_its_space_is_refused(search_config):
    with pytest.raises(SearchConfigError, match=r"note10 can cost input resolutions 160\.\.224"):
        search_config(targets={"note10": {"latency_ms": 100}})
