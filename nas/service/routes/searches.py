"""Searches: launch, list, cancel, resume; and what a search holds (its front, candidates,
points, progress events)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from nas import core
from nas.errors import SearchError
from nas.pareto import front_page, to_csv, to_json
from nas.service import schemas
from nas.service.http import (
    READ,
    READ_ERRORS,
    WRITE,
    WRITE_ERRORS,
    FrontsDep,
    Id,
    JobsDep,
    Offset,
    RequestError,
    StoreDep,
    config_body,
    json_response,
)

router = APIRouter(prefix="/searches", tags=["searches"])

_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "description": "A search config (as `nas search run` reads), as JSON or YAML.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}


_SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["progress", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


@router.post(
    "",
    status_code=201,
    dependencies=WRITE,
    response_model=schemas.SearchInfo,
    responses=WRITE_ERRORS,
    openapi_extra=_CONFIG_BODY,
)
async def create_search(request: Request, db: StoreDep, jobs: JobsDep) -> dict[str, Any]:
    """Record a search (checked, stored, leased to nobody: `core.record`, the CLI's own path)
    and start a worker on it, which takes the lease and builds the evaluators; the server
    starts no Ray."""
    raw = await config_body(request)
    # the server's Ray cluster (`nas serve --ray-address`), unless the config names its own
    ray = None if raw.get("ray_address") else request.app.state.ray_address

    def launch() -> dict[str, Any]:
        search_id = core.record(raw, db, None, ray, "request body")
        jobs.start_worker(search_id)
        return {"id": search_id, **core.get_search(search_id, db)}

    # checking reads and hashes the trained file, recording writes SQL and a worker process
    # is started: all off the event loop, so that other requests go on meanwhile
    return await asyncio.to_thread(launch)


@router.post(
    "/check",
    dependencies=WRITE,
    response_model=schemas.CheckedConfig,
    responses=WRITE_ERRORS,
    openapi_extra=_CONFIG_BODY,
)
async def check_search(request: Request) -> dict[str, Any]:
    """Check a search config as a launch does (every problem at once, each beside its
    field, in `problems`), recording and starting nothing: a form's dry run. Answers the
    config as checked (files as absolute paths, default objectives filled in)."""
    raw = await config_body(request)
    checked = await asyncio.to_thread(core.check, raw, None, None, "request body")
    config = checked.config.model_dump(mode="json", exclude={"database"})
    return {"config": config}


@router.get(
    "", dependencies=READ, response_model=schemas.Page[schemas.SearchSummary], responses=READ_ERRORS
)
def list_searches(
    db: StoreDep, offset: Offset = 0, limit: int = Query(50, ge=1, le=500)
) -> dict[str, Any]:
    return core.list_searches(db, offset, limit)


@router.get(
    "/{search_id}", dependencies=READ, response_model=schemas.SearchInfo, responses=READ_ERRORS
)
def get_search(search_id: Id, db: StoreDep) -> dict[str, Any]:
    return core.get_search(search_id, db)


# a search not in a state for what was asked (finished, or a live driver holds it): one
# status, 409, for cancel and resume alike
def _not_now(description: str) -> dict[int | str, dict[str, Any]]:
    return {**WRITE_ERRORS, 409: {"model": schemas.ErrorModel, "description": description}}


@router.post(
    "/{search_id}/cancel",
    dependencies=WRITE,
    response_model=schemas.SearchStatus,
    responses=_not_now("Finished already"),
)
def cancel(search_id: Id, db: StoreDep) -> dict[str, Any]:
    """Ask a running search to stop after its current generation."""
    try:
        return {"id": search_id, "status": core.cancel(search_id, db)}
    except SearchError as err:
        raise RequestError(str(err), 409) from None


@router.post(
    "/{search_id}/resume",
    dependencies=WRITE,
    response_model=schemas.SearchStatus,
    responses=_not_now("Finished, or a live driver has it"),
)
def resume(search_id: Id, db: StoreDep, jobs: JobsDep) -> dict[str, Any]:
    """Start a worker on an unfinished search whose driver died."""
    try:  # the rule `nas search resume` applies: unfinished, and no live driver on it
        core.can_resume(search_id, db)
    except SearchError as err:
        raise RequestError(str(err), 409) from None
    jobs.start_worker(search_id)
    return {"id": search_id, "status": "running"}


@router.get(
    "/{search_id}/pareto",
    dependencies=READ,
    response_class=Response,
    responses={
        **READ_ERRORS,
        200: {
            "model": schemas.Front,
            "description": "The front as `nas pareto --json` prints it (CSV with format=csv)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
    },
)
def pareto(
    search_id: Id,
    db: StoreDep,
    fronts: FrontsDep,
    target: str | None = None,
    where: list[str] = Query(default=[]),
    measured: bool = False,
    format: str = Query("json", pattern="^(json|csv)$"),
    sort: str | None = Query(
        None, description="a metric (as in `where`), or candidate, generation, arch_id"
    ),
    order: str | None = Query(
        None, pattern="^(asc|desc)$", description="default: best first for an objective"
    ),
    offset: Offset = 0,
    limit: int | None = Query(None, ge=1, le=100_000, description="default: every row"),
) -> Response:
    """The non-dominated feasible candidates, filtered by `where` (e.g. `top1>=0.7`); sorted
    by `sort` and cut to `offset`..`offset+limit` (a table's page; `total` counts them all).
    Without these, the whole front, best quality first, as `nas pareto --json` prints it."""
    front = core.query_front(search_id, target, where, measured, db, fronts)
    paged = sort is not None or offset or limit is not None
    page = front_page(front, sort, order, offset, limit, target) if paged else None
    if format == "csv":
        return PlainTextResponse(to_csv(front, page), media_type="text/csv")
    return Response(to_json(front, page), media_type="application/json")


@router.get(
    "/{search_id}/pareto.png",
    dependencies=READ,
    response_class=Response,
    responses={
        **READ_ERRORS,
        200: {"description": "A plot of the front", "content": {"image/png": {}}},
    },
)
def pareto_png(
    search_id: Id,
    db: StoreDep,
    fronts: FrontsDep,
    target: str | None = None,
    where: list[str] = Query(default=[]),
    measured: bool = False,
    x: str | None = None,
) -> Response:
    front = core.query_front(search_id, target, where, measured, db, fronts)
    with tempfile.TemporaryDirectory(prefix="nas-plot-") as tmp:
        data = core.plot_front(front, Path(tmp) / "front.png", x, db).read_bytes()
    return Response(data, media_type="image/png")


@router.get(
    "/{search_id}/events",
    dependencies=READ,
    response_class=StreamingResponse,
    responses={
        **READ_ERRORS,
        200: {
            "description": "`event: progress` with the search (as GET /searches/{id}) "
            "when its stored generations or status changed since the last poll, then "
            "`event: end` with its status and `generations`",
            # one event, as an SSE parser gives its fields: before OpenAPI 3.2 (which
            # names it `itemSchema`), tools read a stream's `schema` as that of an event
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
        },
    },
)
async def events(search_id: Id, db: StoreDep, poll: float = Query(0.5, ge=0.05, le=10)) -> Response:
    """Server-sent events: a `progress` event at once, then one each `poll` seconds in
    which the search changed, then an `end` event when it stops. Generations stored within
    one poll coalesce into one event (a page redraws once per poll, not once per
    generation); each event carries `generations` ("done/total"), so a client sees how
    many it skipped."""
    await asyncio.to_thread(core.get_search, search_id, db)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        seen = None
        while True:
            info = await asyncio.to_thread(core.get_search, search_id, db)
            state = (info["generations"], info["status"])
            if state != seen:
                seen = state
                yield f"event: progress\ndata: {json.dumps(info)}\n\n"
            if info["finished"]:
                end = {"status": info["status"], "generations": info["generations"]}
                yield f"event: end\ndata: {json.dumps(end)}\n\n"
                return
            await asyncio.sleep(poll)

    return StreamingResponse(stream(), media_type="text/event-stream")


# A candidate row has a key per metric, then its arch: the candidate routes send rows as the
# core builds them (a model would reorder the keys, declared fields first), serialised as the
# other routes are; their models document them.


@router.get(
    "/{search_id}/candidates",
    dependencies=READ,
    response_class=JSONResponse,
    responses={**READ_ERRORS, 200: {"model": schemas.Page[schemas.CandidateRow]}},
)
def candidates(
    search_id: Id,
    db: StoreDep,
    feasible: bool = False,
    where: list[str] = Query(default=[]),
    target: str | None = None,
    offset: Offset = 0,
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    """A page of candidates by trial; `where` filters as the front's `where` does."""
    page = core.list_candidates(search_id, feasible, offset, limit, where, target, db)
    return json_response(page)


@router.get(
    "/{search_id}/points",
    dependencies=READ,
    response_model=schemas.Points,
    responses=READ_ERRORS,
)
def points(
    search_id: Id,
    db: StoreDep,
    metric: list[str] = Query(default=[]),
    target: str | None = None,
) -> dict[str, Any]:
    """Every candidate's values of the named metrics (default: the objectives), column
    by column, with `feasible`: what a scatter of the whole search draws."""
    return core.search_points(search_id, metric, target, db)


@router.get(
    "/{search_id}/candidates/{number}",
    dependencies=READ,
    response_class=JSONResponse,
    responses={**READ_ERRORS, 200: {"model": schemas.CandidateDetail}},
)
def candidate(search_id: Id, number: Id, db: StoreDep) -> Response:
    """One candidate: what the search stored, and its cost on every registered device."""
    return json_response(core.get_candidate(search_id, number, db))
