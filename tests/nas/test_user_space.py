"""A space of the user's own, defined in YAML: trained, then searched and exported after its
file is gone (the trained file carries the definition and its hash)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from nas import core
from nas.export import export_candidate
from nas.pareto import pareto_front
from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Store
from supernet.family import open_artifact
from supernet.io import read_checkpoint
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.train import TrainConfig, train_supernet
from supernet.space import get_space

# Two narrow stages for 28x28 digits: a few seconds to train on a CPU.
USER_SPACE = {
    "name": "digits-mbconv",
    "description": "a test space for 28x28 digits",
    "in_channels": 1,
    "num_classes": 10,
    "stem_width": 8,
    "stem_stride": 2,
    "stem_act": "h_swish",
    "first_block_width": 8,
    "first_block_act": "relu",
    "stages": [
        {"width": 16, "depths": [1, 2], "stride": 2, "act": "relu"},
        {"width": 24, "depths": [1, 2], "stride": 2, "act": "h_swish", "se": True},
    ],
    "head": "mbv3",
    "head_widths": [48, 64],
    "head_act": "h_swish",
    "kernel_sizes": [3, 5],
    "expand_ratios": [3, 4],
    "resolutions": [16, 20, 28],
    "width_mults": [0.75, 1.0],
}


@pytest.fixture(scope="module")
def user_supernet(tmp_path_factory):
    """A supernet trained for two steps on a space read from a YAML file, which is then
    deleted: (the trained file's path, the space as the file defined it)."""
    folder = tmp_path_factory.mktemp("user-space")
    space_file = folder / "digits.yaml"
    space_file.write_text(yaml.safe_dump(USER_SPACE))
    space = get_space(str(space_file))
    config = TrainConfig(
        space=str(space_file),
        data={"kind": "mnist", "limit": 32},
        out_dir=str(folder / "run"),
        batch_size=16,
        bn_recalibration_images=16,
        phases=[{"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5]}],
    )
    path = train_supernet(config, progress=False).path
    space_file.unlink()
    return path, space


def test_the_trained_file_carries_its_space(user_supernet):
    path, space = user_supernet
    data = read_checkpoint(path, "nas-supernet/1")
    assert data["space"] == space.name and space.name.startswith("digits-mbconv@")
    assert data["space_definition"] == space.definition()
    assert data["space_hash"] == space.definition_hash
    trained = load_supernet(path)  # no YAML file, no registered name
    assert trained.space.name == space.name
    assert trained.space.genes() == space.genes()
    assert open_artifact(path).space.definition_hash == space.definition_hash


def test_a_search_and_an_export_without_the_space_file(user_supernet, tmp_path):
    path, space = user_supernet
    database = f"sqlite:///{tmp_path / 'nas.db'}"
    checked = check_search_config(
        {
            "name": "user-space",
            "supernet": str(path),
            "space": space.definition(),  # a mapping is compared by its hash
            "targets": {"stm32f746": {"peak_sram_kb": 320, "flash_kb": 1024}},
            "algorithm": {"population": 4, "generations": 1, "seed": 0},
            "evaluation": "supernet",
            "database": database,
        },
        "test",
    )
    assert checked.config.space == space.definition()  # the row rebuilds the space from it
    store = Store(database)
    search_id = launch_search(checked, store, progress=False).search_id
    best = pareto_front(store, search_id).front[0]
    assert space.validate(best.arch) == best.arch

    # the core's views of the stored search rebuild the space from the row
    assert core.get_search(search_id, db=database)["space"] == space.name
    assert "stm32f746" in core.get_candidate(search_id, best.trial, db=database)["devices"]

    result = export_candidate(store, search_id, best.trial, "onnx", tmp_path / "out")
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["space"] == space.name
    assert get_space(card["space_definition"]).definition_hash == space.definition_hash
    assert result.card["arch"] == best.arch
    r = best.arch["r"]
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    (logits,) = session.run(None, {"input": np.zeros((2, 1, r, r), np.float32)})
    assert logits.shape == (2, 10)


def test_a_search_config_naming_another_space_is_refused(user_supernet, tmp_path):
    from nas.errors import SearchConfigError

    path, _ = user_supernet
    other = {**USER_SPACE, "resolutions": [16, 28]}
    with pytest.raises(SearchConfigError, match=r"space: 'digits-mbconv@\w+' is not the space"):
        check_search_config(
            {
                "supernet": str(path),
                "space": other,
                "targets": {"stm32f746": {"peak_sram_kb": 320}},
                "evaluation": "supernet",
                "database": f"sqlite:///{tmp_path / 'nas.db'}",
            }
        )
