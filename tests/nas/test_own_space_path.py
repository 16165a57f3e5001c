"""The README's worked path for a user's own images and space, end to end through the CLI:
a folder of small RGB images in 4 classes (made here with PIL; nothing downloaded), a space
in YAML, `nas supernet train`, `nas predictor fit`, a search for an MCU and a GPU,
`nas export --quantize int8`, and the int8 ONNX file run in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from nas.cli import app

runner = CliRunner()
SPACE = {  # what the README's section writes in my_space.yaml
    "base": "mnist-mbv3",
    "name": "my-shapes",
    "description": "a user's 16x16 RGB images, 4 classes",
    "in_channels": 3,
    "num_classes": 4,
    "stages": [
        {"width": 16, "depths": [1, 2], "stride": 2, "act": "relu"},
        {"width": 24, "depths": [1, 2], "stride": 2, "act": "h_swish", "se": True},
    ],
    "kernel_sizes": [3, 5],
    "expand_ratios": [3, 4],
    "resolutions": [12, 16],
}


def shapes_folder(root, per_class: int = 40, size: int = 16):
    """Images of 4 kinds, one folder each: a bright square in one of the four corners on
    noise, in a random colour (learnable, but not from one pixel)."""
    rng = np.random.default_rng(0)
    half = size // 2
    for c in range(4):
        (root / f"corner{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            top, left = (c // 2) * half, (c % 2) * half
            pixels[top : top + half, left : left + half] = rng.integers(150, 256, 3)
            Image.fromarray(pixels).save(root / f"corner{c}" / f"{i}.png")
    return root


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_users_images_and_space_to_a_deployed_int8_subnet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shapes_folder(tmp_path / "images")
    (tmp_path / "my_space.yaml").write_text(yaml.safe_dump(SPACE))
    cli("space", "validate", "my_space.yaml")
    train = {
        "space": "my_space.yaml",
        "data": {"kind": "imagefolder", "path": "images", "image_size": 16},
        "out_dir": "runs/my-supernet",
        "batch_size": 32,
        "bn_recalibration_images": 64,
        "phases": [
            {"name": "largest", "epochs": 3, "lr": 0.1},
            {"name": "elastic", "epochs": 1, "lr": 0.03, "ks": [3, 5], "e": [3, 4], "d": [1, 2]},
        ],
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    cli("supernet", "train", "train.yaml", "--no-progress")
    (tmp_path / "my_space.yaml").unlink()  # the trained file carries its space from here on
    cli(
        "predictor",
        "fit",
        "--checkpoint",
        "runs/my-supernet",
        "--n",
        "30",
        "--held-out",
        "6",
        "--no-progress",
    )
    search = {
        "name": "my-shapes-mcu-gpu",
        "supernet": "runs/my-supernet/supernet.pt",
        "predictor": "runs/my-supernet/predictor.pt",
        "objectives": [
            {"metric": "top1", "goal": "maximize"},
            {"metric": "stm32f746.latency_ms", "goal": "minimize"},
        ],
        "targets": {
            "stm32f746": {"peak_sram_kb": 64, "flash_kb": 1000},
            "h100-sxm": {"batch": 64, "precision": "fp16", "runtime": "tensorrt"},
        },
        "algorithm": {"population": 8, "generations": 3, "seed": 0},
        "evaluation": "predictor+verify",
        "database": "sqlite:///runs/nas.db",
    }
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search))
    cli("search", "launch", "search.yaml", "--no-progress")
    front = json.loads(cli("pareto", "1", "--target", "stm32f746", "--format", "json"))["front"]
    assert front and all(row["stm32f746.peak_sram_kb"] <= 64 for row in front)
    best = front[0]["candidate"]
    cli(
        "export",
        "1",
        str(best),
        "--quantize",
        "int8",
        "--calibration-images",
        "32",
        "--out",
        "export",
    )
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["space"].startswith("my-shapes@")  # a space of its own, named by its hash
    # measured on the user's held-out images, in onnxruntime, well above chance (25%)
    assert card["quantization"]["top1"]["int8"]["test"] > 0.5
    assert card["space_definition"]["num_classes"] == 4

    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(
        str(tmp_path / "export" / card["files"]["onnx_int8"]["path"]),
        providers=["CPUExecutionProvider"],
    )
    given = session.get_inputs()[0]
    r = card["arch"]["r"]
    image = np.random.default_rng(1).random((1, 3, r, r), dtype=np.float32)
    (logits,) = session.run(None, {given.name: image})
    assert logits.shape == (1, 4) and np.isfinite(logits).all()
