"""`nas space validate`, `nas space describe` without an arch, and `nas space list` with the
space files of $NAS_SPACE_DIR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import latency_models as lm
import supernet
from nas.cli import app

runner = CliRunner()
SPACES = Path(__file__).resolve().parents[3] / "experiments" / "spaces"


def test_validate_prints_the_size_and_the_extremes_costed_on_an_mcu():
    path = SPACES / "mcu-256k.yaml"
    result = runner.invoke(app, ["space", "validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    space = supernet.get_space(path)
    assert info["name"] == space.name and info["hash"] == space.definition_hash
    hw = lm.load_hardware("stm32f746")
    for which in ("smallest", "largest"):
        arch = getattr(space, which)()
        spec = space.to_spec(arch, batch=1)
        assert info[which]["macs"] == spec.macs and info[which]["r"] == arch["r"]
        assert info[which]["stm32f746"]["peak_sram_kb"] == pytest.approx(
            hw.predict(spec)["peak_sram_kb"]
        )
    text = runner.invoke(app, ["space", "validate", str(path), "--mcu", "stm32h743"]).output
    assert "networks; definition hash" in text and "on stm32h743: peak SRAM" in text
    # describe without --arch describes the space the same way
    described = runner.invoke(app, ["space", "describe", "--space", str(path), "--json"])
    assert json.loads(described.output) == info


def test_validate_lists_every_problem_of_a_bad_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "base: mcu-mbv2\nresolutions: [64, 80]\nwidth_mults: [0]\nkernel_sizes: [3, 4]\n"
        "stages:\n  - {width: 16, depths: [1, 20], stride: 3, act: gelu}\n"
        "  - {width: 24, depths: [2], stride: 2, act: relu6, colour: red}\n"
    )
    result = runner.invoke(app, ["space", "validate", str(bad)])
    assert result.exit_code == 2
    header, *lines = result.output.strip().splitlines()
    assert header == f"error: invalid search space {bad}: 6 problems"
    fields = [line.split(":")[0].strip() for line in lines]
    assert fields == [
        "stages[0].depths[1]",
        "stages[0].stride",
        "stages[0].act",
        "stages[1].colour",
        "kernel_sizes[1]",
        "width_mults[0]",
    ]
    as_json = json.loads(runner.invoke(app, ["space", "validate", str(bad), "--json"]).output)
    assert [p["field"] for p in as_json["problems"]] == fields
    # the one-line error of any other command names the first three, and how many more
    with pytest.raises(supernet.SpaceDefinitionError) as caught:
        supernet.get_space(str(bad))
    assert "\n" not in str(caught.value) and str(caught.value).endswith("and 3 more problems")
    # a name that is neither a file nor a preset: one line, no traceback
    unknown = runner.invoke(app, ["space", "validate", "no-such-space"])
    assert unknown.exit_code == 2 and "unknown search space 'no-such-space'" in unknown.output
    # once the fields are right, a cross-field problem is found (the same file, fixed)
    bad.write_text("base: mcu-mbv2\nresolutions: [64, 80]\nwidth_mults: [0.1]\n")
    result = runner.invoke(app, ["space", "validate", str(bad)])
    assert result.exit_code == 2 and "make_divisible lifts" in result.output


def test_list_shows_the_space_files_of_nas_space_dir(tmp_path, monkeypatch):
    presets = json.loads(runner.invoke(app, ["space", "list", "--json"]).output)
    assert {s["source"] for s in presets} == {"preset"}
    shutil.copy(SPACES / "cifar-mbconv.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text("stages: [")
    (tmp_path / "notes.txt").write_text("not a space file")
    monkeypatch.setenv("NAS_SPACE_DIR", str(tmp_path))
    listed = json.loads(runner.invoke(app, ["space", "list", "--json"]).output)
    assert listed[: len(presets)] == presets
    mine = {Path(s["source"]).name: s for s in listed[len(presets) :]}
    assert set(mine) == {"broken.yaml", "cifar-mbconv.yaml"}
    assert mine["cifar-mbconv.yaml"]["name"].startswith("cifar-mbconv@")
    assert "invalid search space" in mine["broken.yaml"]["error"]
    monkeypatch.setenv("NAS_SPACE_DIR", str(tmp_path / "missing"))
    result = runner.invoke(app, ["space", "list"])
    assert result.exit_code == 2 and "which is not a folder" in result.output
