"""`nas search ...`, `nas pareto` and `nas export` from the command line (in-process)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from nas.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def last_json(result):
    return json.loads(result.output.strip().splitlines()[-1])


def test_launch_list_show_pareto_export(search_config, tmp_path):
    config = search_config()
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config.config.model_dump(mode="json")))
    db = config.config.database

    launched = run("search", "launch", path, "--json")
    assert launched.exit_code == 0, launched.output
    outcome = last_json(launched)
    assert outcome["status"] == "completed" and outcome["candidates"] == 24
    search_id = outcome["search_id"]

    listed = run("search", "list", "--db", db, "--json")
    assert listed.exit_code == 0 and last_json(listed)[0]["id"] == search_id
    assert "completed" in run("search", "list", "--db", db).output
    shown = last_json(run("search", "show", search_id, "--db", db, "--json"))
    assert shown["generations"] == "3/3" and shown["status"] == "completed"

    front = run("pareto", search_id, "--db", db, "--json", "--plot", tmp_path / "f.png")
    assert front.exit_code == 0, front.output
    data = last_json(front)
    assert data["front"] and (tmp_path / "f.png").exists()
    csv_out = run(
        "pareto",
        search_id,
        "--db",
        db,
        "--format",
        "csv",
        "--target",
        "stm32f746",
        "--where",
        "flash_kb<=600",
    )
    assert csv_out.exit_code == 0 and csv_out.output.startswith("candidate,arch_id,top1")
    table = run("pareto", search_id, "--db", db)
    assert table.exit_code == 0 and "Pareto front" in table.output

    candidate = data["front"][0]["candidate"]
    exported = run(
        "export",
        search_id,
        candidate,
        "--db",
        db,
        "--format",
        "onnx,state_dict",
        "--out",
        tmp_path / "export",
        "--json",
    )
    assert exported.exit_code == 0, exported.output
    card = last_json(exported)["card"]
    assert card["arch_id"] == data["front"][0]["arch_id"] and "onnx" in card["files"]

    cancelled = run("search", "cancel", search_id, "--db", db)
    assert cancelled.exit_code == 2 and "already completed" in cancelled.output


def test_cli_errors(search_config, tmp_path):
    db = search_config().config.database
    from nas.store import Store

    Store(db)  # an empty database: resume and cancel create none (a missing one is an error)
    assert "no search with id 77" in run("search", "resume", 77, "--db", db).output
    assert run("pareto", 77, "--db", db).exit_code == 2
    bad = run("pareto", 1, "--db", db, "--format", "xml")
    assert bad.exit_code == 2 and "table, json or csv" in bad.output
    unreachable = run("search", "list", "--db", "postgresql://u:pw@127.0.0.1:1/x")
    assert unreachable.exit_code == 2 and "cannot connect to database" in unreachable.output
    path = tmp_path / "bad.yaml"
    path.write_text("supernet: x.pt\ntargets: {stm32f746: {sram: 3}}\n")
    result = run("search", "launch", path)
    assert result.exit_code == 2 and "stm32f746 has no metric 'sram'" in result.output


def _raw_config(search_config, tmp_path, **changes):
    raw = search_config().config.model_dump(mode="json")
    raw.update(changes)
    raw["database"] = f"sqlite:///{tmp_path / 'bad.db'}"
    return raw


def _one_error_line(result, expected):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"targets": {"stm32f746": {"peak_sram_kb": float("nan")}}},
            "targets.stm32f746.peak_sram_kb: a limit must be > 0 and finite, got nan",
        ),
        (
            {"targets": {"stm32f746": {"peak_sram_kb": float("inf")}}},
            "targets.stm32f746.peak_sram_kb: a limit must be > 0 and finite, got inf",
        ),
        ({"algorithm": {"seed": 2**32}}, "algorithm.seed: "),
        ({"algorithm": {"seed": -3}}, "algorithm.seed: "),
        ({"algorithm": {"population": 99999999999999999999}}, "algorithm.population: "),
        ({"algorithm": {"generations": 10**12}}, "algorithm.generations: "),
        (
            {"targets": {"stm32f746": {"peak_sram_kb": "8"}}},
            "targets.stm32f746.peak_sram_kb: a limit must be a number, got '8'",
        ),
        ({"supernet": "EMPTY"}, "supernet: "),
        ({"predictor": "EMPTY"}, "predictor: "),
        ({"supernet": "MARKUP"}, "empty[/bold]-run is a folder that holds none of"),
    ],
)
def test_bad_search_configs_give_one_error_line_and_no_row(
    search_config, tmp_path, change, expected
):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    markup = tmp_path / "empty[" / "bold]-run"  # rich markup in the message: "[/bold]"
    markup.mkdir(parents=True)
    folders = {"EMPTY": str(empty), "MARKUP": str(markup)}
    change = {k: folders.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    raw = _raw_config(search_config, tmp_path, **change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    _one_error_line(run("search", "launch", path, "--no-progress"), expected)
    db_file = tmp_path / "bad.db"  # no search row: no database, or one without searches
    if db_file.exists():
        listed = run("search", "list", "--db", raw["database"], "--json")
        assert listed.exit_code == 0 and last_json(listed) == [], listed.output


def test_a_run_folder_as_supernet_and_markup_in_the_name(search_config, tiny_supernet, tmp_path):
    folder = tiny_supernet.path.parent
    raw = _raw_config(
        search_config, tmp_path, name="[/bold] {x} [red]", supernet=str(folder),
        predictor=str(folder),
    )  # fmt: skip
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(raw))
    db = raw["database"]
    launched = run("search", "launch", path)  # with its progress bar
    assert launched.exit_code == 0, launched.output
    assert "completed" in launched.output
    listed = run("search", "list", "--db", db)
    assert listed.exit_code == 0 and "[/bold] {x} [red]" in listed.output
    shown = run("search", "show", 1, "--db", db)
    assert shown.exit_code == 0 and "[/bold] {x} [red]" in shown.output
    from nas.store import Search, Store

    store = Store(db)
    with store.session() as s:
        row = s.get(Search, 1)
        assert row.config["supernet"] == str(tiny_supernet.path.resolve())
        assert row.config["predictor"] == str((folder / "predictor.pt").resolve())


def _launched_from_the_cli(config, tmp_path) -> tuple[str, int]:
    """`nas search launch` of a checked config written as YAML: its database and search id."""
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config.config.model_dump(mode="json")))
    launched = run("search", "launch", path, "--json", "--no-progress")
    assert launched.exit_code == 0, launched.output
    return config.config.database, last_json(launched)["search_id"]


def test_pareto_input_errors_and_the_plot_path(search_config, tmp_path):
    db, search_id = _launched_from_the_cli(search_config(), tmp_path)
    _one_error_line(
        run("pareto", search_id, "--db", db, "--where", "peak_sram_kb<=.."),
        "filter 'peak_sram_kb<=..': '..' is not a number",
    )
    _one_error_line(
        run("pareto", search_id, "--db", db, "--plot", tmp_path / "x.xyz"),
        "cannot write a '.xyz' file; use one of .png, .pdf, .svg",
    )
    assert not (tmp_path / "x.xyz").exists()
    shown = run("pareto", search_id, "--db", db, "--plot", tmp_path / "front")
    assert shown.exit_code == 0, shown.output
    assert (tmp_path / "front.png").is_file() and not (tmp_path / "front").exists()
    assert shown.output.strip().splitlines()[-1] == f"plot: {tmp_path / 'front.png'}"


def test_pareto_plot_to_a_path_that_cannot_be_written_is_one_error_line(search_config, tmp_path):
    db, search_id = _launched_from_the_cli(search_config(), tmp_path)
    _one_error_line(  # the file itself cannot be created
        run("pareto", search_id, "--db", db, "--plot", "/proc/x.png"),
        "cannot write the plot /proc/x.png: ",
    )
    _one_error_line(  # nor can its folder
        run("pareto", search_id, "--db", db, "--plot", "/proc/nas-plot/x.png"),
        "cannot write the plot /proc/nas-plot/x.png: ",
    )


@pytest.mark.parametrize("command", ["cancel", "resume"])
def test_cancel_and_resume_on_a_missing_database_create_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)  # the default database: runs/nas.db here
    result = run("search", command, 1)
    _one_error_line(result, "no database at runs/nas.db")
    assert not (tmp_path / "runs").exists()
