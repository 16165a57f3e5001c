"""`nas hardware list / show`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import latency_models as lm
from nas.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_list_names_every_profile():
    result = run("hardware", "list")
    assert result.exit_code == 0, result.output
    for name in lm.list_hardware():
        assert name in result.output
    infos = json.loads(run("hardware", "list", "--json").output)
    by_name = {i["name"]: i for i in infos}
    assert set(by_name) == set(lm.list_hardware())
    assert "fp8" in by_name["h100-sxm"]["options"]["precision"]
    assert "peak_sram_kb" in by_name["stm32h743"]["metrics"]


def test_show_table_json_and_yaml():
    result = run("hardware", "show", "a100-sxm")
    assert result.exit_code == 0 and "peak_tflops" in result.output and "2039" in result.output
    info = json.loads(run("hardware", "show", "note10", "--json").output)
    assert info["kind"] == "lut" and info["resolutions"] == [160, 176, 192, 208, 224]
    raw = run("hardware", "show", "stm32f746", "--yaml").output
    assert "clock_mhz: 216" in raw


def test_unknown_profile_is_a_one_line_error():
    result = run("hardware", "show", "tpu-v9")
    assert result.exit_code == 2
    assert "unknown hardware 'tpu-v9'; available: a100-sxm" in result.output
