"""Pareto queries and export of a searched candidate."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sqlalchemy import select

from nas.errors import ExportError, NotFoundError, QueryError
from nas.export import export_candidate, parse_formats
from nas.pareto import (
    load_candidates,
    non_dominated,
    pareto_front,
    plot,
    plot_file,
    to_csv,
    to_json,
)
from nas.search import launch_search
from nas.store import Export, Store


@pytest.fixture
def finished(search_config):
    config = search_config(algorithm={"population": 16, "generations": 4, "seed": 2})
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    return store, outcome.search_id, config


def test_non_dominated_on_hand_made_points():
    points = np.array([[1, 5], [2, 2], [3, 1], [2, 3], [4, 4], [2, 2]])
    assert non_dominated(points) == [0, 1, 2, 5]  # [2,3] and [4,4] are dominated; ties kept
    assert non_dominated(np.zeros((0, 2))) == []


def brute_force_front(points: np.ndarray) -> list[int]:
    """Every row that no other row dominates, by comparing all pairs."""
    return [
        i for i, p in enumerate(points) if not any(np.all(q <= p) and np.any(q < p) for q in points)
    ]


@pytest.mark.parametrize("columns", [1, 2, 3, 5])
def test_non_dominated_matches_all_pairs_compared(columns):
    rng = np.random.default_rng(columns)
    for n in (1, 2, 7, 60, 300):
        points = rng.integers(0, 6, size=(n, columns)).astype(float)  # many ties
        assert non_dominated(points) == brute_force_front(points)
        smooth = rng.normal(size=(n, columns))
        assert non_dominated(smooth) == brute_force_front(smooth)


def front_by_hand(store, search_id, front, where_ok=lambda c: True) -> set[str]:
    """The arch ids of the front, from every feasible candidate compared with all others."""
    rows = [c for c in load_candidates(store, search_id, feasible_only=True) if where_ok(c)]
    signs = [-1 if o.goal == "maximize" else 1 for o in front.objectives]
    points = np.array(
        [
            [s * c.metrics[o.metric] for s, o in zip(signs, front.objectives, strict=True)]
            for c in rows
        ]
    )
    return {rows[i].arch_id for i in brute_force_front(points)}


def test_front_is_every_non_dominated_arch(finished):
    store, search_id, _ = finished
    front = pareto_front(store, search_id)
    assert {c.arch_id for c in front.front} == front_by_hand(store, search_id, front)
    first = {c.arch_id: c.trial for c in reversed(load_candidates(store, search_id))}
    assert all(c.trial == first[c.arch_id] for c in front.front)  # each arch's first trial
    cut = sorted(c.metrics["stm32f746.peak_sram_kb"] for c in front.front)[len(front.front) // 2]
    tight = pareto_front(store, search_id, where=[f"stm32f746.peak_sram_kb<{cut}"])
    expected = front_by_hand(
        store, search_id, tight, lambda c: c.metrics["stm32f746.peak_sram_kb"] < cut
    )
    assert {c.arch_id for c in tight.front} == expected and expected


def test_front_is_feasible_and_non_dominated(finished):
    store, search_id, _ = finished
    front = pareto_front(store, search_id)
    assert front.front and all(c.feasible for c in front.front)
    assert len({c.arch_id for c in front.front}) == len(front.front)
    signs = [-1 if o.goal == "maximize" else 1 for o in front.objectives]
    feasible = load_candidates(store, search_id, feasible_only=True)
    for c in front.front:
        mine = [s * c.metrics[o.metric] for s, o in zip(signs, front.objectives, strict=True)]
        for other in feasible:
            theirs = [
                s * other.metrics[o.metric] for s, o in zip(signs, front.objectives, strict=True)
            ]
            assert not (
                all(t <= m for t, m in zip(theirs, mine, strict=True))
                and any(t < m for t, m in zip(theirs, mine, strict=True))
            )


def test_where_sets_a_tighter_limit(finished):
    store, search_id, _ = finished
    feasible = load_candidates(store, search_id, feasible_only=True)
    values = sorted(c.metrics["stm32f746.peak_sram_kb"] for c in feasible)
    cut = values[len(values) // 2]
    tight = pareto_front(store, search_id, target="stm32f746", where=[f"peak_sram_kb<={cut}"])
    assert tight.front and all(c.metrics["stm32f746.peak_sram_kb"] <= cut for c in tight.front)
    both = pareto_front(store, search_id, where=["stm32f746.flash_kb<500", "top1>=0"])
    assert [str(c) for c in both.conditions] == ["stm32f746.flash_kb<500", "top1>=0"]
    # a condition the search's own limit (flash_kb <= 600) already implies is dropped
    implied = pareto_front(store, search_id, where=["stm32f746.flash_kb<1000", "top1>=0"])
    assert [str(c) for c in implied.conditions] == ["top1>=0"]


def test_target_restricts_objectives(finished):
    store, search_id, _ = finished
    front = pareto_front(store, search_id, target="h100-sxm")
    assert [o.metric for o in front.objectives] == ["top1", "h100-sxm.latency_ms"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"where": ["peak_sram_kb=256"]}, "cannot read filter"),
        ({"where": ["joules<1"]}, "no device of this search reports 'joules'"),
        ({"where": ["latency_ms<1"]}, "write DEVICE.latency_ms or pass --target"),
        ({"target": "note10"}, "search has no target 'note10'"),
        ({"where": ["h100-sxm.sram<1"]}, "device h100-sxm has no metric 'sram'"),
        ({"where": ["peak_sram_kb<=.."]}, r"filter 'peak_sram_kb<=\.\.': '\.\.' is not a number"),
        ({"where": ["top1>=1e"]}, "filter 'top1>=1e'"),
    ],
)
def test_query_errors(finished, kwargs, message):
    store, search_id, _ = finished
    with pytest.raises(QueryError, match=message):
        pareto_front(store, search_id, **kwargs)


def test_unknown_search(finished):
    store, _, _ = finished
    with pytest.raises(NotFoundError, match="no search with id 404"):
        pareto_front(store, 404)


def test_json_csv_and_plot(finished, tmp_path):
    store, search_id, _ = finished
    front = pareto_front(store, search_id)
    data = json.loads(to_json(front))
    assert len(data["front"]) == len(front.front) and "arch" in data["front"][0]
    rows = list(csv.DictReader(io.StringIO(to_csv(front))))
    assert len(rows) == len(front.front) and json.loads(rows[0]["arch"])["r"] > 0
    path = plot(front, tmp_path / "front.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bare = plot(front, tmp_path / "bare")  # no suffix: a PNG, and the path says so
    assert bare == tmp_path / "bare.png" and bare.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "bare").exists()
    assert plot(front, tmp_path / "front.svg").read_text().lstrip().startswith("<?xml")


def test_plot_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(QueryError, match=r"'\.xyz'.*\.png, \.pdf, \.svg"):
        plot_file(tmp_path / "front.xyz")
    assert plot_file("front") == plot_file("front.png") == type(tmp_path)("front.png")
    assert not list(tmp_path.iterdir())


def test_export_writes_checked_files_and_card(finished, tmp_path):
    store, search_id, _ = finished
    best = pareto_front(store, search_id).front[0]
    result = export_candidate(
        store, search_id, best.trial, "torchscript,onnx,state_dict", tmp_path / "out"
    )
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["arch"] == best.arch and card["arch_id"] == best.arch_id
    assert card["checkpoint"]["sha256"] == result.card["checkpoint"]["sha256"]
    assert set(card["costs"]) == {"stm32f746", "h100-sxm"}
    assert card["accuracy"]["predicted_top1"] == pytest.approx(best.metrics["top1"])
    assert 0 <= card["accuracy"]["measured_top1"]["test"] <= 1
    assert card["onnx_check"]["max_abs_diff"] <= card["onnx_check"]["allowed"]
    assert {"torch", "onnxruntime", "nas"} <= set(card["versions"])

    r = best.arch["r"]
    x = torch.randn(2, 1, r, r)
    scripted = torch.jit.load(str(tmp_path / "out" / "model.torchscript.pt"))
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():  # float32 rounding: relative to logits that may reach ~100
        np.testing.assert_allclose(scripted(x).numpy(), onnx_out, rtol=1e-5, atol=1e-4)
    saved = torch.load(tmp_path / "out" / "model.state_dict.pt", weights_only=True)
    assert saved["arch"] == best.arch
    with store.session() as s:
        record = s.scalars(select(Export)).one()
        assert record.formats == ["torchscript", "onnx", "state_dict"]


def test_export_errors(finished, tmp_path):
    store, search_id, _ = finished
    with pytest.raises(NotFoundError, match="no candidate 9999"):
        export_candidate(store, search_id, 9999, "onnx", tmp_path / "out")
    with pytest.raises(ExportError, match="unknown export format"):
        parse_formats("onnx,coreml")


def test_export_to_a_relative_folder_records_its_absolute_path(finished, tmp_path, monkeypatch):
    from nas.core import get_export

    store, search_id, config = finished
    best = pareto_front(store, search_id).front[0]
    monkeypatch.chdir(tmp_path)
    result = export_candidate(store, search_id, best.trial, "state_dict", "rel/out")
    assert result.out_dir == type(tmp_path)("rel/out")  # returned as given
    with store.session() as s:
        record = s.scalars(select(Export)).one()
        recorded = record.out_dir
    assert recorded == str((tmp_path / "rel" / "out").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # as a server started in another folder
    info = get_export(result.export_id, db=config.config.database)
    assert info["out_dir"] == recorded
    assert {f["name"] for f in info["files"]} == {"model.state_dict.pt", "model_card.json"}
