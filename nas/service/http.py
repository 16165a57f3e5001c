"""What every router of the HTTP door shares: the app's state as dependencies, the token
checks, the body readers, and the error handlers that give every error one JSON shape.

An app's state (its store, data folder, job runner, front cache and token settings) lives on
`app.state` and reaches a route through the dependencies below, never through a module
global: one process may serve several apps (the tests do).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from nas.errors import NotFoundError, UserError
from nas.pareto import FrontCache
from nas.service.jobs import JobRunner
from nas.service.schemas import ErrorModel
from nas.store import Store, safe_url

MAX_BODY_BYTES = 1 << 20  # a search config is a few kB; refuse anything near this
MAX_ID = 2**63 - 1  # the largest integer SQL stores: a larger one is a 422, not a driver error

log = logging.getLogger(__name__)


class RequestError(UserError):
    """A request the API cannot take (a malformed body, too large, no token)."""

    def __init__(
        self, message: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


# ----- the app's state, as dependencies -------------------------------------------------------
# The dependencies here do no I/O, so they are `async def`: they run on the event loop. A sync
# dependency runs in the thread pool, a hop to another thread and back for each one of each
# request, and each hop waits for the interpreter lock while a launch checks its files in
# another thread (measured: experiments/bench_event_loop.py).


async def _store(request: Request) -> Store:
    return request.app.state.store  # every core call reuses the server's connections


async def _data_dir(request: Request) -> Path:
    return request.app.state.data_dir


async def _jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


async def _fronts(request: Request) -> FrontCache:
    return request.app.state.fronts


StoreDep = Annotated[Store, Depends(_store)]
DataDirDep = Annotated[Path, Depends(_data_dir)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
FrontsDep = Annotated[FrontCache, Depends(_fronts)]

# every integer path and query parameter is bounded: an id or offset SQL cannot store is
# answered by FastAPI as a 422 naming the parameter
Id = Annotated[int, PathParam(ge=0, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]


NO_TOKEN = "a bearer token is required (Authorization: Bearer ...)"
WRONG_TOKEN = "the bearer token does not match the server's token"


def require_token(request: Request) -> None:
    """Mutating routes: `Authorization: Bearer <token>` when the server has a token. A 401
    says whether no bearer token came or a wrong one did (never echoing what came)."""
    token: str | None = request.app.state.token
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise RequestError(NO_TOKEN, 401, {"WWW-Authenticate": "Bearer"})
    # bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 401).
    # Starlette decodes a header's bytes as Latin-1: encoding it back gives the bytes sent,
    # which a client such as curl sends as UTF-8, the encoding of the token compared
    try:
        given_token = value.strip().encode("latin-1")
    except UnicodeEncodeError:  # not decoded from bytes: no token could have been sent
        given_token = b""
    if not hmac.compare_digest(given_token, token.encode()):
        raise RequestError(WRONG_TOKEN, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


# declares the bearer scheme in the OpenAPI document (so /docs offers "Authorize"); it
# checks nothing itself (auto_error=False): require_token does, with its own messages
BEARER = HTTPBearer(
    auto_error=False,
    description="`nas serve`'s token (`--token-file` or $NAS_API_TOKEN): needed by every "
    "mutation, and by reads too on a server started with `--private-reads`",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


async def read_access(request: Request) -> None:
    """Reads: open, unless the server was started with private reads (whose OpenAPI
    document then declares the bearer scheme on reads too: nas.service.app)."""
    if request.app.state.private_reads:
        require_token(request)


async def write_access(request: Request, _: BearerDep) -> None:
    """Mutations: the token, when the server has one (require_token, on the event loop)."""
    require_token(request)


READ = [Depends(read_access)]
WRITE = [Depends(write_access)]

# ----- the error shape, documented on every route ---------------------------------------------


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorModel, "description": description}


READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("No bearer token, or a wrong one (a server with private reads)"),
    404: _error("No such search, candidate, export or device"),
    422: _error("A bad parameter or query, named in `detail` (and `fields`)"),
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    400: _error("A malformed body"),
    401: _error("No bearer token, or a wrong one"),
    413: _error(f"A body over {MAX_BODY_BYTES} bytes"),
}

# ----- bodies ---------------------------------------------------------------------------------


async def read_body(request: Request) -> bytes:
    """The body, read chunk by chunk up to MAX_BODY_BYTES: a client that sends more (with a
    Content-Length that lies, or none) is refused without the server buffering it all."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(f"body over {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


_TOO_DEEP = "the body is nested too deeply (lists or mappings within each other)"


def _parsed(body: bytes, parse: Callable[[bytes], Any], errors: tuple, what: str) -> Any:
    """The body parsed by `parse`; a RequestError naming `what` it should have been, or
    saying it is nested too deeply, for the parser's own `errors` and a RecursionError."""
    try:
        return parse(body)
    except errors as err:
        raise RequestError(f"the body is not valid {what}: {err}") from None
    except RecursionError:
        raise RequestError(_TOO_DEEP) from None


async def json_body(request: Request) -> dict[str, Any]:
    """A small JSON object body (empty: {})."""
    body = await read_body(request)
    if not body.strip():
        return {}
    raw = await asyncio.to_thread(  # up to 1 MB: parsed off the event loop
        _parsed, body, json.loads, (json.JSONDecodeError, UnicodeDecodeError), "JSON"
    )
    if not isinstance(raw, dict):
        raise RequestError("the body must be a JSON object")
    return raw


async def config_body(request: Request) -> dict[str, Any]:
    """A search config body, JSON or YAML (a mapping)."""
    body = await read_body(request)
    raw = (  # JSON is YAML too; safe_load builds no objects. Off the event loop: PyYAML
        # parses in Python: 1.4 s here for a mapping of 1 MB
        await asyncio.to_thread(
            _parsed,
            body,
            lambda b: yaml.safe_load(b.decode("utf-8")),
            (yaml.YAMLError, UnicodeDecodeError),
            "JSON or YAML",
        )
        if body.strip()
        else None
    )
    if not isinstance(raw, dict):
        raise RequestError("the body must be a search config (a JSON or YAML mapping)")
    return raw


_ANY = TypeAdapter(Any)


def json_response(data: Any, status_code: int = 200) -> Response:
    """`data` as JSON, serialised as FastAPI serialises a route's return value (pydantic's
    serialiser, keys in their order), without validating it against a model first."""
    return Response(_ANY.dump_json(data), status_code, media_type="application/json")


# ----- errors as JSON -------------------------------------------------------------------------


def _for_clients(app: FastAPI, message: str) -> str:
    """A core message as a client may read it: without the server's database URL (which the
    CLI's messages name, as the user chose it) or its data folder's path."""
    store: Store = app.state.store
    database = safe_url(store.url)
    replacements = [
        (f"database {database}", "the server's database"),  # "cannot write database URL"
        (f" in {database}", ""),  # "no search with id 4 in URL"
        (database, "the server's database"),
    ]
    paths = {"database file": store.sqlite_path, "data folder": app.state.data_dir}
    path_texts = [  # absolute paths only: a relative one ("data") is also a common word
        (text, f"the server's {name}")
        for name, path in paths.items()
        if path is not None
        for text in {str(Path(path).resolve()), str(path)}  # as resolved, and as given
        if Path(text).is_absolute()
    ]
    # a longer path first: the database file may lie in the data folder
    replacements += sorted(path_texts, key=lambda pair: -len(pair[0]))
    for server_text, shown in replacements:
        message = message.replace(server_text, shown)
    return message


def _user_error(request: Request, err: UserError) -> JSONResponse:
    status = getattr(err, "status", None) or (404 if isinstance(err, NotFoundError) else 422)
    body = {"error": type(err).__name__, "detail": _for_clients(request.app, str(err))}
    if getattr(err, "problems", None):  # a search config's: every problem beside its field
        body["problems"] = [
            {**problem, "message": _for_clients(request.app, problem["message"])}
            for problem in err.problems
        ]
    return JSONResponse(body, status_code=status, headers=getattr(err, "headers", None))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette's 405 names only those of the
    first route that matched the path, and a path may have a route per method): each
    method asked of the app's routes, as the router itself would match it."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    )


