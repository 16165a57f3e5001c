"""`nas search list` and `nas pareto --top` at their edges: a search with no best value, and
a front shown in part."""

from __future__ import annotations

from typer.testing import CliRunner

from nas.cli import app
from nas.pareto import pareto_front
from nas.search import INFEASIBLE, launch_search
from nas.store import Store

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_search_list_shows_a_dash_for_a_search_with_no_best_value(search_config):
    # a flash limit the smallest subnet already exceeds: infeasible at once, no best value
    config = search_config(targets={"stm32f746": {"flash_kb": 1.0}})
    db = config.config.database
    outcome = launch_search(config, Store(db), progress=False)
    assert outcome.status == INFEASIBLE

    listed = run("search", "list", "--db", db)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if INFEASIBLE in line)
    assert row.split("│")[7].strip() == "-"  # the best-value column


def _table_arch_ids(output: str, front_ids: set[str]) -> list[str]:
    return [word for line in output.splitlines() for word in line.split() if word in front_ids]


def test_pareto_top_shows_the_first_rows_and_says_where_the_rest_is(searched):
    store, search_id, _ = searched
    front = pareto_front(store, search_id).front
    assert len(front) >= 3, "the test needs a front of a few rows"
    ids = {c.arch_id for c in front}

    shown = run("pareto", search_id, "--db", store.url, "--top", 2)
    assert shown.exit_code == 0, shown.output
    assert _table_arch_ids(shown.output, ids) == [c.arch_id for c in front[:2]]  # its order
    assert f"... and {len(front) - 2} more; all {len(front)}: " in shown.output
    assert f"nas pareto {search_id} --format csv" in shown.output

    # as many rows as the front has, or more: the whole table, and no line about the rest
    whole = run("pareto", search_id, "--db", store.url, "--top", len(front))
    assert _table_arch_ids(whole.output, ids) == [c.arch_id for c in front]
    assert "more; all" not in whole.output


def test_pareto_top_names_the_same_query_and_refuses_other_formats(searched):
    store, search_id, _ = searched
    where = "h100-sxm.latency_ms<=10"
    shown = run("pareto", search_id, "--db", store.url, "--top", 1, "--where", where)
    assert f"nas pareto {search_id} --where '{where}' --format csv" in shown.output

    for args in (["--format", "csv"], ["--json"]):
        refused = run("pareto", search_id, "--db", store.url, "--top", 1, *args)
        assert refused.exit_code != 0 and "--top shortens the table only" in refused.output
    zero = run("pareto", search_id, "--db", store.url, "--top", 0)
    assert zero.exit_code != 0 and "--top" in zero.output
