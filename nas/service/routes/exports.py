"""Exports: jobs run by workers, whose files are kept under the server's data folder and
downloaded by a name from the export's own file list."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from nas import core
from nas.service import schemas
from nas.service.http import (
    MAX_ID,
    READ,
    READ_ERRORS,
    WRITE,
    WRITE_ERRORS,
    DataDirDep,
    Id,
    JobsDep,
    Offset,
    RequestError,
    StoreDep,
    json_body,
)
from nas.store import Store

router = APIRouter(tags=["exports"])

_EXPORT_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "formats": {"type": "array", "items": {"type": "string"}},
                        "quantize": {"type": "string", "examples": ["int8"]},
                    },
                }
            }
        },
    }
}


def _with_urls(info: dict[str, Any]) -> dict[str, Any]:
    info.pop("out_dir", None)  # a server path: files are downloaded by name
    for entry in info["files"]:
        entry["url"] = f"/exports/{info['id']}/files/{quote(entry['name'])}"
    return info


def _export_json(export_id: int, db: Store) -> dict[str, Any]:
    return _with_urls(core.get_export(export_id, db))


@router.post(
    "/searches/{search_id}/candidates/{number}/export",
    status_code=202,
    dependencies=WRITE,
    response_model=schemas.ExportQueued,
    responses=WRITE_ERRORS,
    openapi_extra=_EXPORT_BODY,
)
async def export(
    search_id: Id,
    number: Id,
    request: Request,
    db: StoreDep,
    jobs: JobsDep,
    data_dir: DataDirDep,
) -> dict[str, Any]:
    """Queue an export of a candidate; body (optional): {"formats": ["onnx", ...],
    "quantize": "int8"}, the search's default formats without one (as `nas export`).
    Poll GET /exports/{id} until it is completed or failed."""
    body = await json_body(request)
    formats, quantize = body.get("formats"), body.get("quantize")
    if formats is not None and not isinstance(formats, (list, str)):
        raise RequestError('formats must be a list of format names, e.g. ["onnx"]', 422)
    if quantize is not None and not isinstance(quantize, str):
        raise RequestError('quantize must be a quantization name, e.g. "int8"', 422)

    def queue() -> dict[str, Any]:
        export_id = core.queue_export(search_id, number, data_dir, formats, quantize, db)
        jobs.start_export_worker(export_id)
        return {**_export_json(export_id, db), "url": f"/exports/{export_id}"}

    # SQL, and a worker process started: off the event loop (only the body is read on it)
    return await asyncio.to_thread(queue)


@router.get(
    "/searches/{search_id}/export-formats",
    dependencies=READ,
    response_model=schemas.ExportFormats,
    responses=READ_ERRORS,
)
def export_formats(search_id: Id, db: StoreDep) -> dict[str, Any]:
    """The formats an export of this search can be asked for (its model family's), which
    of them it writes by default, and the quantizations that apply."""
    return core.export_formats(search_id, db)


@router.get(
    "/exports",
    dependencies=READ,
    response_model=schemas.Page[schemas.ExportSummary],
    responses=READ_ERRORS,
)
def exports(
    db: StoreDep,
    search: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    offset: Offset = 0,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """A page of exports (of one search, with `search`), newest first, whichever door made
    them (this API's jobs and `nas export`), with their files."""
    page = core.list_exports(db, search, offset, limit)
    page["items"] = [_with_urls(item) for item in page["items"]]
    return page


@router.get(
    "/exports/{export_id}",
    dependencies=READ,
    response_model=schemas.ExportInfo,
    responses=READ_ERRORS,
)
def export_one(export_id: Id, db: StoreDep) -> dict[str, Any]:
    return _export_json(export_id, db)


@router.get(
    "/exports/{export_id}/files/{name}",
    dependencies=READ,
    response_class=FileResponse,
    responses={
        **READ_ERRORS,
        200: {"description": "The file", "content": {"application/octet-stream": {}}},
        410: {
            "model": schemas.ErrorModel,
            "description": "The file was deleted, moved or replaced since the export wrote it",
        },
    },
)
def export_download(export_id: Id, name: str, db: StoreDep) -> FileResponse:
    path = core.export_file(export_id, name, db)  # only a name of the export's file list
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")
