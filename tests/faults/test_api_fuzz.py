"""The HTTP API fuzzed from its own OpenAPI schema (Schemathesis) against a live `nas serve`
with a token, on a SQLite database holding a finished search and a completed export: no 5xx,
every answer as its route declares it, a 401 for every mutation without the token, and no
job started by a fuzzed request. What is sent, and why, is in tests/faults/api_fuzz.py;
`experiments/bench_faults.py --only api` runs the same fuzz with a larger budget."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.api_fuzz import fuzz_api, serve_rows_to_fuzz
from tests.faults.harness import ServerProcess

TOKEN = "fuzz-token"
EXAMPLES = 60  # per operation and generation mode: about 2,300 requests, 30 s here


@pytest.fixture
def live_server(raw_config, tmp_path) -> Iterator[ServerProcess]:
    """`nas serve` with a token, over a completed search of 8 x 3 candidates and an export."""
    server = serve_rows_to_fuzz(raw_config(), tmp_path, TOKEN)
    yield server
    server.kill_group()


def test_the_api_fuzzed_from_its_schema_answers_as_declared(live_server):
    report = fuzz_api(live_server.url, TOKEN, EXAMPLES, seed=0)
    print(f"{report.requests} requests, by status {dict(sorted(report.by_status.items()))}")
    assert report.problems == 0, report.summary() + "\n" + live_server.tail()
    assert report.requests >= 2000
    spec = live_server.request("GET", "/openapi.json")[1]
    operations = {f"{m.upper()} {p}" for p, methods in spec["paths"].items() for m in methods}
    assert set(report.by_operation) == operations  # every route was fuzzed
    # the id-taking routes were reached past their 404s: real rows answered, and a
    # mutation with the token reached its handler (409: the completed search cannot resume)
    assert report.by_status[200] >= 100 and report.by_status[409] >= 1
