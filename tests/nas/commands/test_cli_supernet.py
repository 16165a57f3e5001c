"""`nas supernet train/eval` and `nas predictor fit/predict`, run in-process."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from nas.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def tiny_config_file(tmp_path, out):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "space": "mnist-mbv3",
                "data": {"kind": "mnist", "limit": 32},
                "out_dir": str(out),
                "batch_size": 16,
                "bn_recalibration_images": 16,
                "phases": [
                    {"name": "largest", "epochs": 1, "lr": 0.1},
                    {"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5, 7]},
                ],
            }
        )
    )
    return path


def test_train_eval_fit_predict(tmp_path):
    out = tmp_path / "run"
    config = tiny_config_file(tmp_path, tmp_path / "ignored")
    result = run("supernet", "train", config, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["supernet"] == str(out / "supernet.pt") and 0 <= summary["acc_largest"] <= 1

    again = run("supernet", "train", config, "--out", out, "--resume", "--json")
    assert (
        again.exit_code == 0
        and json.loads(again.output.splitlines()[-1])["sha256"] == (summary["sha256"])
    )

    evaluated = run("supernet", "eval", "-c", out, "-a", "largest", "--random", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    rows = [json.loads(line) for line in evaluated.output.strip().splitlines()]
    assert len(rows) == 3 and all(0 <= r["top1"] <= 1 for r in rows)
    table = run("supernet", "eval", "-c", out / "supernet.pt", "--split", "test")
    assert table.exit_code == 0 and "top-1" in table.output

    fitted = run(
        "predictor", "fit", "-c", out, "--n", "24", "--held-out", "4", "--epochs", "5", "--json"
    )
    assert fitted.exit_code == 0, fitted.output
    metrics = json.loads(fitted.output.strip().splitlines()[-1])
    assert metrics["n_held_out"] == 4 and metrics["predictor"] == str(out / "predictor.pt")
    assert 0 <= metrics["interval_coverage"] <= 1 and metrics["interval_width"] >= 0

    predicted = run("predictor", "predict", "-p", out / "predictor.pt", "-a", "smallest", "-c", out)
    assert predicted.exit_code == 0, predicted.output
    row = json.loads(predicted.output.strip().splitlines()[-1])
    assert row["predicted_top1_low"] <= row["predicted_top1"] <= row["predicted_top1_high"]
    bad = run(
        "predictor", "predict", "-p", out / "predictor.pt", "-a", "smallest", "--coverage", "1"
    )
    assert bad.exit_code == 2 and "--coverage 1.0: choose a number in (0, 1)" in bad.output


def test_predictor_refused_for_another_checkpoint(tmp_path, tiny_supernet):
    out = tmp_path / "run"
    config = tiny_config_file(tmp_path, out)
    assert run("supernet", "train", config, "--json").exit_code == 0
    assert (
        run(
            "predictor",
            "fit",
            "-c",
            out,
            "--n",
            "16",
            "--held-out",
            "4",
            "--epochs",
            "2",
            "--no-progress",
        ).exit_code
        == 0
    )
    result = run(
        "predictor",
        "predict",
        "-p",
        out / "predictor.pt",
        "-a",
        "largest",
        "-c",
        tiny_supernet.path,
    )
    assert result.exit_code == 2
    assert "was fitted on a checkpoint with SHA-256" in result.output


def test_user_errors_are_one_line(tmp_path):
    missing = run("supernet", "train", tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and "config file not found" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: mnist-mbv3\nphases: [{name: a, epochs: 0, lr: 1}]\n")
    result = run("supernet", "train", bad)
    assert result.exit_code == 2 and "phases.0.epochs" in result.output
    corrupt = tmp_path / "supernet.pt"
    corrupt.write_bytes(b"garbage")
    result = run("supernet", "eval", "-c", corrupt)
    assert result.exit_code == 2 and "cannot read checkpoint" in result.output
    folder = tmp_path / "imgs"
    folder.mkdir()
    bad.write_text(
        f"space: mnist-mbv3\ndata: {{kind: imagefolder, path: {folder}}}\n"
        "phases: [{name: a, epochs: 1, lr: 1}]\n"
    )
    result = run("supernet", "train", bad)
    assert result.exit_code == 2 and "no class subfolders" in result.output


def test_predictor_fit_refuses_to_replace_a_predictor_without_force(tmp_path, tiny_supernet):
    """Searches record the predictor's SHA-256: a second fit into the same file is refused
    before anything is measured, unless --force; the checkpoint may be named as the file or
    its folder."""
    import shutil

    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(tiny_supernet.path, folder / "supernet.pt")
    args = ["--n", "12", "--held-out", "2", "--epochs", "2", "--no-progress", "--json"]
    first = run("predictor", "fit", "-c", folder, *args)
    assert first.exit_code == 0, first.output
    predictor = folder / "predictor.pt"
    before = predictor.read_bytes()
    (log,) = folder.glob("measurements.*.jsonl")
    measured = log.read_bytes()

    for checkpoint in (folder, folder / "supernet.pt"):
        again = run("predictor", "fit", "-c", checkpoint, *args)
        assert again.exit_code == 2, again.output
        assert again.output.strip().splitlines() == [
            f"error: {predictor} already holds a predictor (searches may be recorded with its "
            "SHA-256); pass --force to replace it or --out to write another file"
        ]
        assert predictor.read_bytes() == before and log.read_bytes() == measured

    other = tmp_path / "other.pt"
    other.write_bytes(b"not mine")
    refused = run("predictor", "fit", "-c", folder, "--out", other, *args)
    assert refused.exit_code == 2 and f"{other} already holds a predictor" in refused.output
    assert other.read_bytes() == b"not mine"

    # a folder as --out is where predictor.pt goes, and is refused when it already holds one
    into = run("predictor", "fit", "-c", folder, "--out", tmp_path, *args)
    assert into.exit_code == 0, into.output
    assert json.loads(into.output.strip().splitlines()[-1])["predictor"] == str(
        tmp_path / "predictor.pt"
    )
    again = run("predictor", "fit", "-c", folder, "--out", tmp_path, *args)
    assert f"{tmp_path / 'predictor.pt'} already holds a predictor" in again.output

    forced = run("predictor", "fit", "-c", folder / "supernet.pt", "--force", *args)
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output.strip().splitlines()[-1])["predictor"] == str(predictor)
