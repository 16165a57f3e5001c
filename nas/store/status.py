"""The statuses of the leased rows (searches and exports), each set written once here.

The doors never spell a status set of their own: a search's and an export's JSON carry
`finished` (no worker will change the row any more), which the web page polls on.
"""

from __future__ import annotations

RUNNING, CANCELLING, CANCELLED = "running", "cancelling", "cancelled"
COMPLETED, INFEASIBLE, FAILED = "completed", "infeasible", "failed"
QUEUED = "queued"  # an export recorded for a worker that has not taken it yet

# a search in these states has (or is waiting for) a driver that still changes it
SEARCH_UNFINISHED = (RUNNING, CANCELLING)
# a search that has ended for good; a failed one may still be resumed
SEARCH_FINAL = (CANCELLED, COMPLETED, INFEASIBLE)
# an export in these states has (or is waiting for) a worker
EXPORT_UNFINISHED = (QUEUED, RUNNING)
