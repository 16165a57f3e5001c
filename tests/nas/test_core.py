"""The core that the doors call: files opened once and checked by hash, one database rule."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import torch
import yaml
from typer.testing import CliRunner

import supernet.io
from nas import core
from nas.cli import app
from nas.evaluation import CandidateEvaluator, evaluator_spec
from nas.search import launch_search, resume_search
from nas.store import Store
from supernet.errors import CheckpointError


@pytest.fixture
def file_reads(monkeypatch):
    """Counts, per file name, how often a trained file is read and hashed in this process."""
    reads: Counter[str] = Counter()
    hashes: Counter[str] = Counter()
    loads = Counter()
    read_artifact, file_sha256, torch_load = (
        supernet.io.read_artifact,
        supernet.io.file_sha256,
        torch.load,
    )

    def counting_read(path, *args, **kwargs):
        artifact = read_artifact(path, *args, **kwargs)
        reads[artifact.path.name] += 1
        hashes[artifact.path.name] += 1  # read_artifact hashes the bytes it loads
        return artifact

    def counting_sha(path):
        hashes[str(path).rsplit("/", 1)[-1]] += 1
        return file_sha256(path)

    def counting_load(*args, **kwargs):
        loads["torch.load"] += 1
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(supernet.io, "read_artifact", counting_read)
    monkeypatch.setattr(supernet.io, "file_sha256", counting_sha)
    monkeypatch.setattr(torch, "load", counting_load)
    # the modules that imported the functions by name see the counting ones too
    for module in ("supernet.family", "supernet.mbconv.checkpoint", "supernet.mbconv.predictor"):
        mod = __import__(module, fromlist=["_"])
        for name, fn in (("read_artifact", counting_read), ("file_sha256", counting_sha)):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, fn)
    return reads, hashes, loads


def _retrained(source, target) -> None:
    """Write at `target` the supernet of `source` with other bytes (as a retrained file)."""
    data = supernet.io.read_checkpoint(source, "nas-supernet/1")
    data["meta"] = {**data["meta"], "note": "retrained"}
    torch.save(data, target)


def _stopped_search_on_a_copy(search_config, tiny_supernet, tmp_path):
    """A search launched on a copy of the tiny supernet and predictor (in tmp_path/run),
    stopped after its first generation: (folder, config, store, outcome)."""
    own = tmp_path / "run"
    own.mkdir()
    shutil.copy(tiny_supernet.path, own / "supernet.pt")
    shutil.copy(tiny_supernet.path.parent / "predictor.pt", own / "predictor.pt")
    config = search_config(
        supernet=str(own / "supernet.pt"),
        predictor=str(own / "predictor.pt"),
        algorithm={"population": 4, "generations": 3},
    )
    store = Store(config.config.database)
    return (
        own,
        config,
        store,
        launch_search(config, store, progress=False, stop_after_generations=1),
    )


@pytest.mark.parametrize("evaluation", ["predictor", "supernet"])
def test_a_search_reads_and_hashes_each_file_once(search_config, file_reads, evaluation):
    reads, hashes, loads = file_reads
    extra = {"predictor": None} if evaluation == "supernet" else {}
    config = search_config(
        evaluation=evaluation, algorithm={"population": 4, "generations": 2}, **extra
    )
    outcome = launch_search(config, Store(config.config.database), progress=False)
    assert outcome.status == "completed"
    assert reads["supernet.pt"] == 1 and hashes["supernet.pt"] == 1
    files = 2 if evaluation == "predictor" else 1
    assert loads["torch.load"] == files
    if evaluation == "predictor":
        assert reads["predictor.pt"] == 1 and hashes["predictor.pt"] == 1


def test_an_evaluator_refuses_a_file_other_than_the_recorded_one(search_config, tmp_path):
    spec = evaluator_spec(search_config().resources)
    CandidateEvaluator.from_spec(spec)  # the recorded file: accepted
    replaced = tmp_path / "supernet.pt"
    _retrained(spec.supernet, replaced)
    import dataclasses

    with pytest.raises(CheckpointError, match="is not the trained file recorded"):
        CandidateEvaluator.from_spec(dataclasses.replace(spec, supernet=str(replaced)))


def test_resume_refuses_a_replaced_supernet(search_config, tiny_supernet, tmp_path):
    own, _, store, partial = _stopped_search_on_a_copy(search_config, tiny_supernet, tmp_path)
    _retrained(own / "supernet.pt", own / "supernet.pt")
    with pytest.raises(CheckpointError, match="not the trained file recorded"):
        resume_search(partial.search_id, store, progress=False)


def test_database_rule(monkeypatch):
    monkeypatch.delenv(core.DATABASE_ENV, raising=False)
    assert core.database_url() == "sqlite:///runs/nas.db"
    assert core.database_url(configured="sqlite:///a.db") == "sqlite:///a.db"
    monkeypatch.setenv(core.DATABASE_ENV, "sqlite:///env.db")
    assert core.database_url(configured="sqlite:///a.db") == "sqlite:///env.db"
    assert core.database_url("sqlite:///flag.db", "sqlite:///a.db") == "sqlite:///flag.db"


def test_launch_honours_the_database_variable(search_config, tmp_path, monkeypatch):
    config = search_config()
    raw = config.config.model_dump(mode="json")
    del raw["database"]  # as in a config that does not name one
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv(core.DATABASE_ENV, url)
    runner = CliRunner()
    launched = runner.invoke(app, ["search", "launch", str(path), "--json"])
    assert launched.exit_code == 0, launched.output
    listed = runner.invoke(app, ["search", "list", "--json"])  # no --db: the variable
    assert listed.exit_code == 0 and '"status": "completed"' in listed.output
    assert (tmp_path / "from-env.db").exists()


def _search_row(store, search_id):
    """What resume could change in a search's row, and how many candidates it has."""
    from sqlalchemy import func, select

    from nas.store import Candidate, Search

    with store.session() as s:
        row = s.get(Search, search_id)
        count = s.scalar(select(func.count()).where(Candidate.search_id == search_id))
        return (row.status, row.message, row.driver, row.lease_until, row.generations_done, count)


