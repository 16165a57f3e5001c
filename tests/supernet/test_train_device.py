"""The trainer's device and precision settings (`device`, `amp`, `compile`), exercised on a
CPU: CI has no GPU, so bf16 and fp16 autocast run through torch's CPU autocast, which
follows the same code path as CUDA's; `experiments/gpu_train_check.py` times the real GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from supernet.device import Precision, cpu_copy, resolve_device
from supernet.errors import ConfigError
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.train import TrainConfig, train_supernet
from supernet.run import TrainingInterrupted

# 32 training images in batches of 16: two steps per epoch
LARGEST = {"name": "largest", "epochs": 2, "lr": 0.1}
KERNEL = {"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5, 7]}
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")


def config(out_dir, **overrides) -> TrainConfig:
    fields = {
        "space": "mnist-mbv3",
        "data": {"kind": "mnist", "limit": 32},
        "out_dir": str(out_dir),
        "batch_size": 16,
        "threads": 2,
        "bn_recalibration_images": 16,
        "phases": [LARGEST, KERNEL],
    }
    return TrainConfig(**{**fields, **overrides})


def checkpoint(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)


@NO_GPU
def test_auto_trains_on_the_cpu_in_float32_and_cuda_is_refused_without_a_gpu(tmp_path):
    assert resolve_device("auto") == torch.device("cpu")
    assert Precision("auto", torch.device("cpu")).name == "off"
    with pytest.raises(ConfigError, match="device: cuda, but torch sees no CUDA GPU"):
        train_supernet(config(tmp_path / "cuda", device="cuda"), progress=False)
    assert not (tmp_path / "cuda" / "checkpoint.pt").exists()


def test_bf16_autocast_trains_and_the_files_hold_float32(tmp_path):
    fp32 = train_supernet(config(tmp_path / "fp32", amp="off"), progress=False)
    bf16 = train_supernet(config(tmp_path / "bf16", amp="bf16"), progress=False)
    trained = load_supernet(bf16.path)
    weights = trained.net.state_dict()
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    assert 0.0 <= bf16.final["acc_largest"] <= 1.0
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in bf16.history)
    # autocast did run: bf16's rounding moved the weights away from the float32 run's
    other = load_supernet(fp32.path).net.state_dict()
    diff = max(float((weights[k] - other[k]).abs().max()) for k in weights if "running" not in k)
    assert diff > 1e-4


def test_fp16_with_a_gradient_scaler_resumes_bit_exact(tmp_path):
    phases = [LARGEST]
    unbroken = train_supernet(config(tmp_path / "a", amp="fp16", phases=phases), progress=False)
    broken = config(tmp_path / "b", amp="fp16", phases=phases)
    with pytest.raises(TrainingInterrupted):
        train_supernet(broken, progress=False, stop_after_steps=3)
    saved = checkpoint(tmp_path / "b")["grad_scaler"]  # the scaler's state travels along
    assert saved["scale"] > 0 and "_growth_tracker" in saved
    resumed = train_supernet(broken, resume=True, progress=False)
    expected, got = checkpoint(tmp_path / "a")["model"], checkpoint(tmp_path / "b")["model"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.final == unbroken.final


def test_checkpoints_hold_cpu_tensors():
    state = {"a": torch.ones(2), "b": [torch.zeros(1), {"c": torch.ones(1)}], "n": 3}
    copied = cpu_copy(state)
    assert copied["n"] == 3 and copied["b"][1]["c"].device.type == "cpu"


@pytest.mark.slow  # inductor compiles the stem and head on this CPU: minutes
def test_compiled_static_parts_train_like_eager_ones(tmp_path):
    eager = train_supernet(config(tmp_path / "eager", phases=[LARGEST]), progress=False)
    compiled = train_supernet(
        config(tmp_path / "compiled", phases=[LARGEST], compile=True), progress=False
    )
    a, b = checkpoint(tmp_path / "eager")["model"], checkpoint(tmp_path / "compiled")["model"]
    assert set(a) == set(b)  # module.compile keeps the state_dict's keys
    assert max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()) < 1e-3
    assert compiled.final["acc_largest"] == pytest.approx(eager.final["acc_largest"], abs=0.05)


def test_gpu_train_check_script_runs_on_the_cpu():
    """experiments/gpu_train_check.py is meant for a GPU machine; its CPU mode runs it all."""
    script = Path(__file__).resolve().parents[2] / "experiments" / "gpu_train_check.py"
    args = ["--device", "cpu", "--space", "mnist-mbv3", "--resolution", "28", "--batch", "8"]
    args += ["--steps", "2", "--warmup", "1", "--ratio-repeats", "2", "--amp", "bf16"]
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["amp"] == "bf16" and figures["subnets_per_step"] == 4
    assert figures["train_images_per_s"] > 0 and figures["supernet_vs_static_step_ratio"] > 0
