"""The HTTP door: a FastAPI app over the same core as the CLI (nas.core, nas.pareto).

Every handler parses, calls one core function and serialises; no search runs in a handler
(nas.service.jobs runs them in worker processes). Errors are JSON: a `UserError` becomes 422
(400 for a malformed body, 404 for `NotFoundError`) with the message that names the field or
id. Mutating routes need `Authorization: Bearer <token>` when the server has a token; reads
are open unless `private_reads`. The interactive docs are at `/docs` and `/redoc`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from nas import __version__
from nas.pareto import FrontCache
from nas.service.http import BEARER, MAX_BODY_BYTES, RequestError, install_error_handling
from nas.service.jobs import JobRunner
from nas.service.routes import ROUTERS
from nas.store import Store

__all__ = ["MAX_BODY_BYTES", "RequestError", "create_app"]


def create_app(
    store: Store,
    data_dir: Path,
    token: str | None = None,
    private_reads: bool = False,
    ray_address: str | None = None,
    supervise: bool = True,
) -> FastAPI:
    """The app for one database. `supervise` starts the job runner with the app.

    The database must take writes and the data folder must be writable: a StoreError or a
    ServeError says which is not, before anything is served (a server that started anyway
    would answer every launch and export with a 500)."""
    jobs = JobRunner(store, data_dir)
    store.check_writable()
    jobs.check_data_dir()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if supervise:  # searches that were running when the server stopped go on
            jobs.start()
        yield
        jobs.stop()

    app = FastAPI(
        title="nas",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
        docs_url=None,  # served from local files by nas.service.routes.page
        redoc_url=None,
    )
    # what the routes reach through the dependencies of nas.service.http
    app.state.store = store  # every core call reuses the server's connections
    app.state.data_dir = data_dir
    app.state.jobs = jobs
    app.state.ray_address = ray_address  # searches that name no Ray cluster run on this one
    app.state.fronts = FrontCache()  # recent fronts, while their search's rows are unchanged
    app.state.token = token
    app.state.private_reads = private_reads
    install_error_handling(app)
    for router in ROUTERS:
        app.include_router(router)
    if private_reads:
        _declare_token_on_reads(app)
    return app


def _declare_token_on_reads(app: FastAPI) -> None:
    """With private reads every operation needs the token: the OpenAPI document says so (the
    mutations declare it through their dependency, nas.service.http.BEARER)."""
    openapi = app.openapi

    def with_token_on_reads() -> dict[str, Any]:
        schema = openapi()  # built once, then cached by FastAPI: setdefault keeps it as is
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.setdefault("security", [{BEARER.scheme_name: []}])
        return schema

    app.openapi = with_token_on_reads  # type: ignore[method-assign]
