"""GET /searches/{id}/pareto as a table's pages: sorted by a metric or a row field, cut to
`offset`..`offset+limit`, with `total`; unknown names refused with a 422 naming them; and the
search's own limits as `where` answered from the server's kept front."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from nas.pareto import cache
from nas.search import launch_search
from nas.service.app import create_app
from nas.store import Store


@pytest.fixture
def served(search_config, tmp_path, monkeypatch):
    """A client of a server over a completed search (4 generations of 12, so its front has
    rows to page), its id, and the fronts the server computed (not served from its cache)."""
    computed = []
    compute = cache.pareto_front

    def counting(*args, **kwargs):
        computed.append(args[1:])
        return compute(*args, **kwargs)

    monkeypatch.setattr(cache, "pareto_front", counting)
    config = search_config(algorithm={"population": 12, "generations": 4, "seed": 1})
    store = Store(config.config.database)
    search_id = launch_search(config, store, progress=False).search_id
    with TestClient(create_app(store, tmp_path / "service", supervise=False)) as client:
        yield client, search_id, computed
    store.dispose()


def test_the_plain_answer_is_the_whole_front_with_its_total(served):
    client, search_id, _ = served
    answer = client.get(f"/searches/{search_id}/pareto").json()
    assert answer["total"] == len(answer["front"]) >= 4
    assert answer["offset"] == 0 and answer["sort"] is None and answer["order"] is None
    quality = answer["objectives"][0]["metric"]  # the front's order: best quality first
    values = [row[quality] for row in answer["front"]]
    assert values == sorted(values, reverse=answer["objectives"][0]["goal"] == "maximize")


def test_a_front_sorted_and_paged_on_the_server(served):
    client, search_id, _ = served
    url = f"/searches/{search_id}/pareto"
    whole = client.get(url).json()["front"]
    metric = "stm32f746.peak_sram_kb"
    pages, offset = [], 0
    while offset < len(whole):
        page = client.get(url, params={"sort": "peak_sram_kb", "offset": offset, "limit": 3})
        answer = page.json()
        assert answer["total"] == len(whole) and answer["offset"] == offset
        assert answer["sort"] == metric and answer["order"] == "asc"  # resolved, cost: asc
        assert 1 <= len(answer["front"]) <= 3
        pages += answer["front"]
        offset += 3
    by_sram = sorted(whole, key=lambda row: row[metric])  # stable: ties in the front's order
    assert [r["candidate"] for r in pages] == [r["candidate"] for r in by_sram]
    beyond = client.get(url, params={"sort": metric, "offset": len(whole), "limit": 3}).json()
    assert beyond["front"] == [] and beyond["total"] == len(whole)

    descending = client.get(url, params={"sort": metric, "order": "desc"}).json()["front"]
    assert [r[metric] for r in descending] == sorted((r[metric] for r in whole), reverse=True)
    by_candidate = client.get(url, params={"sort": "candidate", "limit": 2}).json()["front"]
    assert [r["candidate"] for r in by_candidate] == sorted(r["candidate"] for r in whole)[:2]
    quality = client.get(url, params={"sort": "top1"}).json()  # a maximised objective
    assert quality["order"] == "desc" and quality["front"][0]["top1"] == whole[0]["top1"]

    csv = client.get(url, params={"sort": metric, "order": "desc", "format": "csv"}).text
    rows = csv.splitlines()[1:]
    assert len(rows) == len(whole)
    assert [int(r.split(",")[0]) for r in rows] == [r["candidate"] for r in descending]


def test_unknown_sort_names_and_bad_pages_are_refused_by_name(served):
    client, search_id, _ = served
    url = f"/searches/{search_id}/pareto"
    answer = client.get(url, params={"sort": "speed"})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "cannot sort the front by 'speed'" in detail
    assert "peak_sram_kb" in detail and "candidate, generation, arch_id" in detail
    wrong_device = client.get(url, params={"sort": "stm32f746.fid"}).json()["detail"]
    assert "device stm32f746 has no metric 'fid'" in wrong_device
    for params in ({"order": "up"}, {"limit": 0}, {"offset": -1}):
        answer = client.get(url, params={"sort": "top1", **params})
        assert answer.status_code == 422, params
        assert next(iter(params)) in str(answer.json()["detail"])


def test_the_searchs_own_limits_as_where_are_served_from_the_kept_front(served):
    client, search_id, computed = served
    url = f"/searches/{search_id}/pareto"
    plain = client.get(url).json()
    own = ["stm32f746.peak_sram_kb<=12", "stm32f746.flash_kb<=600", "h100-sxm.latency_ms<=0.7"]
    for where in (own, ["peak_sram_kb<=100", "flash_kb<=600"]):  # the page's, and looser
        assert client.get(url, params={"where": where}).json() == plain
    page = client.get(url, params={"where": own, "sort": "macs", "limit": 2}).json()
    assert page["total"] == plain["total"] and len(page["front"]) == 2
    assert len(computed) == 1  # the first request's; the others found it kept
    tighter = client.get(url, params={"where": ["peak_sram_kb<=8"]}).json()
    assert tighter["where"] == ["stm32f746.peak_sram_kb<=8"] and len(computed) == 2
