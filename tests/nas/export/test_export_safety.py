"""Export never overwrites a user's files by surprise and never leaves half an export."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nas.cli import app
from nas.errors import ExportError
from nas.export import CARD_NAME, export_candidate, writers
from nas.store import Export, Store
from supernet.mbconv.checkpoint import TrainedSupernet
from tests.faults.harness import disk_fails_writing, staged


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


# ----- the disk fails: one line naming the cause and the path, nothing left half written -----


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT], ids=errno.errorcode.get
)
def test_a_write_that_fails_is_one_error_naming_the_cause_and_the_path(
    searched, tmp_path, monkeypatch, code
):
    store, search_id, candidate = searched
    disk_fails_writing(monkeypatch, code)
    out = tmp_path / "out"
    with pytest.raises(ExportError) as err:
        export_candidate(store, search_id, candidate, "torchscript,state_dict", out)
    message = str(err.value)
    assert message.startswith(f"{os.strerror(code).lower()} ({errno.errorcode[code]})"), message
    assert str(out) in message and "\n" not in message
    assert not out.exists() and staged(tmp_path) == []
    assert exports(store) == 0


def test_the_cli_prints_a_full_disk_in_one_line(searched, tmp_path, monkeypatch):
    store, search_id, candidate = searched
    disk_fails_writing(monkeypatch, errno.ENOSPC)
    out = tmp_path / "out"
    args = ["export", str(search_id), str(candidate), "--format", "state_dict"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--db", store.url])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: no space left on device (ENOSPC) writing ")
    assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert not out.exists() and staged(tmp_path) == []


def a_mount_point(monkeypatch, folder: Path) -> None:
    """`folder` behaves as a mount point does: os.path.ismount says so, and renaming onto it
    or removing it is EBUSY (the kernel's answer for a mount point)."""
    real_replace, real_rmdir, real_ismount = os.replace, os.rmdir, os.path.ismount

    def busy(path) -> None:
        if Path(path) == folder:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))

    def replace(source, target, *args, **kwargs):
        busy(target)
        return real_replace(source, target, *args, **kwargs)

    def rmdir(path, *args, **kwargs):
        busy(path)
        return real_rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == folder or real_ismount(path))
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rmdir", rmdir)


def test_an_empty_mount_point_as_out_receives_the_files(searched, tmp_path, monkeypatch):
    store, search_id, candidate = searched
    out = tmp_path / "mnt"
    out.mkdir()
    a_mount_point(monkeypatch, out)
    result = export_candidate(store, search_id, candidate, "state_dict", out)
    assert sorted(p.name for p in out.iterdir()) == ["model.state_dict.pt", CARD_NAME]
    assert result.files["state_dict"] == out / "model.state_dict.pt"
    assert staged(tmp_path) == [] and exports(store) == 1


def test_a_move_into_a_mount_point_that_fails_takes_back_what_it_moved(
    searched, tmp_path, monkeypatch
):
    store, search_id, candidate = searched
    out = tmp_path / "mnt"
    out.mkdir()
    a_mount_point(monkeypatch, out)
    moved = []
    replace = os.replace

    def fail_the_second_move(source, target, *args, **kwargs):
        if len(moved) == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source), None, str(target))
        moved.append(target)
        return replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", fail_the_second_move)
    with pytest.raises(ExportError, match=r"^no space left on device \(ENOSPC\) writing "):
        export_candidate(store, search_id, candidate, "state_dict", out)
    assert len(moved) == 1 and list(out.iterdir()) == [] and staged(tmp_path) == []
    assert exports(store) == 0


def test_a_mount_point_not_seen_as_one_is_an_error_that_keeps_the_folder(
    searched, tmp_path, monkeypatch
):
    store, search_id, candidate = searched
    out = tmp_path / "mnt"
    out.mkdir()
    a_mount_point(monkeypatch, out)
    monkeypatch.setattr(os.path, "ismount", lambda path: False)  # nor in /proc's mount table
    with pytest.raises(ExportError) as err:
        export_candidate(store, search_id, candidate, "state_dict", out)
    assert str(err.value).startswith(f"device or resource busy (EBUSY) writing {out}")
    assert out.is_dir() and list(out.iterdir()) == [] and staged(tmp_path) == []
