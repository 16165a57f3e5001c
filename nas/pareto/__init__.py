"""Pareto queries over a stored search.

`pareto_front(store, search_id, target=..., where=[...])` reads the objectives and filtered
metrics of the feasible candidates as columns (served by a covering index), keeps the
non-dominated ones under the search's objectives (or only those of one device), one per
distinct arch, and loads whole rows for those alone. A `--where` filter may set a limit
tighter than the search used: `peak_sram_kb<=256`. `FrontCache` keeps recent fronts for a
server while the search's rows are unchanged.

- front: the algorithm (`non_dominated`), pure numpy
- conditions: `--where` filters and the resolution of metric names against the devices
- queries: the SQL side: candidates, their metric columns, `pareto_front`
- pages: a front sorted and cut to one page (a table's)
- output: JSON and CSV text, the table's columns
- plot: the matplotlib figure (imported only when drawn)
- cache: `FrontCache`, a server's recent fronts
"""

from nas.pareto.cache import FrontCache
from nas.pareto.conditions import NETWORK_LEVEL, OPERATORS, Condition, parse_conditions
from nas.pareto.front import non_dominated
from nas.pareto.output import cell_text, columns_of, to_csv, to_json
from nas.pareto.pages import FrontPage, front_page
from nas.pareto.plot import DEFAULT_PLOT_SUFFIX, PLOT_SUFFIXES, plot, plot_axes, plot_file
from nas.pareto.queries import (
    CandidateRow,
    Front,
    candidate_points,
    count_candidates,
    load_candidates,
    load_config,
    objectives_for,
    pareto_front,
    split_bounds,
)

__all__ = [
    "DEFAULT_PLOT_SUFFIX",
    "NETWORK_LEVEL",
    "OPERATORS",
    "PLOT_SUFFIXES",
    "CandidateRow",
    "Condition",
    "Front",
    "FrontCache",
    "FrontPage",
    "candidate_points",
    "cell_text",
    "columns_of",
    "count_candidates",
    "front_page",
    "load_candidates",
    "load_config",
    "non_dominated",
    "objectives_for",
    "pareto_front",
    "parse_conditions",
    "plot",
    "plot_axes",
    "plot_file",
    "split_bounds",
    "to_csv",
    "to_json",
]
