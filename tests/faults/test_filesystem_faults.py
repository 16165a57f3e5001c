"""Exports meet a filesystem that cannot take them: a full disk (a small tmpfs), a read-only
bind mount, a mount point given as --out; and an export worker killed with its files staged.
Each ends in one error line naming the cause and the path (a failed row for an HTTP export),
with nothing half written. The mounts need root; without it those tests skip."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nas.cli import app
from nas.export import export_candidate, queue_export, run_export_job
from nas.store.status import COMPLETED, FAILED
from tests.faults import harness
from tests.faults.harness import half_written, staged


@pytest.fixture
def mount():
    """Makes a mount for the test (a harness.mounted manager), unmounted at teardown; skips
    the test where none can be made (not root, or a container that refuses)."""
    with contextlib.ExitStack() as stack:

        def make(manager: contextlib.AbstractContextManager[Path]) -> Path:
            try:
                return stack.enter_context(manager)
            except harness.MountUnavailable as err:
                pytest.skip(str(err))

        yield make


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_a_cli_export_to_a_full_disk_is_one_line_and_leaves_nothing(searched, tmp_path, mount, fmt):
    store, search_id, candidate = searched
    full = mount(harness.full_disk(tmp_path / "full"))
    for out in (full / "out", full):  # a folder on the full disk; the mount point itself
        done = harness.nas_export(search_id, candidate, out, store.url, fmt)
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert error_lines(done.stderr) == [
            f"error: no space left on device (ENOSPC) writing {out}; the export was not written"
        ], done.stderr[-3000:]
        assert half_written(full) == []


def test_a_cli_export_to_a_read_only_mount_is_one_line_and_leaves_nothing(
    searched, tmp_path, mount
):
    store, search_id, candidate = searched
    read_only = mount(harness.read_only(tmp_path / "source", tmp_path / "ro"))
    for out in (read_only / "out", read_only):
        args = ["export", str(search_id), str(candidate), "--format", "state_dict"]
        result = CliRunner().invoke(app, [*args, "--out", str(out), "--db", store.url])
        assert result.exit_code == 2, (result.output, result.exception)
        assert result.output.startswith(f"error: read-only file system (EROFS) writing {out}")
        assert "Traceback" not in result.output
    assert half_written(tmp_path / "source") == [] and staged(tmp_path) == []


def test_an_export_into_an_empty_mount_point_moves_its_files_in(searched, tmp_path, mount):
    store, search_id, candidate = searched
    tmpfs = mount(harness.mounted(tmp_path / "tmpfs", "-t", "tmpfs", "-o", "size=64m", "tmpfs"))
    # a bind mount of a folder of the same filesystem: os.path.ismount does not see it
    (tmp_path / "source").mkdir()
    bound = mount(harness.mounted(tmp_path / "bound", "--bind", str(tmp_path / "source")))
    for out in (tmpfs, bound):
        result = export_candidate(store, search_id, candidate, "state_dict", out)
        assert sorted(p.name for p in out.iterdir()) == ["model.state_dict.pt", "model_card.json"]
        assert result.files["state_dict"].is_file()
    assert staged(tmp_path) == []


def test_an_http_export_on_a_full_data_folder_fails_with_the_cause(searched, tmp_path, mount):
    store, search_id, candidate = searched
    data_dir = mount(harness.full_disk(tmp_path / "data"))
    info = harness.http_export(store, data_dir, search_id, candidate, ["onnx"])
    out = data_dir / "exports" / str(info["id"])
    assert info["status"] == FAILED, info
    assert info["message"] == (
        f"no space left on device (ENOSPC) writing {out}; the export was not written"
    )
    assert half_written(data_dir / "exports") == []


def test_a_killed_export_worker_leaves_no_staging_once_its_export_is_taken_over(searched, tmp_path):
    store, search_id, candidate = searched
    data_dir = tmp_path / "service"
    export_id = queue_export(store, search_id, candidate, ["state_dict"], data_dir)
    harness.kill_export_worker(store.url, export_id, tmp_path)
    exports_dir = data_dir / "exports"
    assert len(staged(exports_dir)) == 1  # what the kill left, until a worker takes over
    assert run_export_job(store, export_id) == COMPLETED  # as the supervisor's next worker
    assert staged(exports_dir) == []
    assert (exports_dir / str(export_id) / "model.state_dict.pt").is_file()
