"""A target's valid domain restricts the space: a Note10 search draws only what it can cost."""

from __future__ import annotations

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
