"""A search config's problems are found all at once, each naming its field in plain words:
the schema's, the devices' (their limits, options, and whether they can cost the space),
the supernet's and the predictor's. The CLI, the Python API and the HTTP API share this
check (nas.resources)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from nas.cli import app
from nas.errors import SearchConfigError
from nas.resources import check_search_config


def problems_of(raw) -> dict[str, str]:
    with pytest.raises(SearchConfigError) as caught:
        check_search_config(raw, "t")
    fields = {p["field"]: p["message"] for p in caught.value.problems}
    for field, message in fields.items():  # the message lists each one too
        assert f"{field}: {message}" in str(caught.value)
    return fields


def test_an_empty_config_names_every_required_field_in_plain_words():
    fields = problems_of({"supernet": "", "targets": {}})
    assert set(fields) == {"supernet", "targets", "predictor"}
    assert fields["targets"] == "name at least one device"
    assert fields["supernet"].startswith("required")
    assert "needs a predictor" in fields["predictor"]
    assert set(problems_of({})) == {"supernet", "targets", "predictor"}


def test_problems_of_every_stage_come_together(raw_config):
    raw = raw_config(
        supernet="no/such/supernet.pt",
        algorithm={"population": 2, "generations": "many"},
        targets={"stm32f746": {"peak_sram_kb": -8, "sram": 3}, "nodevice": {}},
        colour="blue",
    )
    fields = problems_of(raw)
    assert fields == {
        "algorithm.population": "must be at least 4, got 2",
        "algorithm.generations": "must be a whole number, got 'many'",
        "colour": fields["colour"],
        "targets.stm32f746.peak_sram_kb": "a limit must be > 0 and finite, got -8.0",
        "targets.stm32f746.sram": fields["targets.stm32f746.sram"],
        "targets.nodevice": fields["targets.nodevice"],
        "supernet": "checkpoint file not found: no/such/supernet.pt",
    }
    assert fields["colour"].startswith("unknown field; allowed: name, supernet")
    assert "stm32f746 has no metric 'sram'" in fields["targets.stm32f746.sram"]
    assert "nodevice" in fields["targets.nodevice"]


def test_schema_and_objective_problems_with_a_good_supernet(raw_config):
    raw = raw_config(
        objectives=[{"metric": "stm32f746.speed", "goal": "minimize"}],
        targets={"stm32f746": {"batch": 0}},
    )
    fields = problems_of(raw)
    assert fields == {"targets.stm32f746.batch": "must be at least 1, got 0"}
    raw["targets"] = {"stm32f746": {}}
    assert list(problems_of(raw)) == ["objectives.0.metric"]


def test_a_device_that_cannot_cost_the_space_is_refused_with_its_reason(raw_config):
    # local-cpu-gan's tables hold a GAN generator's blocks, none of an MBConv classifier's
    fields = problems_of(raw_config(targets={"local-cpu-gan": {}, "stm32f746": {}}))
    assert list(fields) == ["targets.local-cpu-gan"]
    assert "local-cpu-gan cannot cost space 'mnist-mbv3'" in fields["targets.local-cpu-gan"]


def test_one_problem_stays_one_line(raw_config):
    with pytest.raises(SearchConfigError) as caught:
        check_search_config(raw_config(algorithm={"population": 2}), "t")
    message = "invalid search config t: algorithm.population: must be at least 4, got 2"
    assert str(caught.value) == message


def test_the_cli_lists_every_problem(raw_config, tmp_path):
    path = tmp_path / "bad.yaml"
    raw = raw_config(algorithm={"population": 2}, targets={"stm32f746": {"flash_kb": 0}})
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["search", "launch", str(path), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "algorithm.population: must be at least 4, got 2" in result.output
    assert "targets.stm32f746.flash_kb: a limit must be > 0 and finite, got 0" in result.output
    assert "Traceback" not in result.output
