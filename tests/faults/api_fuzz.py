"""The HTTP API fuzzed from its own OpenAPI schema (Schemathesis), against a live server.

Used by tests/faults/test_api_fuzz.py (a small budget, in CI) and experiments/bench_faults.py
(`--only api`, a larger one). Every generated request is checked for:
- a server error (any 5xx, or no answer);
- a response its route does not declare: status code, content type or body schema;
- a mutation (POST) that a request without the token does not answer with 401.

Every operation gets cases of Schemathesis' positive mode (requests the schema allows) and
of its negative mode (requests it forbids):
- a read is sent once, without the token (reads are open);
- a mutation is sent without the token, and must be a 401: the token is checked before the
  body is read, so these requests cannot start any work. Then it is sent with the token
  where that cannot start a job: cancel and resume (the searches are finished), and new
  searches (a generated config cannot name the trained files a search needs, so it is
  refused while being checked). An accepted export starts a worker process that loads
  torch (seconds of CPU and about 300 MB), so the export route gets the token only on
  negative cases, which it refuses before queueing anything. `jobs_started` counts the
  searches and exports the server holds after the fuzz beyond those it held before: a
  fuzzed request that did start work is caught, not hidden.

Path parameters are generated, and in half of the positive requests they name real rows
(the searches, candidates, exports, files and devices the server lists), so that the
id-taking routes are fuzzed past their 404s.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests  # Schemathesis' own HTTP client: a case is sent in a requests.Session

from tests.faults.harness import ServerProcess, start_server

MUTATIONS = {"POST", "PUT", "PATCH", "DELETE"}
# routes that, when they accept a request, record a row and start a worker process for it
STARTS_A_JOB = {"POST /searches", "POST /searches/{search_id}/candidates/{number}/export"}
# of those, the ones a request valid by the schema can pass: with the token, they get only
# negative requests (a new search also needs the path of a trained supernet, which no
# generated config names, so its valid-by-schema requests are refused while checking)
VALID_REQUESTS_START_A_JOB = {"POST /searches/{search_id}/candidates/{number}/export"}
SHOWN_FAILURES = 50  # failures kept with their reproducer


@dataclass
class ApiFuzzReport:
    requests: int = 0  # HTTP requests sent for generated cases
    server_errors: int = 0  # 5xx answers, or none
    schema_violations: int = 0  # other answers their operation does not declare
    missing_401s: int = 0  # mutations without the token not refused with 401
    jobs_started: int = 0  # searches and exports added by the fuzz (goal: 0)
    by_operation: Counter = field(default_factory=Counter)  # requests per operation
    by_status: Counter = field(default_factory=Counter)  # requests per status code
    # the first few of each kind ("server error", ...), each with how to reproduce it
    failures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        return self.server_errors + self.schema_violations + self.missing_401s + self.jobs_started

    def note(self, kind: str, failure: str) -> None:
        kept = self.failures.setdefault(kind, [])
        if len(kept) < SHOWN_FAILURES:
            kept.append(failure[:3000])

    def summary(self) -> str:
        shown = [f"{kind}: {f}" for kind, kept in self.failures.items() for f in kept[:5]]
        return (
            f"{self.requests} requests: {self.server_errors} server errors, "
            f"{self.schema_violations} schema violations, {self.missing_401s} missing 401s, "
            f"{self.jobs_started} jobs started\n" + "\n\n".join(shown)
        )


def serve_rows_to_fuzz(raw_config: dict[str, Any], folder: Path, token: str) -> ServerProcess:
    """`nas serve` with `token`, on the config's database once it holds the config's search,
    completed (run in this process), and a completed export of its first candidate (as
    state_dict, the quickest format to write). The caller kills its group when done."""
    from nas import core

    database = raw_config["database"]
    data_dir = folder / "service"
    search_id = core.launch(raw_config, database).search_id
    export_id = core.queue_export(search_id, 0, data_dir, ["state_dict"], db=database)
    export = core.run_export_job(export_id, database)
    if export["status"] != "completed":
        raise AssertionError(f"the export to fuzz did not complete: {export['message']}")
    return start_server(database, data_dir, folder / "server.log", token=token)


def real_path_values(base_url: str) -> dict[str, list[dict[str, Any]]]:
    """Path parameters naming real rows, as the server lists them, keyed by the names of an
    operation's path parameters ("search_id,number"): every search, every candidate of the
    first one, every export and its files, every device."""

    def get(path: str, **query: Any) -> Any:
        return requests.get(base_url + path, params=query, timeout=30).json()

    searches = [s["id"] for s in get("/searches", limit=500)["items"]]
    exports = [e["id"] for e in get("/exports", limit=500)["items"]]
    first = searches[:1]
    numbers = [c["candidate"] for s in first for c in get(f"/searches/{s}/candidates")["items"]]
    files = [(e, f["name"]) for e in exports for f in get(f"/exports/{e}")["files"]]
    return {
        "search_id": [{"search_id": s} for s in searches],
        "search_id,number": [{"search_id": s, "number": n} for s in first for n in numbers],
        "export_id": [{"export_id": e} for e in exports],
        "export_id,name": [{"export_id": e, "name": name} for e, name in files],
        "name": [{"name": d["name"]} for d in get("/hardware")["items"]],
    }


def _rows_held(base_url: str) -> int:
    """How many searches and exports the server holds."""
    return sum(
        requests.get(base_url + path, timeout=30).json()["total"]
        for path in ("/searches", "/exports")
    )


@dataclass
class _Sender:
    """Sends a generated case, checks the answer, and counts what it finds in `report`."""

    base_url: str
    token: str
    checks: list[Any]
    report: ApiFuzzReport
    session: requests.Session = field(default_factory=requests.Session)

    def fuzz(self, case: Any) -> None:
        """A read once (reads are open); a mutation without the token (it must be a 401,
        refused before its body is read), then with it where that cannot start a job."""
        label = case.operation.label
        # a negative strategy gives a positive case where it finds nothing to negate
        negative = case.meta is not None and case.meta.generation.mode.is_negative
        status = self.send(case, authorized=False)
        if case.method.upper() not in MUTATIONS:
            return
        if status != 401:
            self.report.missing_401s += 1
            self.report.note("missing 401", f"{label}: {status}\n{case.as_curl_command()}")
        if label in VALID_REQUESTS_START_A_JOB and not negative:
            return
        status = self.send(case, authorized=True)
        if label in STARTS_A_JOB and 200 <= status < 300:  # counted by jobs_started
            self.report.note("job started", f"{label}: {status}\n{case.as_curl_command()}")

    def send(self, case: Any, authorized: bool) -> int:
        from schemathesis.errors import FailureGroup

        headers = {"Authorization": f"Bearer {self.token}"} if authorized else None
        self.report.requests += 1
        self.report.by_operation[case.operation.label] += 1
        try:  # a generous timeout: the first plot imports matplotlib on a busy machine
            response = case.call(
                base_url=self.base_url, session=self.session, headers=headers, timeout=60
            )
        except requests.RequestException as err:  # no answer: the worst server error
            self.report.server_errors += 1
            self.report.note("server error", f"{case.operation.label}: no answer: {err}")
            return 0
        self.report.by_status[response.status_code] += 1
        try:
            case.validate_response(response, checks=self.checks, headers=headers)
        except FailureGroup as group:
            if response.status_code >= 500:
                self.report.server_errors += 1
                kind = "server error"
            else:  # a 5xx also fails the conformance checks: counted once, as a 5xx
                self.report.schema_violations += 1
                kind = "schema violation"
            token = " with the token" if authorized else ""
            self.report.note(kind, f"{case.operation.label}{token}: {group}")
        return response.status_code


def _pinned(case_and_values: tuple[Any, dict[str, Any]]) -> Any:
    """The case with its path parameters set to real rows' (valid by the schema too)."""
    case, values = case_and_values
    case.path_parameters.update(values)
    return case


def fuzz_api(base_url: str, token: str, examples: int, seed: int = 0) -> ApiFuzzReport:
    """Up to `examples` generated cases per operation and generation mode, sent to the
    server at `base_url` (whose bearer token is `token`) and checked; see the module's
    docstring. The same seed generates the same cases."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    real = real_path_values(base_url)
    rows_before = _rows_held(base_url)
    report = ApiFuzzReport()
    sender = _Sender(base_url, token, checks, report)
    for result in schema.get_all_operations():
        operation = result.ok()
        names = ",".join(re.findall(r"\{(\w+)\}", operation.path))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(mode)
            if mode.is_positive and real.get(names):  # half of them on real rows
                on_real_rows = st.tuples(strategy, st.sampled_from(real[names])).map(_pinned)
                strategy = st.one_of(strategy, on_real_rows)

            @seeded(seed)
            @settings(
                max_examples=examples,
                database=None,  # nothing written under .hypothesis/
                deadline=None,
                phases=[Phase.generate],  # failures are counted, not shrunk
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                sender.fuzz(case)

            try:
                run()
            except Unsatisfiable:  # no parameter or body to negate
                if mode.is_positive:
                    raise
    report.jobs_started = _rows_held(base_url) - rows_before
    return report
