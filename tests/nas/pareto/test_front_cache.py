"""A server's kept fronts: the same front while the search's rows are unchanged, a new one
after they change, one computation for many concurrent requests."""

from __future__ import annotations

import threading

import pytest

from nas.pareto import FrontCache, cache, to_json
from nas.search import launch, resume_search
from nas.store import Search, Store, lease


@pytest.fixture
def counted(monkeypatch):
    """How many times a front has been computed."""
    calls = []
    compute = cache.pareto_front

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return compute(*args, **kwargs)

    monkeypatch.setattr(cache, "pareto_front", counting)
    return calls


def test_a_front_is_kept_until_its_search_changes(search_config, counted):
    config = search_config()
    store = Store(config.config.database)
    runner = launch(config, store, progress=False)
    runner.run(stop_after_generations=1)
    lease.release(store, Search, runner.search_id, runner.driver)
    fresh = FrontCache(refresh_seconds=0)
    first = fresh.front(store, runner.search_id)
    assert fresh.front(store, runner.search_id) is first and len(counted) == 1
    other = fresh.front(store, runner.search_id, target="stm32f746")
    assert other is not first and len(counted) == 2  # another query, another front

    runner = launch(config, store, progress=False)  # a second search: not this one's rows
    runner.run(stop_after_generations=1)
    assert fresh.front(store, 1) is first and len(counted) == 2

    lagging = FrontCache(refresh_seconds=3600)
    kept = lagging.front(store, runner.search_id)
    resume_search(runner.search_id, store, force=True, progress=False, stop_after_generations=1)
    assert lagging.front(store, runner.search_id) is kept  # running: kept up to an hour
    resume_search(runner.search_id, store, force=True, progress=False)  # to the end
    done = lagging.front(store, runner.search_id)
    assert done is not kept  # finished: computed again at once
    assert to_json(done) is to_json(done)  # rendered once
    assert lagging.front(store, runner.search_id) is done
    store.dispose()


def test_concurrent_requests_for_one_front_compute_it_once(search_config, counted):
    config = search_config()
    store = Store(config.config.database)
    search_id = launch(config, store, progress=False).run().search_id
    cache = FrontCache()
    fronts, start = [], threading.Barrier(8)

    def ask() -> None:
        start.wait()
        fronts.append(cache.front(store, search_id, where=("stm32f746.flash_kb<=600",)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counted) == 1 and all(f is fronts[0] for f in fronts)
    store.dispose()
