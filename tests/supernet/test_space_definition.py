"""Search spaces as data: a YAML file, a mapping, a preset with overrides; their checks
(one-line SpaceDefinitionError naming the field path), their canonical hash, and trained
files that carry their space."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import yaml
from typer.testing import CliRunner

import supernet
from nas.cli import app
from supernet.errors import SpaceDefinitionError, UserError
from supernet.io import read_checkpoint, save_atomic
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.train import TrainConfig, Trainer
from supernet.space import get_space, list_spaces, saved_space

# A small valid space, written out in full.
SPACE = {
    "name": "tiny",
    "in_channels": 3,
    "num_classes": 5,
    "stem_width": 8,
    "stem_stride": 2,
    "stem_act": "relu6",
    "first_block_width": 8,
    "first_block_act": "relu6",
    "stages": [
        {"width": 16, "depths": [1, 2], "stride": 2, "act": "relu6", "se": False},
        {"width": 24, "depths": [1, 2, 3], "stride": 1, "act": "h_swish", "se": True},
    ],
    "head": "mbv2",
    "head_widths": [64],
    "head_act": "relu6",
    "kernel_sizes": [3, 5],
    "expand_ratios": [2, 4],
    "resolutions": [16, 24, 32],
    "width_mults": [0.5, 1.0],
}


def build_and_run(space) -> torch.Tensor:
    net = supernet.build(space).eval()
    arch = space.largest()
    net.set_active(arch)
    with torch.no_grad():
        return net(torch.zeros(1, space.config.in_channels, arch["r"], arch["r"]))


# ----- loading -------------------------------------------------------------------------------


def test_a_yaml_file_builds_a_space(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    space = get_space(str(path))
    assert space.name.startswith("tiny@") and space.genes()[-1] == ("w", (0.5, 1.0))
    assert build_and_run(space).shape == (1, 5)
    assert get_space(path).definition_hash == space.definition_hash  # a Path too


def test_an_inline_mapping_builds_the_same_space_as_its_file(tmp_path):
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(SPACE))
    assert get_space(SPACE).name == get_space(str(path)).name
    assert get_space(dict(SPACE)).describe()["size"] == get_space(SPACE).size()


def test_a_base_preset_with_overrides():
    space = get_space(
        {"base": "mcu-mbv2", "resolutions": [96, 112, 128], "width_mults": [0.5, 0.75]}
    )
    preset = get_space("mcu-mbv2")
    assert space.name.startswith("mcu-mbv2@")
    assert space.config.resolutions == (96, 112, 128) and space.config.width_mults == (0.5, 0.75)
    assert space.config.stages == preset.config.stages  # the rest is the preset's
    stages = [{"width": 16, "depths": [1, 2], "stride": 2, "act": "relu"}]
    small = get_space({"base": "mnist-mbv3", "name": "one-stage", "stages": stages})
    assert small.name.startswith("one-stage@") and small.num_blocks == 2
    assert build_and_run(small).shape == (1, 10)


@pytest.mark.parametrize("name", list_spaces())
def test_a_preset_rebuilt_from_its_definition_is_the_preset(name):
    preset = get_space(name)
    rebuilt = get_space(preset.definition())
    assert rebuilt.name == name and rebuilt.config == preset.config
    assert get_space({"base": name}).name == name  # a base with no override: the preset


def test_a_variant_keeps_its_name_and_a_data_space_variant_gets_a_new_hash():
    variant = get_space("mcu-mbv2[channels=1,classes=10]")
    assert get_space(variant.definition()).name == variant.name
    space = get_space(SPACE)
    other = space.variant(channels=1, classes=10)
    assert other.name.startswith("tiny@") and other.name != space.name
    assert (
        other.definition_hash
        == get_space({**SPACE, "in_channels": 1, "num_classes": 10}).definition_hash
    )


def test_a_gan_preset_as_base_takes_gan_fields_only():
    """A base sets the kind: the GAN preset's definition with an MBConv field is refused by
    the GAN checker (tests/supernet/test_gan_space_definition.py has the rest)."""
    assert get_space({"base": "anycost-gan-mnist", "z_dim": 32}).config.z_dim == 32
    with pytest.raises(SpaceDefinitionError, match=r"kernel_sizes: unknown field; allowed: kind"):
        get_space({"base": "anycost-gan-mnist", "kernel_sizes": [3]})


def test_the_cli_takes_a_space_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    result = CliRunner().invoke(app, ["space", "sample", "--space", str(path), "--seed", "1"])
    assert result.exit_code == 0 and '"w":' in result.output
    path.write_text(yaml.safe_dump({**SPACE, "kernel_sizes": [4]}))
    result = CliRunner().invoke(app, ["space", "sample", "--space", str(path)])
    assert result.exit_code != 0
    assert "kernel_sizes[0]: 4 is even" in result.output and "Traceback" not in result.output


# ----- errors ----------------------------------------------------------------------------


def with_stage(i: int, **fields) -> dict:
    stages = copy.deepcopy(SPACE["stages"])
    stages[i].update(fields)
    return {**SPACE, "stages": stages}


ERRORS = [
    # a stride on a map already 1x1 at the smallest resolution
    (
        {**SPACE, "resolutions": [2, 32]},
        r"stages\[0\]\.stride: 2 makes the feature map vanish at the smallest resolution 2: "
        r"it is already 1x1 there \(2 -> 1\)",
    ),
    (
        with_stage(1, stride=2) | {"resolutions": [4, 8]},
        r"stages\[1\]\.stride: 2 makes the feature map vanish",
    ),
    # widths make_divisible cannot keep
    (
        with_stage(1, width=6),
        r"stages\[1\]\.width: 6 at width multiplier 0\.5 is 3 channels, which make_divisible "
        r"lifts to 8: the width is lost; allowed: at least 8 at this multiplier",
    ),
    ({**SPACE, "stem_width": 0}, r"stem_width: 0 is out of range; allowed: 1\.\.8192"),
    (
        {**SPACE, "head_widths": [5000], "width_mults": [0.5, 2.0]},
        r"head_widths\[0\]: 5000 at width multiplier 2 is over 8192 channels",
    ),
    # depths
    (
        with_stage(1, depths=[1, 13]),
        r"stages\[1\]\.depths\[1\]: 13 is out of range; allowed: 1\.\.12",
    ),
    (with_stage(0, depths=[0, 1]), r"stages\[0\]\.depths\[0\]: 0 is out of range"),
    # unknown and missing fields
    ({**SPACE, "colour": "red"}, r"colour: unknown field; allowed: kind, name, .*bn_eps"),
    (with_stage(0, depth=[1]), r"stages\[0\]\.depth: unknown field; allowed: width, depths"),
    ({k: v for k, v in SPACE.items() if k != "head"}, r"head: missing field"),
    (with_stage(0, width=None) | {}, r"stages\[0\]\.width: None is not an integer"),
    # wrong types
    ({**SPACE, "resolutions": "32"}, r"resolutions: expected a list, got str '32'"),
    ({**SPACE, "kernel_sizes": [3, "5"]}, r"kernel_sizes\[1\]: '5' is not an integer"),
    ({**SPACE, "in_channels": True}, r"in_channels: True is not an integer"),
    (with_stage(1, se="yes"), r"stages\[1\]\.se: 'yes' is not a boolean"),
    (with_stage(0, act="gelu"), r"stages\[0\]\.act: 'gelu' is not allowed; allowed: \['h_swish'"),
    ({**SPACE, "stages": {"width": 8}}, r"stages: expected a list, got dict"),
    ({**SPACE, "width_mults": [0.5, float("nan")]}, r"width_mults\[1\]: nan is out of range"),
    # empty choice lists
    ({**SPACE, "expand_ratios": []}, r"expand_ratios: the list is empty"),
    (with_stage(0, depths=[]), r"stages\[0\]\.depths: the list is empty"),
    ({**SPACE, "stages": []}, r"stages: the list is empty"),
    # other structure
    ({**SPACE, "kernel_sizes": [3, 4]}, r"kernel_sizes\[1\]: 4 is even"),
    ({**SPACE, "expand_ratios": [1, 4]}, r"expand_ratios: \[1, 4\]: 1 \(no expansion conv\)"),
    ({**SPACE, "head": "mbv3"}, r"head_widths: \[64\] has 1 widths; head 'mbv3' takes 2"),
    ({**SPACE, "name": "a@b"}, r"name: 'a@b' is not a name"),
    ({"base": "no-such-preset"}, r"base: unknown preset 'no-such-preset'; allowed: \["),
    ({"base": "mnist-mbv3", "kind": "transformer"}, r"kind: 'transformer' is not a kind"),
    (
        {**SPACE, "head_widths": [8000], "expand_ratios": [12], "stem_width": 8000}
        | {"stages": [{"width": 8000, "depths": [12], "stride": 1, "act": "relu"}] * 12},
        r"<space>: its largest subnet has [\d,]+M parameters; allowed: at most 1,000M",
    ),
]


@pytest.mark.parametrize(("definition", "message"), ERRORS)
def test_a_bad_field_is_one_line_naming_it(definition, message):
    with pytest.raises(SpaceDefinitionError, match=message) as caught:
        get_space(definition)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("invalid search space <mapping>: ")


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpaceDefinitionError, match=rf"{missing}: <file>: file not found"):
        get_space(str(missing))
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [1, 2\n")
    with pytest.raises(SpaceDefinitionError, match=r"bad\.yaml: <file>: not valid YAML") as caught:
        get_space(str(bad))
    assert "\n" not in str(caught.value)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(SpaceDefinitionError, match=r"<root>: expected a mapping of fields"):
        get_space(str(bad))


def test_a_training_refuses_a_space_that_cannot_build_before_it_starts(tmp_path):
    config = TrainConfig(
        space={"base": "mnist-mbv3", "resolutions": [4]},
        data={"kind": "mnist", "limit": 32},
        out_dir=str(tmp_path / "run"),
        phases=[{"name": "largest", "epochs": 1, "lr": 0.1}],
    )
    with pytest.raises(SpaceDefinitionError, match=r"stages\[2\]\.stride: 2 makes the feature"):
        Trainer(config, progress=False)
    assert not (tmp_path / "run").exists()


# ----- the hash ----------------------------------------------------------------------------


def test_definitions_of_the_same_network_share_a_hash():
    reference = get_space(SPACE).definition_hash
    reordered = {
        **with_stage(1, depths=[3, 1, 2, 2]),
        "kernel_sizes": [5, 3, 3],
        "resolutions": [32, 16, 24],
        "width_mults": [1, 0.5],  # an int is the same multiplier
    }
    labels = {**SPACE, "name": "another-name", "description": "same network, other words"}
    defaults = {**SPACE, "kind": "mbconv", "dropout": 0.1, "bn_momentum": 0.1, "bn_eps": 1e-5}
    defaults["stages"] = [dict(s, se=s.get("se", False)) for s in SPACE["stages"]]
    for same in (reordered, labels, defaults):
        assert get_space(same).definition_hash == reference
    preset = get_space("mnist-mbv3")
    assert get_space({"base": "mnist-mbv3", "dropout": 0.1}).definition_hash == (
        preset.definition_hash
    )
    assert get_space(preset.definition()).definition_hash == preset.definition_hash


@pytest.mark.parametrize(
    "change",
    [
        {"resolutions": [16, 32]},
        {"width_mults": [1.0]},
        {"stem_act": "relu"},
        {"dropout": 0.2},
        {"head_widths": [72]},
        {"in_channels": 1},
    ],
)
def test_different_networks_have_different_hashes_and_names(change):
    space, other = get_space(SPACE), get_space({**SPACE, **change})
    assert other.definition_hash != space.definition_hash
    assert other.name != space.name  # arch trust goes by name: never shared


def test_different_stage_settings_have_different_hashes():
    reference = get_space(SPACE).definition_hash
    for change in ({"se": True}, {"stride": 1}, {"depths": [1]}, {"width": 24}):
        assert get_space(with_stage(0, **change)).definition_hash != reference


# ----- trained files -------------------------------------------------------------------------


def test_an_old_checkpoint_with_only_a_name_still_loads(tiny_supernet, tmp_path):
    data = read_checkpoint(tiny_supernet.path, "nas-supernet/1")
    assert data["space_hash"] == tiny_supernet.space.definition_hash
    old = {k: v for k, v in data.items() if k not in ("space_definition", "space_hash")}
    save_atomic(old, tmp_path / "supernet.pt")
    assert load_supernet(tmp_path / "supernet.pt").space.name == "mnist-mbv3"


def test_a_stored_definition_that_does_not_match_its_hash_is_refused(tiny_supernet):
    data = read_checkpoint(tiny_supernet.path, "nas-supernet/1")
    tampered = {**data, "space_definition": {**data["space_definition"], "dropout": 0.3}}
    with pytest.raises(UserError, match=r"space_hash: \w+\.\.\. does not match"):
        saved_space(tampered)


# ----- fuzz: every mutation is a one-line user error or a space ----------------------------

FUZZ_VALUES = [
    None, True, False, 0, -1, -8, 1, 2, 3, 7, 10**9, 10**30, 1e308, float("inf"),
    float("nan"), 0.5, -0.5, 1.5, "", "relu", "mbv3", "x" * 500, "3", [], [0], [1, 2],
    [-3], [10**9], [3, 5, 7], ["a"], [None], [[1]], {}, {"width": 8}, [{}],
    [{"width": 16, "depths": [1], "stride": 2, "act": "relu"}],
]  # fmt: skip


def mutate(definition: dict, rng: random.Random) -> dict:
    """One to three random changes: a field set to a random value, removed, added, or the
    same inside a stage."""
    out = copy.deepcopy(definition)
    for _ in range(rng.randint(1, 3)):
        target = out
        if rng.random() < 0.4 and isinstance(out.get("stages"), list) and out["stages"]:
            stage = rng.choice(out["stages"])
            target = stage if isinstance(stage, dict) else out
        action = rng.random()
        keys = list(target) or ["width"]
        if action < 0.6:
            target[rng.choice(keys)] = rng.choice(FUZZ_VALUES)
        elif action < 0.75:
            target.pop(rng.choice(keys), None)
        elif action < 0.85:
            target[rng.choice(["extra", "Width", "depth", "base", "kind", 7])] = rng.choice(
                FUZZ_VALUES
            )
        else:  # a stride or a resolution that may vanish the map
            out["resolutions"] = [rng.choice([1, 2, 3, 4, 6, 8]), 32]
            if isinstance(out.get("stages"), list):
                for stage in out["stages"]:
                    if isinstance(stage, dict):
                        stage["stride"] = 2
    return out


def test_fuzzed_definitions_load_or_fail_in_one_line(tmp_path):
    rng = random.Random(28)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(300):
        definition = mutate(SPACE if i % 2 else {"base": "mcu-mbv2", **SPACE}, rng)
        if i % 3 == 0:  # a third go through a YAML file, as a user's would
            path = tmp_path / f"space-{i}.yaml"
            text = yaml.safe_dump(definition, allow_unicode=True)
            if i % 9 == 0:  # a file cut short (a bad copy, an editor's crash)
                text = text[: rng.randrange(len(text))]
            path.write_text(text)
            spec: object = str(path)
        else:
            spec = definition
        try:
            space = get_space(spec)  # type: ignore[arg-type]
        except SpaceDefinitionError as err:
            assert "\n" not in str(err) and len(str(err)) < 1000, str(err)
            outcomes["refused"] += 1
            continue
        space.to_spec(space.smallest())  # what loaded, builds
        outcomes["loaded"] += 1
    assert outcomes["loaded"] >= 10 and outcomes["refused"] >= 150, outcomes
