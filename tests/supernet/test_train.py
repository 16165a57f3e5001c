"""Progressive-shrinking training: tiny runs, exact resume, configs, schedule, sorting."""

from __future__ import annotations

import itertools

import pytest
import torch
import yaml

from supernet.data import DatasetConfig
from supernet.errors import ConfigError
from supernet.io import read_checkpoint
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.train import (
    PhaseChoices,
    PhaseConfig,
    TrainConfig,
    Trainer,
    load_train_config,
    train_supernet,
)
from supernet.run import TrainingInterrupted, cosine_schedule

# 32 training images in batches of 16: two steps per epoch.
TINY_DATA = {"kind": "mnist", "limit": 32}
TINY_PHASES = [
    {"name": "largest", "epochs": 1, "lr": 0.1},
    {"name": "kernel", "epochs": 2, "lr": 0.05, "ks": [3, 5, 7]},
    {"name": "depth", "epochs": 1, "lr": 0.02, "ks": [3, 5, 7], "d": [2, 3, 4]},
    {"name": "expand-1", "epochs": 1, "lr": 0.02, "ks": [3, 5, 7], "d": [2, 3, 4], "e": [4, 6]},
    {"name": "expand-2", "epochs": 2, "lr": 0.02, "ks": [3, 5, 7], "d": [2, 3, 4], "e": [3, 4, 6]},
]


def tiny_config(out_dir, **overrides) -> TrainConfig:
    fields = {
        "space": "mnist-mbv3",
        "data": TINY_DATA,
        "out_dir": str(out_dir),
        "batch_size": 16,
        "threads": 2,
        "bn_recalibration_images": 16,
        "phases": TINY_PHASES,
    }
    return TrainConfig(**{**fields, **overrides})


def model_state(path):
    return read_checkpoint(path, "nas-supernet/1")["model"]


def test_tiny_run_goes_through_every_phase(tmp_path):
    result = train_supernet(tiny_config(tmp_path / "run"), progress=False)
    assert [h["phase"] for h in result.history] == [
        "largest",
        "kernel",
        "kernel",
        "depth",
        "expand-1",
        "expand-2",
        "expand-2",
    ]
    assert result.history[-1]["step"] == 2 * 7
    assert 0.0 <= result.final["acc_largest"] <= 1.0
    trained = load_supernet(result.path)
    assert trained.space.name == "mnist-mbv3" and trained.sha256 == result.sha256
    assert (tmp_path / "run" / "history.jsonl").read_text().count("\n") == 7


def test_killed_and_resumed_run_equals_unbroken_run(tmp_path):
    unbroken = train_supernet(tiny_config(tmp_path / "a"), progress=False)

    broken = tiny_config(tmp_path / "b")
    # Killed mid-epoch in phase "kernel" (step 4 of 14), then twice more: once right after a
    # phase boundary where channels get sorted, once in the last phase.
    for stop in (4, 9, 12):
        with pytest.raises(TrainingInterrupted):
            train_supernet(broken, resume=True, progress=False, stop_after_steps=stop)
    resumed = train_supernet(broken, resume=True, progress=False)

    expected, got = model_state(unbroken.path), model_state(resumed.path)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key

    def without_time(history):
        return [
            {k: v for k, v in h.items() if k not in ("seconds", "train_seconds")} for h in history
        ]

    assert without_time(resumed.history) == without_time(unbroken.history)


def test_completed_run_is_reused(tmp_path):
    first = train_supernet(tiny_config(tmp_path / "run", phases=TINY_PHASES[:1]), progress=False)
    again = train_supernet(
        tiny_config(tmp_path / "run", phases=TINY_PHASES[:1]), resume=True, progress=False
    )
    assert again.sha256 == first.sha256


