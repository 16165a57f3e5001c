"""The `nas` CLI, run in-process."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import supernet
from nas.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    assert "space" in result.output


def test_space_list():
    result = run("space", "list")
    assert result.exit_code == 0
    for name in supernet.list_spaces():
        assert name in result.output
    infos = json.loads(run("space", "list", "--json").output)
    assert {i["name"] for i in infos} == set(supernet.list_spaces())


def test_space_sample_prints_valid_json_lines_repeatably():
    result = run("space", "sample", "--space", "mcu-mbv2", "--n", "5", "--seed", "3")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 5
    space = supernet.get_space("mcu-mbv2")
    for line in lines:
        space.validate(json.loads(line))
    again = run("space", "sample", "--space", "mcu-mbv2", "--n", "5", "--seed", "3")
    assert again.output == result.output


def test_space_describe_table_and_json():
    arch = json.dumps({"ks": [3] * 21, "e": [6] * 21, "d": [2, 3, 4, 3, 3, 1], "w": 1.0, "r": 224})
    result = run("space", "describe", "--space", "mcu-mbv2", "--arch", arch)
    assert result.exit_code == 0, result.output
    assert "3,504,872" in result.output and "300,774,272" in result.output
    assert "blocks.0.depthwise" in result.output
    data = json.loads(run("space", "describe", "-s", "mcu-mbv2", "-a", arch, "--json").output)
    assert data["params"] == 3_504_872 and data["macs"] == 300_774_272
    assert len(data["layers"]) > 50 and data["arch"]["w"] == 1.0


def test_space_describe_keywords_and_file(tmp_path):
    assert run("space", "describe", "-s", "mnist-mbv3", "-a", "largest").exit_code == 0
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(supernet.get_space("mnist-mbv3").smallest()))
    assert run("space", "describe", "-s", "mnist-mbv3", "-a", f"@{path}").exit_code == 0


def test_invalid_arch_is_a_clear_error():
    result = run("space", "describe", "--space", "mnist-mbv3", "--arch", '{"ks": [4]}')
    assert result.exit_code == 2
    assert "invalid arch for space 'mnist-mbv3'" in result.output
    missing = run("space", "describe", "-s", "mnist-mbv3", "-a", "@/no/such/file.json")
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_unknown_space_is_a_clear_error():
    result = run("space", "sample", "--space", "resnet-9000")
    assert result.exit_code == 2
    assert "unknown search space 'resnet-9000'" in result.output
    assert "ofa-mbv3-w1.0" in result.output
