"""`nas search ...`, `nas pareto` and `nas export` from the command line (in-process)."""

from __future__ import annotations

import json

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
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    db = config.database

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
    db = search_config().database
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
