"""Seeded fuzzing of the config and arch parsers: every input ends in success or a UserError."""

from __future__ import annotations

import functools

import pytest
from typer.testing import CliRunner

import nas.resources
import supernet
from nas.cli import app
from nas.errors import SearchConfigError
from supernet.errors import InvalidArchError
from tests.faults.harness import fuzz_archs, fuzz_configs


@pytest.fixture
def base_config(raw_config, monkeypatch):
    """A valid raw config; opening the same trained file is cached (the parser is fuzzed,
    not torch.load: a path tried for the first time is still opened for real)."""
    real = nas.resources.open_artifact
    monkeypatch.setattr(nas.resources, "open_artifact", functools.lru_cache(maxsize=64)(real))
    raw = raw_config()
    nas.resources.check_search_config(raw, "base")  # the base itself is valid
    return raw


# Defects the fuzzers once found, now fixed, each kept as its own reproducer below. The
# fuzz loops fail on any non-UserError and print the input.
KNOWN: dict[str, str] = {}


def _unknown(report):
    return [f for f in report.failures if not any(f.startswith(k + ":") for k in KNOWN)]


def _fuzz_configs(base, n, seed):
    report = fuzz_configs(base, n, seed)
    print(
        f"config fuzz: {report.tried} inputs, {report.ok} ok, {report.user_errors} UserError, "
        f"known defects {dict(report.signatures)}"
    )
    assert report.tried == n
    unknown = _unknown(report)
    assert not unknown, f"{len(unknown)} new non-UserErrors:\n" + "\n".join(unknown[:10])


def test_config_fuzz(base_config):
    _fuzz_configs(base_config, 1000, seed=0)


@pytest.mark.slow
def test_config_fuzz_long(base_config):
    _fuzz_configs(base_config, 10_000, seed=1)


def _fuzz_archs(n, seed):
    total = 0
    for name in supernet.list_spaces():
        report = fuzz_archs(name, n, seed)
        print(
            f"arch fuzz {name}: {report.tried} inputs, {report.user_errors} UserError, "
            f"known defects {dict(report.signatures)}"
        )
        total += report.tried
        unknown = _unknown(report)
        assert not unknown, f"{name}: {len(unknown)} new:\n" + "\n".join(unknown[:10])
    return total


# ----- the defects found, one input each --------------------------------------------------------


def test_a_non_string_key_is_a_config_error(base_config):
    with pytest.raises(SearchConfigError, match=r"invalid search config t: 1: "):
        nas.resources.check_search_config({**base_config, 1: "x"}, "t")


@pytest.mark.parametrize("value", [["fp16"], {"value": "fp16"}])
def test_an_unhashable_option_is_a_config_error(base_config, value):
    raw = {**base_config, "targets": {"h100-sxm": {"latency_ms": 1, "precision": value}}}
    with pytest.raises(SearchConfigError, match=r"targets\.h100-sxm: .*precision"):
        nas.resources.check_search_config(raw, "t")


@pytest.mark.parametrize("field", ["supernet", "predictor"])
def test_a_too_long_file_name_is_a_config_error(base_config, field):
    raw = {**base_config, field: "x" * 5000}
    with pytest.raises(SearchConfigError, match=rf"invalid search config t: {field}: "):
        nas.resources.check_search_config(raw, "t")


def test_deeply_nested_arch_json_is_an_invalid_arch():
    space = supernet.get_space("mnist-mbv3")
    with pytest.raises(InvalidArchError):
        space.from_json("[" * 100_000 + "]" * 100_000)


def test_arch_fuzz_every_space():
    assert _fuzz_archs(1000 // len(supernet.list_spaces()) + 1, seed=0) >= 1000


@pytest.mark.slow
def test_arch_fuzz_every_space_long():
    assert _fuzz_archs(10_000 // len(supernet.list_spaces()) + 1, seed=1) >= 10_000


BAD_YAML = {
    "syntax.yaml": "name: [unclosed\n",
    "list.yaml": "- a\n- b\n",
    "empty.yaml": "",
    "scalar.yaml": "42\n",
    "binary.yaml": "\x00\x01\x02",
    "tabs.yaml": "name:\tx\n\t- y\n",
}


@pytest.mark.parametrize("mutation", ["nan", "device", "population", "objective", "junk"])
def test_bad_configs_through_the_cli(raw_config, tmp_path, mutation):
    import yaml

    raw = raw_config()
    if mutation == "nan":
        raw["targets"]["stm32f746"]["flash_kb"] = float("nan")
    elif mutation == "device":
        raw["targets"] = {"no-such-device": {"latency_ms": 1}}
    elif mutation == "population":
        raw["algorithm"]["population"] = "many"
    elif mutation == "objective":
        raw["objectives"] = [{"metric": "stm32f746.joules", "goal": "minimize"}]
    else:
        raw["algorithm"] = {"a": {"b": [None, {"c": 1}]}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["search", "launch", str(path), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error" in result.output


@pytest.mark.parametrize("name", [*BAD_YAML, "missing.yaml", "folder"])
def test_unreadable_configs_through_the_cli(tmp_path, name):
    path = tmp_path / name
    if name in BAD_YAML:
        path.write_text(BAD_YAML[name])
    elif name == "folder":
        path.mkdir()
    result = CliRunner().invoke(app, ["search", "launch", str(path), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
