"""Once-for-all transfer (`nas supernet finetune`): a run on a user's image folder starts
from an official once-for-all file or a trained supernet.pt, with a new head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nas.cli import app
from supernet.errors import CheckpointError
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.ofa_import import load_ofa_checkpoint
from supernet.mbconv.supernet import MBConvSupernet
from supernet.mbconv.transfer import infer_space, transfer_weights
from supernet.space import get_space
from tests.supernet.test_ofa_import import legacy_layout, randomized_ofa


def image_folder(root, classes: int, per_class: int, rgb: bool, size: int = 12):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            shape = (size, size, 3) if rgb else (size, size)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            pixels[: size // 2] //= c + 1  # something per class to learn
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def ofa_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save(legacy_layout(randomized_ofa(1.0, seed=3).state_dict()), path)
    return path


def test_weights_of_an_official_file_start_a_grey_run_with_a_new_head(ofa_file):
    """Every tensor is copied, the first kernel summed over RGB for grey images, and the
    classifier left to learn the user's 5 classes."""
    assert infer_space(ofa_file) == "ofa-mbv3-w1.0"
    base = get_space("ofa-mbv3-w1.0")
    net = MBConvSupernet(base.variant(1, 5))
    report = transfer_weights(net, base, ofa_file)
    source = load_ofa_checkpoint(ofa_file, base).state_dict()
    supernet_state = net.state_dict()
    assert report["reinitialised"] and all(
        k.startswith("classifier.") for k in report["reinitialised"]
    )
    assert len(report["adapted_rgb_to_grey"]) == 1
    grey = report["adapted_rgb_to_grey"][0]
    assert torch.equal(supernet_state[grey], source[grey].sum(1, keepdim=True))
    copied = [k for k in source if k not in report["reinitialised"] and k != grey]
    assert report["copied"] == len(copied)
    assert all(torch.equal(supernet_state[k], source[k]) for k in copied)
    with pytest.raises(CheckpointError, match=r"has shape"):
        transfer_weights(MBConvSupernet(get_space("ofa-mbv3-w1.2")), base, ofa_file)


def test_finetune_from_the_cli_gives_a_searchable_supernet(ofa_file, tmp_path):
    folder = image_folder(tmp_path / "data", classes=2, per_class=6, rgb=True)
    config = tmp_path / "short.yaml"
    config.write_text(
        "space: ignored\nbatch_size: 6\nbn_recalibration_images: 6\nrandom_subnets: 0\n"
        "phases:\n  - {name: largest, epochs: 1, lr: 0.01, r: [128]}\n"
        "  - {name: kernel, epochs: 1, lr: 0.005, ks: [3, 5, 7], r: [128]}\n"
    )
    args = ["supernet", "finetune", "--from", str(ofa_file), "--data", f"imagefolder:{folder}"]
    args += ["--config", str(config), "--out", str(tmp_path / "run"), "--no-progress", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    trained = load_supernet(summary["supernet"])
    origin = trained.meta["initialised_from"]
    assert origin["kind"].startswith("once-for-all") and origin["path"] == str(ofa_file)
    assert trained.space.config.num_classes == 2 and trained.space.config.in_channels == 3
    assert len(trained.meta["history"]) == 2  # the config's two phases
    # searchable: its subnets evaluate like any trained supernet's
    (row,) = trained.measure_quality([trained.space.smallest()])
    assert 0 <= row["top1"] <= 1


def test_finetune_from_a_trained_supernet_and_bad_sources(tiny_supernet, tmp_path):
    folder = image_folder(tmp_path / "grey", classes=3, per_class=6, rgb=False)
    out = tmp_path / "run"
    args = ["supernet", "finetune", "--from", str(tiny_supernet.path), "--data"]
    args += [f"imagefolder:{folder}", "--image-size", "12", "--batch-size", "9"]
    args += ["--out", str(out), "--no-progress", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    trained = load_supernet(out / "supernet.pt")
    origin = trained.meta["initialised_from"]
    assert origin["sha256"] == tiny_supernet.sha256 and origin["kind"].startswith("supernet.pt")
    assert trained.space.config.num_classes == 3
    assert [p["name"] for p in trained.meta["train_config"]["phases"]] == [
        "largest",
        "kernel",
        "depth",
        "expand",
    ]

    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(3)}, junk)
    for source, message in ((junk, "neither a supernet.pt nor"), (tmp_path / "no", "not found")):
        args = ["supernet", "finetune", "--from", str(source), "--data", "mnist"]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and message in result.output, result.output
    result = CliRunner().invoke(
        app, ["supernet", "finetune", "--from", str(junk), "--data", "jpegs", "--out", "x"]
    )
    assert result.exit_code == 2 and "expected imagefolder:PATH" in result.output