def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    # the router's own errors (no such route, method not allowed) in the same JSON shape
    name = {404: "NotFoundError", 405: "MethodNotAllowed"}.get(err.status_code, "HTTPError")
    detail = (
        f"no route {request.method} {request.url.path}" if err.status_code == 404 else err.detail
    )
    headers = dict(err.headers or {})
    if err.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return JSONResponse(
        {"error": name, "detail": detail}, status_code=err.status_code, headers=headers or None
    )


def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    # a bad query or path parameter: name it, as a bad config field is named
    problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in err.errors()]
    fields = [".".join(str(part) for part in e["loc"][1:]) for e in err.errors()]
    return JSONResponse(
        {"error": "RequestValidationError", "detail": "; ".join(problems), "fields": fields},
        status_code=422,
    )


def _internal_error(request: Request, err: Exception) -> JSONResponse:
    # any other error: a JSON 500 with a short id that the server's log names beside the
    # traceback; the body shows neither the traceback nor the exception's message
    error_id = secrets.token_hex(4)
    # with the error's own traceback: a sync handler runs in a thread, outside the `except`
    log.exception("error id %s in %s %s", error_id, request.method, request.url.path, exc_info=err)
    detail = f"an internal error (error id {error_id}: the server's log has its details)"
    return JSONResponse(
        {"error": "InternalError", "detail": detail, "id": error_id}, status_code=500
    )


async def _limit_body(request: Request, call_next: Callable) -> Response:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return JSONResponse(
            {"error": "RequestError", "detail": f"body over {MAX_BODY_BYTES} bytes"},
            status_code=413,
        )
    return await call_next(request)


def install_error_handling(app: FastAPI) -> None:
    """Every error as `{"error", "detail"}` JSON (any other exception as a 500 with the id
    of its logged traceback), and bodies over the limit refused early."""
    app.exception_handler(UserError)(_user_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(Exception)(_internal_error)  # Starlette's ServerErrorMiddleware
    app.middleware("http")(_limit_body)
