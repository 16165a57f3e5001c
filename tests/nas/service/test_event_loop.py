"""No blocking work on the event loop: with a launch of the once-for-all supernet in flight
(POST /searches reads and hashes its 43 MB file, loads its predictor and records the
search), GET /searches/{id} stays under 100 ms at p99.

The server runs in a process of its own, and its launches start no worker (see
launch_load.py). Only the GETs sent while a launch was in flight count, at least 100 of
them. The host's other load can stall the server process at any moment (0.3 to 0.8 s seen
at a load average of 10 on 2 cores), so a window whose p99 misses is measured again, up to
WINDOWS times. A loop that launches block misses in every window: with the check run on
the loop, GETs took 320 ms at p50 and 930 ms at p99 here.
"""

from __future__ import annotations

import httpx

from tests.nas.service.launch_load import AUTH, ofa_search, server_process, time_progress

BUDGET_MS = 100  # the figure, at p99
UNDER_LOAD = 300  # GETs timed per window
MINIMUM_UNDER_LOAD = 100
WINDOWS = 3


def test_progress_answers_within_100_ms_at_p99_while_ofa_launches_run(ofa_files, tmp_path):
    windows = []
    with server_process(f"sqlite:///{tmp_path / 'nas.db'}", tmp_path / "data") as url:
        first = httpx.post(
            url + "/searches", json=ofa_search(ofa_files, "first"), headers=AUTH, timeout=120
        )
        assert first.status_code == 201, first.text
        search_id = first.json()["id"]
        for _ in range(WINDOWS):
            timing = time_progress(url, search_id, UNDER_LOAD, launching=ofa_files)
            summary = timing.summary()
            assert summary["gets"] >= MINIMUM_UNDER_LOAD and summary["launches"] >= 2, summary
            windows.append(summary)
            if timing.p99() < BUDGET_MS:
                return
    raise AssertionError(f"GET /searches/{search_id} with launches in flight: {windows}")
