"""A space of the user's own, defined in YAML: trained, then searched and exported after its
file is gone (the trained file carries the definition and its hash)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from nas import core
from nas.export import export_candidate
from nas.pareto import pareto_front
from nas.resources import check_search_config
from nas.search import launch_search
from nas.store import Store
from supernet.family import open_artifact
from supernet.io import read_checkpoint
from supernet.mbconv.checkpoint import load_supernet
from supernet.space import get_space
from tests.conftest import USER_SPACE


def test_the_trained_file_carries_its_space(user_space_supernet):
    path, space = user_space_supernet
    data = read_checkpoint(path, "nas-supernet/1")
    assert data["space"] == space.name and space.name.startswith("digits-mbconv@")
    assert data["space_definition"] == space.definition()
    assert data["space_hash"] == space.definition_hash
    trained = load_supernet(path)  # no YAML file, no registered name
    assert trained.space.name == space.name
    assert trained.space.genes() == space.genes()
    assert open_artifact(path).space.definition_hash == space.definition_hash


def test_a_search_and_an_export_without_the_space_file(user_space_supernet, tmp_path):
    path, space = user_space_supernet
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
    info = core.get_search(search_id, db=database)
    assert info["space"] == space.name and info["space_info"]["family"] == "classifier"
    assert info["space_info"]["size"] == space.size() and "unknown" not in str(info["domain"])
    assert "stm32f746" in core.get_candidate(search_id, best.trial, db=database)["devices"]
    (listed,) = core.list_supernets(db=database)["supernets"]
    assert listed["space"] == space.name and listed["family"] == "classifier"

    result = export_candidate(store, search_id, best.trial, "onnx", tmp_path / "out")
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["space"] == space.name
    assert get_space(card["space_definition"]).definition_hash == space.definition_hash
    assert result.card["arch"] == best.arch
    r = best.arch["r"]
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    (logits,) = session.run(None, {"input": np.zeros((2, 1, r, r), np.float32)})
    assert logits.shape == (2, 10)


def test_a_data_space_name_alone_says_how_to_find_it(user_space_supernet):
    from supernet.errors import UnknownSpaceError

    _, space = user_space_supernet
    with pytest.raises(UnknownSpaceError, match="defined as data is found by its YAML file"):
        get_space(space.name)


def test_a_search_config_naming_another_space_is_refused(user_space_supernet, tmp_path):
    from nas.errors import SearchConfigError

    path, _ = user_space_supernet
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


def test_a_predictor_and_a_transfer_without_the_space_file(user_space_supernet, tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app
    from supernet.mbconv.predictor import fit_predictor, load_predictor, measure_archs
    from tests.supernet.test_transfer import image_folder

    path, space = user_space_supernet
    trained = load_supernet(path)
    measured = measure_archs(trained, 12, seed=0, progress=False)
    fitted = fit_predictor(trained.space, measured, trained.sha256, held_out=2, epochs=5)
    saved = fitted.save(tmp_path / "predictor.pt")
    assert load_predictor(saved, path).space.definition_hash == space.definition_hash

    # once-for-all transfer to 3 classes: the space is rebuilt from the trained file
    folder = image_folder(tmp_path / "grey", classes=3, per_class=6, rgb=False, size=16)
    args = ["supernet", "finetune", "--from", str(path), "--data", f"imagefolder:{folder}"]
    args += ["--image-size", "16", "--batch-size", "9"]
    args += ["--out", str(tmp_path / "run"), "--no-progress", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    transferred = load_supernet(tmp_path / "run" / "supernet.pt").space
    assert transferred.name.startswith("digits-mbconv@") and transferred.name != space.name
    assert (transferred.config.in_channels, transferred.config.num_classes) == (1, 3)
    assert transferred.config.stages == space.config.stages
