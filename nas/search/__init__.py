"""The constrained evolutionary search: Optuna's NSGA-II in memory, one SQL transaction per
generation.

- sampler: the NSGA-II subclass and the study it drives
- state: limits, violations, counts and best values, the outcome
- records: the search's rows in SQL (write a generation, restore on resume)
- progress: the progress bar
- runner: the generation loop
- active: `evaluation: active`, a measurement budget spent round by round (acquisition: its
  sample, predictor ensemble, hypervolume and batch choice)
- lifecycle: record (stored, leased to nobody), launch (record and drive here), resume, cancel
"""

from nas.search.lifecycle import (
    cancel_search,
    check_resumable,
    launch,
    launch_search,
    record,
    reopen,
    resume_search,
)
from nas.search.runner import SearchRunner
from nas.search.sampler import GenerationalNSGAII
from nas.search.state import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    INFEASIBLE,
    RUNNING,
    Limit,
    Outcome,
    limits_of,
    violations,
)

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "COMPLETED",
    "FAILED",
    "INFEASIBLE",
    "RUNNING",
    "GenerationalNSGAII",
    "Limit",
    "Outcome",
    "SearchRunner",
    "cancel_search",
    "check_resumable",
    "launch",
    "launch_search",
    "limits_of",
    "record",
    "reopen",
    "resume_search",
    "violations",
]
