"""The search spaces shipped as YAML files (experiments/spaces/): each loads, is checked, and
is a space of its own (not a preset under another name); the MCU one holds subnets that fit
its board and ones that its limits must cut."""

from __future__ import annotations

from pathlib import Path

import pytest

import latency_models as lm
import supernet
from supernet.family import family_of_space

SPACES = Path(__file__).resolve().parents[2] / "experiments" / "spaces"


@pytest.mark.parametrize(
    ("file", "input_shape", "classes"),  # the largest subnet's input: the largest resolution
    [
        ("cifar-mbconv.yaml", (3, 32, 32), 10),
        ("mcu-256k.yaml", (3, 128, 128), 1000),
        ("proxyless-mbv2.yaml", (3, 224, 224), 1000),
    ],
)
def test_a_shipped_space_file_loads_and_costs(file, input_shape, classes):
    space = supernet.get_space(SPACES / file)
    assert space.name.startswith(file.removesuffix(".yaml") + "@")  # a space of its own
    largest = space.to_spec(space.largest(), batch=1)
    smallest = space.to_spec(space.smallest(), batch=1)
    assert largest.input_shape == input_shape
    assert largest.output_shape[0] == classes
    assert smallest.macs < largest.macs


def test_the_mcu_space_straddles_its_boards_limits():
    """256 kB of SRAM and 1 MB of flash: its smallest subnet fits, its largest does not."""
    space = supernet.get_space(SPACES / "mcu-256k.yaml")
    hw = lm.load_hardware("stm32f746")
    small = hw.predict(space.to_spec(space.smallest(), batch=1))
    large = hw.predict(space.to_spec(space.largest(), batch=1))
    assert small["peak_sram_kb"] <= 256 and small["flash_kb"] <= 1000
    assert large["flash_kb"] > 1000


def test_the_shipped_gan_space_file_is_a_smaller_generator_space():
    space = supernet.get_space(SPACES / "anycost-gan-small.yaml")
    preset = supernet.get_space("anycost-gan-mnist")
    assert space.name.startswith("anycost-gan-small@")  # a space of its own
    assert family_of_space(space).kind == "gan"
    largest = space.to_spec(space.largest(), batch=1)
    assert largest.input_shape == (32, 1, 1)  # a latent in, a 1x32x32 image out
    assert largest.output_shape == (1, 32, 32)
    assert largest.macs < preset.to_spec(preset.largest(), batch=1).macs
