"""The web page at `/` and the API docs at `/docs` and `/redoc`: every file is served by the
app itself (nothing from a CDN), so both work on a machine without network access.

The docs pages load Swagger UI 5 and ReDoc from the files the `fastapi-offline` package
ships (only its files are used, not its code); Swagger UI 5 reads the OpenAPI 3.1 that
FastAPI writes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parents[1] / "static"  # the web page at /
DOCS_ASSETS = "/docs-assets"  # Swagger UI and ReDoc files


def _docs_dir() -> Path:
    """The folder of Swagger UI and ReDoc files in the fastapi-offline distribution, found
    without importing the package."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the API docs need the fastapi-offline package (pip install it)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
router.mount(DOCS_ASSETS, StaticFiles(directory=_docs_dir()), name="docs-assets")


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")  # behind a proxy's prefix


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        # no badge from validator.swagger.io: the page asks nothing of another server
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        with_google_fonts=False,
    )