def test_existing_run_needs_resume_and_same_config(tmp_path):
    config = tiny_config(tmp_path / "run", phases=TINY_PHASES[:2])
    with pytest.raises(TrainingInterrupted):
        train_supernet(config, progress=False, stop_after_steps=3)  # after the first epoch
    with pytest.raises(ConfigError, match="already holds a training run"):
        train_supernet(config, progress=False)
    changed = tiny_config(tmp_path / "run", phases=TINY_PHASES[:2], seed=5)
    with pytest.raises(ConfigError, match=r"config differs in \['seed'\]"):
        train_supernet(changed, resume=True, progress=False)


def test_sandwich_trains_elastic_parts(tmp_path):
    """After the kernel phase the kernel transforms have moved away from the identity."""
    result = train_supernet(tiny_config(tmp_path / "run", phases=TINY_PHASES[:2]), progress=False)
    state = model_state(result.path)
    transform = state["blocks.0.depthwise.conv.transform_5to3"]
    assert not torch.equal(transform, torch.eye(9))


def test_phase_choices_resolve_against_space():
    from supernet import get_space

    mcu = get_space("mcu-mbv2")
    phase = PhaseConfig(name="p", epochs=1, lr=0.1, d=[2, 3], e=[4, 6], w=[0.5, 1.0])
    choices = PhaseChoices.resolve(mcu, phase, 0)
    assert choices.d[:5] == ((2, 3),) * 5 and choices.d[5] == (1,)
    assert choices.ks == (7,) and choices.e == (4, 6) and choices.w == (0.5, 1.0)
    assert choices.largest(mcu, 96)["w"] == 1.0 and choices.smallest(mcu, 96)["e"][0] == 4
    with pytest.raises(ConfigError, match=r"phases\[3\] \(bad\)\.ks: \[4\] not in"):
        PhaseChoices.resolve(mcu, PhaseConfig(name="bad", epochs=1, lr=0.1, ks=[4]), 3)


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"space": "mnist-mbv3", "phases": [{"name": "x", "lr": 1}]}))
    with pytest.raises(ConfigError, match=r"phases\.0\.epochs"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"space": "mnist-mbv3", "batch": 3, "phases": TINY_PHASES}))
    with pytest.raises(ConfigError, match="batch: Extra inputs are not permitted"):
        load_train_config(path)
    path.write_text("space: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")
    path.write_text(yaml.safe_dump({"space": "mnist-mbv3", "phases": TINY_PHASES[:1] * 2}))
    with pytest.raises(ConfigError, match="phase names must be unique"):
        load_train_config(path)


def test_a_config_with_thousands_of_problems_gets_a_short_error(tmp_path):
    """A YAML alias makes a short file a list of 10,000 bad phases: the error names the
    first few and counts the rest, rather than printing 10,000 lines."""
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "space: mnist-mbv3\n"
        "ten: &ten [" + ", ".join(["{name: x}"] * 10) + "]\n"
        "hundred: &hundred [" + ", ".join(["*ten"] * 10) + "]\n"
        "phases: [" + ", ".join(["*hundred"] * 100) + "]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_train_config(path)
    message = str(caught.value)
    assert len(message.splitlines()) <= 12 and len(message) < 3000
    assert "more problems" in message


def test_trainer_retargets_space_to_the_data(tmp_path):
    config = tiny_config(tmp_path, space="mcu-mbv2")
    trainer = Trainer(config, progress=False)
    assert trainer.space.name == "mcu-mbv2[channels=1,classes=10]"


def test_cosine_schedule_with_warmup():
    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)

    opt = optimizer()
    sched = cosine_schedule(opt, warmup=4, total=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert lrs[4] == pytest.approx(0.4) and lrs[-1] < 0.05
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    # restored as the trainer does (optimizer, then scheduler), it goes on with the same lrs
    restored_opt = optimizer()
    restored = cosine_schedule(restored_opt, warmup=4, total=12)
    restored_opt.load_state_dict(opt.state_dict())
    restored.load_state_dict(sched.state_dict())
    assert restored_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for _ in range(3):
        sched.step()
        restored.step()
        assert restored_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_dataset_config_default_is_the_bundled_digits():
    assert TrainConfig(space="mnist-mbv3", phases=TINY_PHASES).data == DatasetConfig()
