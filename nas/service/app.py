"""The HTTP door: a FastAPI app over the same core as the CLI (nas.core, nas.pareto).

Every handler parses, calls one core function and serialises; no search runs in a handler
(nas.service.jobs runs them in worker processes). Errors are JSON: a `UserError` becomes 422
(400 for a malformed body, 404 for `NotFoundError`) with the message that names the field or
id. Mutating routes need `Authorization: Bearer <token>` when the server has a token; reads
are open unless `private_reads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import latency_models as lm
from nas import __version__, core
from nas.errors import NotFoundError, SearchError, UserError
from nas.pareto import FrontCache, to_csv, to_json
from nas.service.jobs import JobRunner
from nas.store import Store

STATIC_DIR = Path(__file__).with_name("static")  # the web page at /
MAX_BODY_BYTES = 1 << 20  # a search config is a few kB; refuse anything near this


class RequestError(UserError):
    """A request the API cannot take (a malformed body, too large, no token)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def _read_body(request: Request) -> bytes:
    """The body, read chunk by chunk up to MAX_BODY_BYTES: a client that sends more (with a
    Content-Length that lies, or none) is refused without the server buffering it all."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(f"body over {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    store: Store,
    data_dir: Path,
    token: str | None = None,
    private_reads: bool = False,
    ray_address: str | None = None,
    supervise: bool = True,
) -> FastAPI:
    """The app for one database. `supervise` starts the job runner with the app."""
    jobs = JobRunner(store, data_dir)
    db = store  # every core call reuses the server's connections
    fronts = FrontCache()  # recent fronts, while their search's rows are unchanged

    def require_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        # bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 401)
        given_token = value.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_token, token.encode()):
            raise RequestError("a bearer token is required (Authorization: Bearer ...)", 401)

    def read_access(request: Request) -> None:
        if private_reads:
            require_token(request)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if supervise:  # searches that were running when the server stopped go on
            jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="nas", version=__version__, description=__doc__, lifespan=lifespan)
    app.state.jobs = jobs

    @app.exception_handler(UserError)
    def _user_error(request: Request, err: UserError) -> JSONResponse:
        status = getattr(err, "status", None) or (404 if isinstance(err, NotFoundError) else 422)
        return JSONResponse({"error": type(err).__name__, "detail": str(err)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        # the router's own errors (no such route, method not allowed) in the same JSON shape
        name = {404: "NotFoundError", 405: "MethodNotAllowed"}.get(err.status_code, "HTTPError")
        detail = (
            f"no route {request.method} {request.url.path}"
            if err.status_code == 404
            else err.detail
        )
        return JSONResponse({"error": name, "detail": detail}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        # a bad query or path parameter: name it, as a bad config field is named
        problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in err.errors()]
        fields = [".".join(str(part) for part in e["loc"][1:]) for e in err.errors()]
        return JSONResponse(
            {"error": "RequestValidationError", "detail": "; ".join(problems), "fields": fields},
            status_code=422,
        )

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Callable) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(
                {"error": "RequestError", "detail": f"body over {MAX_BODY_BYTES} bytes"},
                status_code=413,
            )
        return await call_next(request)

    async def _json_body(request: Request) -> dict[str, Any]:
        """A small JSON object body (empty: {})."""
        body = await _read_body(request)
        if not body.strip():
            return {}
        try:
            raw = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(f"the body is not valid JSON: {err}") from None
        if not isinstance(raw, dict):
            raise RequestError("the body must be a JSON object")
        return raw

    async def _config_body(request: Request) -> dict[str, Any]:
        body = await _read_body(request)
        try:  # JSON is YAML too; safe_load builds no objects
            raw = yaml.safe_load(body.decode("utf-8")) if body.strip() else None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RequestError(f"the body is not valid JSON or YAML: {err}") from None
        if not isinstance(raw, dict):
            raise RequestError("the body must be a search config (a JSON or YAML mapping)")
        return raw

    # ----- searches ---------------------------------------------------------------------------

    @app.post("/searches", status_code=201, dependencies=[Depends(require_token)])
    async def create_search(request: Request) -> dict[str, Any]:
        raw = await _config_body(request)
        # the server's Ray cluster, unless the config names its own
        ray = None if raw.get("ray_address") else ray_address
        # checking reads the trained file: off the event loop, so other requests go on
        search_id = await asyncio.to_thread(core.record, raw, db, None, ray)
        jobs.start_worker(search_id)  # the worker takes the lease and builds the evaluators
        return {"id": search_id, **core.get_search(search_id, db)}

    @app.get("/searches", dependencies=[Depends(read_access)])
    def list_searches(
        offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)
    ) -> dict[str, Any]:
        return core.list_searches(db, offset, limit)

    @app.get("/searches/{search_id}", dependencies=[Depends(read_access)])
    def get_search(search_id: int) -> dict[str, Any]:
        return core.get_search(search_id, db)

    @app.post("/searches/{search_id}/cancel", dependencies=[Depends(require_token)])
    def cancel(search_id: int) -> dict[str, Any]:
        return {"id": search_id, "status": core.cancel(search_id, db)}

    @app.post("/searches/{search_id}/resume", dependencies=[Depends(require_token)])
    def resume(search_id: int) -> dict[str, Any]:
        try:  # the rule `nas search resume` applies: unfinished, and no live driver on it
            core.can_resume(search_id, db)
        except SearchError as err:
            raise RequestError(str(err), 409) from None
        jobs.start_worker(search_id)
        return {"id": search_id, "status": "running"}

    @app.get("/searches/{search_id}/pareto", dependencies=[Depends(read_access)])
    def pareto(
        search_id: int,
        target: str | None = None,
        where: list[str] = Query(default=[]),
        measured: bool = False,
        format: str = Query("json", pattern="^(json|csv)$"),
    ) -> Response:
        front = core.query_front(search_id, target, where, measured, db, fronts)
        if format == "csv":
            return PlainTextResponse(to_csv(front), media_type="text/csv")
        return Response(to_json(front), media_type="application/json")  # as `nas pareto --json`

    @app.get("/searches/{search_id}/pareto.png", dependencies=[Depends(read_access)])
    def pareto_png(
        search_id: int,
        target: str | None = None,
        where: list[str] = Query(default=[]),
        measured: bool = False,
        x: str | None = None,
    ) -> Response:
        front = core.query_front(search_id, target, where, measured, db, fronts)
        with tempfile.TemporaryDirectory(prefix="nas-plot-") as tmp:
            data = core.plot_front(front, Path(tmp) / "front.png", x, db).read_bytes()
        return Response(data, media_type="image/png")

    @app.get("/searches/{search_id}/events", dependencies=[Depends(read_access)])
    async def events(search_id: int, poll: float = Query(0.5, ge=0.05, le=10)) -> Response:
        """Server-sent events: one `progress` event per stored generation (and one at once),
        then an `end` event when the search stops."""
        core.get_search(search_id, db)  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            seen = None
            while True:
                info = await asyncio.to_thread(core.get_search, search_id, db)
                state = (info["generations"], info["status"])
                if state != seen:
                    seen = state
                    yield f"event: progress\ndata: {json.dumps(info)}\n\n"
                if info["finished"]:
                    yield f"event: end\ndata: {json.dumps({'status': info['status']})}\n\n"
                    return
                await asyncio.sleep(poll)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/searches/{search_id}/candidates", dependencies=[Depends(read_access)])
    def candidates(
        search_id: int,
        feasible: bool = False,
        where: list[str] = Query(default=[]),
        target: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """A page of candidates by trial; `where` filters as the front's `where` does."""
        return core.list_candidates(search_id, feasible, offset, limit, where, target, db)

    @app.get("/searches/{search_id}/points", dependencies=[Depends(read_access)])
    def points(
        search_id: int, metric: list[str] = Query(default=[]), target: str | None = None
    ) -> dict[str, Any]:
        """Every candidate's values of the named metrics (default: the objectives), column
        by column, with `feasible`: what a scatter of the whole search draws."""
        return core.search_points(search_id, metric, target, db)

    @app.get("/searches/{search_id}/candidates/{number}", dependencies=[Depends(read_access)])
    def candidate(search_id: int, number: int) -> dict[str, Any]:
        """One candidate: what the search stored, and its cost on every registered device."""
        return core.get_candidate(search_id, number, db)

    # ----- exports: jobs, whose files are kept under the server's data folder -----------------

    @app.post(
        "/searches/{search_id}/candidates/{number}/export",
        status_code=202,
        dependencies=[Depends(require_token)],
    )
    async def export(search_id: int, number: int, request: Request) -> dict[str, Any]:
        """Queue an export of a candidate; body (optional): {"formats": ["onnx", ...],
        "quantize": "int8"}, the search's default formats without one (as `nas export`).
        Poll GET /exports/{id} until it is completed or failed."""
        body = await _json_body(request)
        formats, quantize = body.get("formats"), body.get("quantize")
        if formats is not None and not isinstance(formats, (list, str)):
            raise RequestError('formats must be a list of format names, e.g. ["onnx"]', 422)
        if quantize is not None and not isinstance(quantize, str):
            raise RequestError('quantize must be a quantization name, e.g. "int8"', 422)
        export_id = await asyncio.to_thread(
            core.queue_export, search_id, number, data_dir, formats, quantize, db
        )
        jobs.start_export_worker(export_id)
        return {**_export_json(export_id), "url": f"/exports/{export_id}"}

    @app.get("/exports", dependencies=[Depends(read_access)])
    def exports(
        search: int | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        return core.list_exports(db, search, offset, limit)

    def _export_json(export_id: int) -> dict[str, Any]:
        info = core.get_export(export_id, db)
        info.pop("out_dir")  # a server path: files are downloaded by name
        for entry in info["files"]:
            entry["url"] = f"/exports/{export_id}/files/{entry['name']}"
        return info

    @app.get("/exports/{export_id}", dependencies=[Depends(read_access)])
    def export_one(export_id: int) -> dict[str, Any]:
        return _export_json(export_id)

    @app.get("/exports/{export_id}/files/{name}", dependencies=[Depends(read_access)])
    def export_download(export_id: int, name: str) -> FileResponse:
        path = core.export_file(export_id, name, db)  # only a name of the export's file list
        return FileResponse(path, filename=path.name, media_type="application/octet-stream")

    # ----- the web page (static files shipped in the package; nothing from a CDN) ------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ----- devices, spaces, trained files -----------------------------------------------------

    @app.get("/hardware", dependencies=[Depends(read_access)])
    def hardware() -> dict[str, Any]:
        return {"items": core.list_hardware()}

    @app.get("/hardware/{name}", dependencies=[Depends(read_access)])
    def hardware_one(name: str) -> dict[str, Any]:
        if name not in lm.list_hardware():  # names only: a path is not a device here
            raise NotFoundError(f"unknown hardware {name!r}; see GET /hardware")
        return lm.load_hardware(name).summary()

    @app.get("/spaces", dependencies=[Depends(read_access)])
    def spaces() -> dict[str, Any]:
        return {"items": core.list_spaces()}

    @app.get("/families", dependencies=[Depends(read_access)])
    def families() -> dict[str, Any]:
        """The model families: each one's file name and quality metrics with their goals."""
        return {"items": core.list_families()}

    @app.get("/supernets", dependencies=[Depends(read_access)])
    def supernets() -> dict[str, Any]:
        return core.list_supernets(db)

    return app
