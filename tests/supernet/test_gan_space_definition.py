"""Anycost GAN spaces as data: a YAML file, a mapping, `base: anycost-gan-mnist` with
overrides; their checks (every problem at once, each one line naming the field path), their
canonical hash, the CLI on a GAN space file, and a GAN trained on a data space that reloads
after its YAML file is gone."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
import yaml
from typer.testing import CliRunner

import supernet
from nas import core
from nas.catalog import search_space
from nas.cli import app
from supernet.anycost.evaluate import load_gan
from supernet.anycost.generator import AnycostGenerator
from supernet.anycost.space import AnycostGANSpace
from supernet.anycost.train import GanTrainConfig, train_gan
from supernet.errors import SpaceDefinitionError
from supernet.io import read_checkpoint
from supernet.space import get_space, same_space

# A small valid GAN space, written out in full: 16x16 RGB, 5 modulated convs.
GAN = {
    "kind": "anycost_gan",
    "name": "tiny-gan",
    "image_channels": 3,
    "image_size": 16,
    "z_dim": 16,
    "w_dim": 16,
    "mapping_layers": 2,
    "widths": {4: 32, 8: 16, 16: 8},
    "ratios": [0.5, 1.0],
    "resolutions": [8, 16],
}


def generate(space: AnycostGANSpace) -> torch.Tensor:
    g = AnycostGenerator(space).eval()
    with torch.no_grad():
        return g(torch.randn(2, space.config.z_dim), random_noise=False)


# ----- loading -------------------------------------------------------------------------------


def test_a_yaml_file_builds_a_generator_space(tmp_path):
    path = tmp_path / "tiny-gan.yaml"
    path.write_text(yaml.safe_dump(GAN))
    space = get_space(str(path))
    assert isinstance(space, AnycostGANSpace) and space.name.startswith("tiny-gan@")
    assert [layer.name for layer in space.layers] == [
        "4.conv", "8.conv0", "8.conv1", "16.conv0", "16.conv1"
    ]  # fmt: skip
    assert generate(space).shape == (2, 3, 16, 16)
    assert get_space(GAN).name == space.name  # the mapping: the same space


def test_the_preset_rebuilt_from_its_definition_is_the_preset():
    preset = get_space("anycost-gan-mnist")
    rebuilt = get_space(preset.definition())
    assert rebuilt.name == "anycost-gan-mnist" and rebuilt.config == preset.config
    assert get_space({"base": "anycost-gan-mnist"}).name == "anycost-gan-mnist"
    assert same_space(rebuilt, preset) and rebuilt.definition_hash == preset.definition_hash


def test_a_base_preset_with_overrides():
    space = get_space({"base": "anycost-gan-mnist", "ratios": [0.5, 1.0], "resolutions": [32]})
    preset = get_space("anycost-gan-mnist")
    assert space.name.startswith("anycost-gan-mnist@")
    assert space.config.ratios == (0.5, 1.0) and space.config.resolutions == (32,)
    assert space.config.widths == preset.config.widths  # the rest is the preset's
    small = get_space(
        {
            "base": "anycost-gan-mnist",
            "name": "gan16",
            "image_size": 16,
            "widths": {4: 32, 8: 16, 16: 8},
            "resolutions": [16],
        }
    )
    assert small.name.startswith("gan16@") and small.num_layers == 5
    assert generate(small).shape == (2, 1, 16, 16)


# ----- the hash ----------------------------------------------------------------------------


def test_definitions_of_the_same_network_share_a_hash():
    reference = get_space(GAN).definition_hash
    same = [
        {**GAN, "ratios": [1, 0.5, 0.5], "resolutions": [16, 8]},  # order, repeats, an int
        {**GAN, "name": "other", "description": "same network, other words"},
        {k: v for k, v in GAN.items() if k != "name"},  # a default label
        json.loads(json.dumps(GAN)),  # through JSON (a search row): widths keyed "4", "8"
        {**GAN, "widths": {16: 8, 4: 32, 8: 16}},
    ]
    for definition in same:
        assert get_space(definition).definition_hash == reference, definition
    preset = get_space("anycost-gan-mnist")
    assert get_space(json.loads(json.dumps(preset.definition()))).name == preset.name


@pytest.mark.parametrize(
    "change",
    [
        {"ratios": [0.25, 0.5, 1.0]},
        {"resolutions": [16]},
        {"widths": {4: 32, 8: 16, 16: 16}},
        {"z_dim": 32},
        {"w_dim": 8},
        {"mapping_layers": 3},
        {"image_channels": 1},
    ],
)
def test_different_networks_have_different_hashes_and_names(change):
    space, other = get_space(GAN), get_space({**GAN, **change})
    assert other.definition_hash != space.definition_hash
    assert other.name != space.name  # arch trust goes by name: never shared


# ----- errors ----------------------------------------------------------------------------

ERRORS = [
    ({**GAN, "image_size": 24}, r"image_size: 24 is not allowed; allowed: a power of two, 8, "),
    ({**GAN, "image_size": 4}, r"image_size: 4 is not allowed"),
    ({**GAN, "image_size": 2048}, r"image_size: 2048 is not allowed"),
    (
        {**GAN, "widths": {4: 32, 16: 8}},
        r"widths\.8: missing: image_size 16 has layers at 4, 8, 16; each needs a width",
    ),
    ({**GAN, "widths": {**GAN["widths"], 32: 8}}, r"widths\.32: no layer at 32 for image_size"),
    ({**GAN, "widths": {**GAN["widths"], 12: 8}}, r"widths\.12: 12 is not allowed"),
    ({**GAN, "widths": {4: 32, 8: 0, 16: 8}}, r"widths\.8: 0 is out of range; allowed: 1\.\.4096"),
    ({**GAN, "widths": [32, 16, 8]}, r"widths: expected a mapping of resolution to channels"),
    (
        {**GAN, "widths": {4: 32, 8: 16, 16: 8, "16": 8}},
        r"widths\.16: given twice",
    ),
    (
        {**GAN, "resolutions": [8, 32]},
        r"resolutions\[1\]: 32 is above image_size 16; allowed: 8, 16",
    ),
    ({**GAN, "resolutions": [4, 16]}, r"resolutions\[0\]: 4 is not allowed"),
    (
        {**GAN, "resolutions": [8]},
        r"resolutions: \[8\] stops below image_size 16: the layers above would never run",
    ),
    ({**GAN, "ratios": [0, 1.0]}, r"ratios\[0\]: 0 is out of range; allowed: \(0, 1\]"),
    ({**GAN, "ratios": [1.0, 1.5]}, r"ratios\[1\]: 1\.5 is out of range; allowed: \(0, 1\]"),
    ({**GAN, "ratios": [0.5, 0.75]}, r"ratios: \[0\.5, 0\.75\] lacks 1\.0"),
    ({**GAN, "ratios": []}, r"ratios: the list is empty"),
    (
        {**GAN, "ratios": [0.05, 1.0]},
        r"widths\.16: 8 at ratio 0\.05 rounds to 0 channels; allowed: at least 11 at this ratio",
    ),
    ({**GAN, "z_dim": 10**6}, r"z_dim: 1000000 is out of range; allowed: 1\.\.4096"),
    ({**GAN, "w_dim": 0}, r"w_dim: 0 is out of range; allowed: 1\.\.4096"),
    ({**GAN, "mapping_layers": 0}, r"mapping_layers: 0 is out of range; allowed: 1\.\.16"),
    ({**GAN, "image_channels": "rgb"}, r"image_channels: 'rgb' is not an integer"),
    ({**GAN, "colour": "red"}, r"colour: unknown field; allowed: kind, name, .*resolutions"),
    ({k: v for k, v in GAN.items() if k != "z_dim"}, r"z_dim: missing field"),
    ({**GAN, "name": "a@b"}, r"name: 'a@b' is not a name"),
    ({**GAN, "kind": "anycost-gan"}, r"kind: 'anycost-gan' is not a kind of space"),
    (
        {k: v for k, v in GAN.items() if k != "kind"},
        r"kind: not given, so 'mbconv' was assumed; allowed: \['anycost_gan', 'mbconv'\]; "
        r"image_channels: unknown field",
    ),
    (
        {**GAN, "image_size": 64, "widths": dict.fromkeys((4, 8, 16, 32, 64), 4096)}
        | {"resolutions": [64]},
        r"<space>: its largest subnet has [\d,]+M parameters; allowed: at most 1,000M",
    ),
]


@pytest.mark.parametrize(("definition", "message"), ERRORS)
def test_a_bad_field_is_one_line_naming_it(definition, message):
    with pytest.raises(SpaceDefinitionError, match=message) as caught:
        get_space(definition)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("invalid search space <mapping>: ")


def test_every_problem_is_noted_at_once():
    bad = {**GAN, "z_dim": -1, "w_dim": "x", "ratios": [2.0], "colour": 1}
    with pytest.raises(SpaceDefinitionError) as caught:
        get_space(bad)
    fields = [field for field, _ in caught.value.field_problems]
    assert fields == ["colour", "z_dim", "w_dim", "ratios[0]"]
    across = {**GAN, "widths": {4: 32, 16: 8}, "resolutions": [8], "ratios": [0.5]}
    with pytest.raises(SpaceDefinitionError) as caught:
        get_space(across)
    assert [f for f, _ in caught.value.field_problems] == ["widths.8", "resolutions", "ratios"]


def test_a_gan_base_with_a_field_of_another_kind_is_refused():
    with pytest.raises(SpaceDefinitionError, match=r"stages: unknown field; allowed: kind"):
        get_space({"base": "anycost-gan-mnist", "stages": []})


# ----- fuzz: every mutation is a one-line user error or a buildable space -------------------

FUZZ_VALUES = [
    None, True, 0, -1, 1, 2, 3, 4, 8, 16, 24, 32, 64, 10**9, float("inf"), float("nan"),
    0.5, 1.0, 1.5, "", "x" * 500, "16", [], [0], [0.5], [0.5, 1.0], [8, 16], [4], [32],
    [1.0], ["a"], [None], {}, {4: 8}, {4: 32, 8: 16, 16: 8, 32: 4}, {"4": 0}, {"x": 1},
]  # fmt: skip


# Values each field may take, so that some mutants load and must then build.
FUZZ_VALID = {
    "image_channels": [1, 4],
    "z_dim": [1, 8, 64],
    "w_dim": [2, 32],
    "mapping_layers": [1, 8],
    "ratios": [[1.0], [0.25, 1.0], [0.3, 0.6, 1]],
    "resolutions": [[16], [8, 16]],
    "widths": [{4: 8, 8: 4, 16: 2}, {"4": 3, "8": 64, "16": 9}],
    "name": ["fuzz", "anycost-gan-mnist"],
}


def mutate(definition: dict, rng: random.Random) -> dict:
    """One or two random changes: a field set to a valid or a random value, removed or
    added, or a width changed, removed or added."""
    out = copy.deepcopy(definition)
    for _ in range(rng.randint(1, 2)):
        action = rng.random()
        keys = list(out)
        if action < 0.25:
            key = rng.choice(list(FUZZ_VALID))
            out[key] = copy.deepcopy(rng.choice(FUZZ_VALID[key]))
        elif action < 0.6:
            out[rng.choice(keys)] = rng.choice(FUZZ_VALUES)
        elif action < 0.62:
            out.pop(rng.choice(keys), None)
        elif action < 0.7:
            out[rng.choice(["extra", "Ratios", "stages", "base", 7])] = rng.choice(FUZZ_VALUES)
        elif isinstance(out.get("widths"), dict):
            widths = out["widths"]
            res = rng.choice([2, 4, 8, 16, 32, "8"])
            if rng.random() < 0.3:
                widths.pop(res, None)
            else:
                widths[res] = rng.choice([0, 1, 2, 3, 64, 5000, -4, "8", None])
    return out


def test_fuzzed_definitions_load_and_build_or_fail_in_one_line(tmp_path):
    rng = random.Random(28)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(120):
        base = GAN if i % 2 else {"base": "anycost-gan-mnist", **GAN}
        definition = mutate(base, rng)
        spec: object = definition
        if i % 4 == 0:  # a quarter through a YAML file, as a user's would be
            path = tmp_path / f"gan-{i}.yaml"
            path.write_text(yaml.safe_dump(definition, allow_unicode=True))
            spec = str(path)
        try:
            space = get_space(spec)  # type: ignore[arg-type]
        except SpaceDefinitionError as err:
            assert "\n" not in str(err) and len(str(err)) < 1000, str(err)
            outcomes["refused"] += 1
            continue
        # what loaded, builds: its cost spec, and the generator at the smallest arch
        space.to_spec(space.largest())
        g = AnycostGenerator(space).eval()
        g.set_active(space.smallest())
        with torch.no_grad():
            image = g(torch.randn(1, space.config.z_dim), random_noise=False)
        assert image.shape[-1] == space.smallest()["res"]
        outcomes["loaded"] += 1
    assert outcomes["loaded"] >= 15 and outcomes["refused"] >= 60, outcomes


# ----- the CLI -----------------------------------------------------------------------------


def test_validate_and_describe_a_gan_space_file(tmp_path):
    path = tmp_path / "tiny-gan.yaml"
    path.write_text(yaml.safe_dump(GAN))
    runner = CliRunner()
    result = runner.invoke(app, ["space", "validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["family"] == "gan" and info["hash"] == get_space(GAN).definition_hash
    assert info["smallest"]["r"] == 8 and info["largest"]["r"] == 16
    assert info["smallest"]["macs"] < info["largest"]["macs"]
    assert info["largest"]["stm32f746"]["peak_sram_kb"] > 0
    result = runner.invoke(app, ["space", "describe", "--space", str(path)])
    assert result.exit_code == 0, result.output
    assert "largest: res=16" in result.output and "peak SRAM" in result.output
    path.write_text(yaml.safe_dump({**GAN, "image_size": 24, "z_dim": 0}))
    result = runner.invoke(app, ["space", "validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "2 problems" in result.output
    assert "image_size: 24 is not allowed" in result.output and "z_dim: 0 is out" in result.output


# ----- a GAN trained on a data space -------------------------------------------------------


def test_a_gan_trained_on_a_space_file_reloads_without_it(tmp_path):
    space_file = tmp_path / "digits-gan.yaml"
    space_file.write_text(
        yaml.safe_dump({**GAN, "name": "digits-gan", "image_channels": 1, "ratios": [0.5, 1.0]})
    )
    config = GanTrainConfig(
        space=str(space_file),
        out_dir=str(tmp_path / "run"),
        data={"kind": "mnist", "limit": 16},
        batch_size=8,
        threads=1,  # 2 torch threads and numpy's FID eigh fight over 2 cores: twice the time
        feature_net_epochs=1,
        stage1_epochs=1,
        stage2_epochs=0,  # the shortest run that writes gan.pt: two steps
        eval_samples=10,
    )
    result = train_gan(config, progress=False)
    trained_space = get_space(str(space_file))
    space_file.unlink()  # from here on, only the trained file describes the space
    data = read_checkpoint(result.path, "nas-anycost-gan/1")
    assert data["space"] == trained_space.name and data["space"].startswith("digits-gan@")
    assert data["space_hash"] == trained_space.definition_hash
    trained = load_gan(result.path)
    assert trained.space.name == trained_space.name
    assert trained.space.config == trained_space.config
    opened = supernet.open_artifact(result.path)
    assert opened.space.name == trained_space.name and opened.family.kind == "gan"
    arch = trained.space.uniform(0.5, 8)
    with torch.no_grad():
        trained.generator.set_active(arch)
        assert trained.generator(torch.randn(2, 16), random_noise=False).shape == (2, 1, 8, 8)
    # a search on it stores the definition, and its row rebuilds the space through JSON
    checked = core.check(
        {
            "supernet": str(result.path),
            "objectives": [{"metric": "fid", "goal": "minimize"}],
            "targets": {"stm32h743": {"limits": {"peak_sram_kb": 256}}},
            "evaluation": "supernet",
        }
    )
    stored = json.loads(json.dumps(checked.config.model_dump(mode="json")))
    assert stored["space"]["kind"] == "anycost_gan"
    assert search_space(trained_space.name, stored).name == trained_space.name
