"""What a search can name: devices, search spaces, model families, and the trained files
searches have used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

import latency_models as lm
from nas import core
from nas.service import schemas
from nas.service.http import READ, READ_ERRORS, StoreDep

router = APIRouter(dependencies=READ, responses=READ_ERRORS, tags=["catalog"])


def _without_server_path(device: dict[str, Any]) -> dict[str, Any]:
    """A device as a client sees it: `source` names a shipped profile by its place in the
    project (the same on every install), and a profile of the server's own folder by its
    file name only: where files lie on the server is not a client's business."""
    source = Path(device["source"])
    shipped = source.parent == lm.PROFILE_DIR
    shown = f"latency_models/profiles/{source.name}" if shipped else source.name
    return {**device, "source": shown}


@router.get("/hardware", response_model=schemas.Items[schemas.HardwareSummary])
def hardware(space: str | None = None) -> dict[str, Any]:
    """Every registered device profile, as `nas hardware list --json` prints them (but
    `source`: see HardwareSummary). With `space` (a preset's name), each says `cost_error`:
    why its model cannot cost that space, or null where it can (what a launch form offers)."""
    return {"items": [_without_server_path(device) for device in core.list_hardware(space)]}


@router.get("/hardware/{name}", response_model=schemas.HardwareSummary)
def hardware_one(name: str) -> dict[str, Any]:
    """One registered device profile (by name only: a path is not a device here)."""
    return _without_server_path(core.get_hardware(name))


@router.get(
    "/spaces",
    response_model=schemas.Items[schemas.SpaceSummary],
    response_model_exclude_unset=True,  # each kind of space describes itself with its own keys
)
def spaces() -> dict[str, Any]:
    """The preset search spaces: genes and their choices, size, model family."""
    return {"items": core.list_spaces()}


@router.get("/families", response_model=schemas.Items[schemas.FamilySummary])
def families() -> dict[str, Any]:
    """The model families: each one's file name and quality metrics with their goals."""
    return {"items": core.list_families()}


@router.get("/supernets", response_model=schemas.TrainedFiles)
def supernets(db: StoreDep) -> dict[str, Any]:
    """The supernets and predictors searches have used, by SHA-256."""
    return core.list_supernets(db)
