"""What `nas supernet train --workers N` refuses before Ray starts: every config error a
one-process run refuses, in the same one line, and a cluster that lacks what was asked;
and Ctrl-C's one line. Ray never starts here: start_ray is replaced by a tripwire."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import nas.commands.supernet as supernet_commands
import nas.training
from nas.cli import app
from nas.training import resource_shortfall, train_distributed
from supernet.errors import UserError
from supernet.mbconv.train import TrainConfig, train_supernet
from supernet.run import STATE_FILE, TrainingInterrupted
from tests.supernet.test_transfer import image_folder

PHASE = {"name": "largest", "epochs": 2, "lr": 0.1}


class RayWouldStart(Exception):
    """Raised where train_distributed would start Ray: every check before it passed."""


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def start_ray(*args, **kwargs):
        raise RayWouldStart

    monkeypatch.setattr(nas.training, "start_ray", start_ray)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """20 small grey images in 2 classes, read in milliseconds: each check here loads the
    data as a run does, and the bundled MNIST takes seconds."""
    return image_folder(tmp_path_factory.mktemp("images"), classes=2, per_class=10, rgb=False)


def train_config(images, out, **overrides) -> TrainConfig:
    fields = {
        "space": "mnist-mbv3",
        "data": {"kind": "imagefolder", "path": str(images), "image_size": 16},
        "out_dir": str(out),
        "batch_size": 8,
        "threads": 1,
        "bn_recalibration_images": 8,
        "phases": [PHASE],
    }
    return TrainConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, images) -> TrainConfig:
    """A one-process run stopped in its second epoch: a run folder with a checkpoint."""
    run = train_config(images, tmp_path_factory.mktemp("stopped"))
    with pytest.raises(TrainingInterrupted):
        train_supernet(run, progress=False, stop_after_steps=3)  # 2 steps an epoch
    return run


def copy_of(run: TrainConfig, out) -> TrainConfig:
    shutil.copytree(run.out_dir, out)
    return run.model_copy(update={"out_dir": str(out)})


def one_process_error(run: TrainConfig, resume: bool = False) -> UserError:
    with pytest.raises(UserError) as refused:
        train_supernet(run, progress=False, resume=resume)
    return refused.value


BAD_CONFIGS = {
    "unknown space": {"space": "nope"},
    "a phase's choice outside the space": {"phases": [{**PHASE, "ks": [9]}]},
    "a missing data folder": {"data": {"kind": "imagefolder", "path": "/nonexistent"}},
    "a missing init_from file": {"init_from": "/nonexistent/supernet.pt"},
}


@pytest.mark.parametrize("overrides", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_a_config_error_is_refused_before_ray_starts_in_the_one_process_line(
    tmp_path, images, overrides
):
    run = train_config(images, tmp_path / "run", **overrides)
    expected = one_process_error(run)
    with pytest.raises(type(expected)) as refused:
        train_distributed(run, workers=2)
    assert str(refused.value) == str(expected) and "\n" not in str(expected)


def test_a_run_folder_is_refused_or_resumed_as_a_one_process_run_would(tmp_path, stopped_run):
    run = copy_of(stopped_run, tmp_path / "run")
    expected = one_process_error(run)
    with pytest.raises(type(expected), match="pass --resume") as refused:
        train_distributed(run, workers=2)
    assert str(refused.value) == str(expected)
    other = run.model_copy(update={"seed": 1})
    expected = one_process_error(other, resume=True)
    with pytest.raises(type(expected), match=r"differs in \['seed'\]") as refused:
        train_distributed(other, workers=2, resume=True)
    assert str(refused.value) == str(expected)
    with pytest.raises(RayWouldStart):  # under its own config, the run resumes
        train_distributed(run, workers=2, resume=True)


def test_a_run_with_a_relative_out_dir_resumes_on_workers(tmp_path, monkeypatch, stopped_run):
    """The driver resolves out_dir; the saved config's relative one names the same folder."""
    monkeypatch.chdir(tmp_path)
    run = copy_of(stopped_run, tmp_path / "runs" / "x").model_copy(update={"out_dir": "runs/x"})
    with pytest.raises(RayWouldStart):
        train_distributed(run, workers=2, resume=True)


def test_the_cli_prints_a_workers_config_error_in_one_line(tmp_path, images):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(train_config(images, tmp_path / "run", space="nope").model_dump()))
    result = CliRunner().invoke(app, ["supernet", "train", str(path), "--workers", "2"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown search space 'nope'; ")


@pytest.mark.parametrize("saved", [False, True], ids=["before an epoch", "after an epoch"])
def test_ctrl_c_ends_the_cli_with_one_line_and_exit_code_130(tmp_path, images, monkeypatch, saved):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(supernet_commands.CLASSIFIER, "train", interrupted)
    out = tmp_path / "run"
    if saved:
        out.mkdir()
        (out / STATE_FILE).write_bytes(b"")
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(train_config(images, out).model_dump()))
    result = CliRunner().invoke(app, ["supernet", "train", str(path)])
    assert result.exit_code == 130
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: ")
    expected = "add --resume to continue" if saved else "holds nothing to resume"
    assert expected in lines[0]


def test_the_shortfall_names_what_the_cluster_lacks():
    one_cpu_node = [{"CPU": 2.0}]
    assert (
        resource_shortfall(one_cpu_node, 2, {"CPU": 1.0, "GPU": 1.0})
        == "--gpus-per-worker 1 × --workers 2 needs 2 GPUs; the Ray cluster has 0"
    )
    assert (
        resource_shortfall(one_cpu_node, 2, {"CPU": 2.0})
        == "threads 2 (CPUs per worker) × --workers 2 needs 4 CPUs; the Ray cluster has 2"
    )
    assert resource_shortfall(one_cpu_node, 2, {"CPU": 1.0}) is None
    # enough GPUs in all, but no node holds the 2 that one worker takes
    two_gpu_nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    shortfall = resource_shortfall(two_gpu_nodes, 1, {"CPU": 1.0, "GPU": 2.0})
    assert shortfall is not None and "hold only 0 workers" in shortfall
    assert resource_shortfall(two_gpu_nodes, 2, {"CPU": 4.0, "GPU": 1.0}) is None
    assert resource_shortfall(two_gpu_nodes, 4, {"CPU": 1.0, "GPU": 0.5}) is None
    assert resource_shortfall(two_gpu_nodes, 5, {"CPU": 1.0, "GPU": 0.5}) is not None
