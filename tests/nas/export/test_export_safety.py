"""Export never overwrites a user's files by surprise and never leaves half an export."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from nas.errors import ExportError
from nas.export import export_candidate, writers
from nas.pareto import pareto_front
from nas.search import launch_search
from nas.store import Export, Store
from supernet.mbconv.checkpoint import TrainedSupernet


@pytest.fixture
def searched(search_config):
    config = search_config(algorithm={"population": 8, "generations": 2, "seed": 4})
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    return store, outcome.search_id, pareto_front(store, outcome.search_id).front[0].trial


def exports(store: Store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(Export))


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fails the test if the export gets as far as measuring the subnet."""

    def refuse(*args, **kwargs):
        raise AssertionError("the subnet was evaluated before --out was checked")

    monkeypatch.setattr(TrainedSupernet, "exportable", refuse)


def test_out_is_checked_before_any_work(searched, tmp_path, no_evaluation):
    store, search_id, candidate = searched
    a_file = tmp_path / "model.onnx"
    a_file.write_text("mine")
    with pytest.raises(ExportError, match="is a file"):
        export_candidate(store, search_id, candidate, "onnx", a_file)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.onnx").write_text("mine")
    with pytest.raises(ExportError, match=r"already holds files.*--force"):
        export_candidate(store, search_id, candidate, "onnx", folder)
    assert (folder / "model.onnx").read_text() == "mine" and a_file.read_text() == "mine"
    assert exports(store) == 0


def test_force_replaces_only_the_exported_files(searched, tmp_path):
    store, search_id, candidate = searched
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.onnx").write_text("old")
    (folder / "notes.txt").write_text("keep me")
    result = export_candidate(store, search_id, candidate, "onnx", folder, force=True)
    assert (folder / "model.onnx").read_bytes() != b"old"
    assert (folder / "notes.txt").read_text() == "keep me"
    assert result.files["onnx"] == folder / "model.onnx" and (folder / "model_card.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_an_interrupted_export_leaves_nothing(searched, tmp_path, monkeypatch):
    store, search_id, candidate = searched

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the ONNX check

    monkeypatch.setattr(writers, "_onnx_check", fail)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export_candidate(store, search_id, candidate, "torchscript,onnx", out)
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("nas.db")]
    assert not out.exists() and left == []  # no export, no staging folder
    assert exports(store) == 0