def test_resume_uses_the_recorded_files_from_another_directory(
    search_config, tiny_supernet, tmp_path, monkeypatch
):
    own = tmp_path / "run"
    own.mkdir()
    shutil.copy(tiny_supernet.path, own / "supernet.pt")
    shutil.copy(tiny_supernet.path.parent / "predictor.pt", own / "predictor.pt")
    monkeypatch.chdir(tmp_path)
    config = search_config(  # relative paths, as in a config a user writes
        supernet="run/supernet.pt",
        predictor="run/predictor.pt",
        algorithm={"population": 4, "generations": 3},
    )
    store = Store(config.config.database)
    partial = launch_search(config, store, progress=False, stop_after_generations=1)
    with store.session() as s:
        from nas.store import Search

        row = s.get(Search, partial.search_id)
        assert row.supernet.path == str(own / "supernet.pt")
        assert row.predictor.path == str(own / "predictor.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # run/supernet.pt does not resolve from here
    outcome = core.resume(partial.search_id, config.config.database)
    assert outcome.status == "completed" and outcome.candidates == 12


def test_resume_refuses_other_files_and_writes_nothing(search_config, tiny_supernet, tmp_path):
    own, config, store, partial = _stopped_search_on_a_copy(search_config, tiny_supernet, tmp_path)
    search_id, db = partial.search_id, config.config.database
    before = _search_row(store, search_id)
    recorded = supernet.io.file_sha256(own / "supernet.pt")
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(own / "supernet.pt", moved / "supernet.pt")  # the same file, elsewhere
    _retrained(moved / "supernet.pt", own / "supernet.pt")  # another file at the recorded path
    _retrained(moved / "supernet.pt", tmp_path / "other.pt")
    other = supernet.io.file_sha256(tmp_path / "other.pt")
    runner = CliRunner()

    at_recorded = runner.invoke(app, ["search", "resume", str(search_id), "--db", db])
    assert at_recorded.exit_code == 2 and "not the trained file recorded" in at_recorded.output
    assert str(own / "supernet.pt") in at_recorded.output.replace("\n", "")
    override = runner.invoke(
        app,
        ["search", "resume", str(search_id), "--db", db, "--supernet", str(tmp_path / "other.pt")],
    )
    flat = override.output.replace("\n", "")
    assert override.exit_code == 2 and "other.pt is not the trained file recorded" in flat
    assert other[:12] in flat and recorded[:12] in flat
    wrong_predictor = runner.invoke(
        app,
        ["search", "resume", str(search_id), "--db", db, "--predictor", str(moved / "supernet.pt")],
    )
    assert wrong_predictor.exit_code == 2, wrong_predictor.output
    assert _search_row(store, search_id) == before  # nothing written

    copy = str(moved / "supernet.pt")
    resumed = runner.invoke(
        app, ["search", "resume", str(search_id), "--db", db, "--json", "--supernet", copy]
    )
    assert resumed.exit_code == 0, resumed.output
    assert '"status": "completed"' in resumed.output
    with store.session() as s:  # the override is used, not recorded: the file is the same
        from nas.store import Search

        assert s.get(Search, search_id).supernet.path == str(own / "supernet.pt")


def test_resume_says_when_the_recorded_file_is_gone(search_config, tiny_supernet, tmp_path):
    own = tmp_path / "run"
    own.mkdir()
    shutil.copy(tiny_supernet.path, own / "supernet.pt")
    config = search_config(
        supernet=str(own / "supernet.pt"),
        evaluation="supernet",
        predictor=None,
        algorithm={"population": 4, "generations": 2},
    )
    store = Store(config.config.database)
    partial = launch_search(config, store, progress=False, stop_after_generations=1)
    (own / "supernet.pt").unlink()
    from nas.errors import SearchError

    with pytest.raises(SearchError, match=r"is not there; pass --supernet PATH"):
        core.resume(partial.search_id, config.config.database)
    with pytest.raises(SearchError, match="launched without a predictor"):
        core.resume(partial.search_id, config.config.database, predictor=tiny_supernet.path)


def test_resume_uses_the_files_of_its_own_launch_not_of_the_first_with_that_hash(
    search_config, tiny_supernet, tiny_predictor, tmp_path
):
    """Searches launched from copies of the same files share those files' rows (by
    SHA-256); each resumes from the copy it was itself launched with, and says which one
    is missing."""
    from nas.errors import SearchError
    from nas.store import Search

    copies = [tmp_path / name for name in ("first", "second", "third")]
    search_ids = []
    for folder in copies:
        folder.mkdir()
        shutil.copy(tiny_supernet.path, folder / "supernet.pt")
        shutil.copy(tiny_predictor, folder / "predictor.pt")
        config = search_config(
            supernet=str(folder / "supernet.pt"),
            predictor=str(folder / "predictor.pt"),
            algorithm={"population": 4, "generations": 2},
        )
        store = Store(config.config.database)
        partial = launch_search(config, store, progress=False, stop_after_generations=1)
        search_ids.append(partial.search_id)
    first, _, third = copies
    db = config.config.database
    with store.session() as s:  # one row per file: the first launch registered its path
        row = s.get(Search, search_ids[2])
        assert row.supernet.path == str(first / "supernet.pt")
        assert row.predictor.path == str(first / "predictor.pt")

    (third / "predictor.pt").unlink()  # the first copy is still there: not a stand-in
    with pytest.raises(SearchError) as missing:
        core.resume(search_ids[2], db)
    message = str(missing.value)
    assert f"was launched with, {third / 'predictor.pt'}, is not there" in message
    assert "pass --predictor PATH" in message

    shutil.rmtree(first)
    resumed = core.resume(search_ids[1], db)
    assert (resumed.status, resumed.generations_done) == ("completed", 2)
