"""The search's progress bar (rich), on stderr; disabled for scripts and services."""

from __future__ import annotations

from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


def _literal(text: str) -> str:
    """`text` shown as it is inside a TextColumn: no markup, no format fields."""
    return escape(text).replace("{", "{{").replace("}", "}}")


class SearchProgress:
    """`with SearchProgress(...) as bar: bar.generation_done(...)`."""

    def __init__(
        self,
        search_id: int,
        name: str,
        first_metric: str,
        total: int,
        done: int,
        feasible: int,
        enabled: bool = True,
    ) -> None:
        columns = (  # the texts are rich markup and str.format templates: quote both
            TextColumn(f"[bold]search {search_id}[/] {_literal(name)}"),
            BarColumn(),
            TextColumn("gen {task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]:.0f} cand/s  feasible {task.fields[feasible]}"),
            TextColumn(f"best {_literal(first_metric)} " + "{task.fields[best]}"),
            TextColumn("{task.fields[note]}"),  # an active search's front hypervolume
            TimeElapsedColumn(),
        )
        self._bar = Progress(*columns, disable=not enabled)
        self._task: TaskID = self._bar.add_task(
            "search", total=total, completed=done, rate=0.0, feasible=feasible, best="-", note=""
        )

    def __enter__(self) -> SearchProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def generation_done(
        self, candidates_per_s: float, feasible: int, best: float | None, note: str = ""
    ) -> None:
        self._bar.update(
            self._task,
            advance=1,
            rate=candidates_per_s,
            feasible=feasible,
            best="-" if best is None else f"{best:.4g}",
            note=note,
        )
