"""A server's kept fronts: the same front while the search's rows are unchanged, a new one
after they change, one computation for many concurrent requests."""

from __future__ import annotations

import threading

import pytest

from nas.pareto import FrontCache, cache, pareto_front, to_json
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


def test_the_searchs_own_limits_as_conditions_are_served_from_the_kept_front(
    search_config, counted
):
    """The web page sends the search's limits as `where`: dropped before the key is formed
    (as are looser ones, of the same metric and direction), so that front is the plain one
    and computed once; a condition a feasible candidate can fail is a front of its own."""
    store = Store(search_config().config.database)
    search_id = launch(search_config(), store, progress=False).run().search_id
    fronts = FrontCache()
    plain = fronts.front(store, search_id)
    own = ["stm32f746.peak_sram_kb<=12", "flash_kb<=600", "h100-sxm.latency_ms<=0.7"]
    looser = ["peak_sram_kb<=12.5", "stm32f746.flash_kb<601", "flash_kb<=600"]
    assert fronts.front(store, search_id, where=own) is plain
    assert fronts.front(store, search_id, where=looser) is plain
    assert len(counted) == 1
    assert to_json(pareto_front(store, search_id, where=own)) == to_json(plain)  # no cache

    # `<` the limit itself rejects a candidate at the limit; `>=` any value can reject one
    fronts.front(store, search_id, where=["peak_sram_kb<12"])
    fronts.front(store, search_id, where=["peak_sram_kb>=12"])
    assert len(counted) == 3
    tighter = fronts.front(store, search_id, where=["flash_kb<=600", "peak_sram_kb<=9"])
    assert len(counted) == 4 and [str(c) for c in tighter.conditions] == [
        "stm32f746.peak_sram_kb<=9"
    ]
    store.dispose()
