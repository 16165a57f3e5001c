"""The catalog the doors list: device profiles (with whether each can cost a space), model
families, the preset search spaces and a user's own (YAML files in $NAS_SPACE_DIR). Part of
the core's API: nas.core re-exports these, and the doors call them there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import latency_models as lm
from nas.domain import cost_problem
from nas.errors import NotFoundError, UserError
from supernet.family import families, family_of_space
from supernet.space import SearchSpace, get_space
from supernet.space import list_spaces as space_names


def list_hardware(space: str | None = None) -> list[dict[str, Any]]:
    """Every registered device profile as `nas hardware show --json` prints one: name, kind,
    description, metrics, options, source and the model's key parameters. The one shape of
    the device list, for `nas hardware list --json` and GET /hardware alike. With `space`,
    each says `cost_error`: why it cannot cost that space (None: it can)."""
    searched = get_space(space) if space is not None else None
    models = {name: lm.load_hardware(name) for name in lm.list_hardware()}
    return [
        {**hw.summary(), **({"cost_error": cost_problem(searched, name, hw)} if searched else {})}
        for name, hw in models.items()
    ]


def get_hardware(name: str) -> dict[str, Any]:
    """One registered device profile, as `list_hardware` gives each; NotFoundError for a
    name that is not registered (a path to a profile file is not looked up here)."""
    if name not in lm.list_hardware():
        raise NotFoundError(f"unknown hardware {name!r}; see GET /hardware")
    return lm.load_hardware(name).summary()


def family_kind(space: str | SearchSpace) -> str | None:
    """The model family of a space, or of a space by its name (None: a space this version
    does not know)."""
    try:
        return family_of_space(get_space(space)).kind
    except (UserError, TypeError):
        return None


def search_space(space_name: str, config: Mapping[str, Any]) -> SearchSpace:
    """The space of a stored search: rebuilt from the definition its checked config holds
    (a space that is not a preset: no YAML file needed), else found by its name."""
    stored = config.get("space")
    return get_space(stored if isinstance(stored, dict) else space_name)


def list_families() -> list[dict[str, Any]]:
    """The model families: kind, file name, quality metrics with their goals (the first is
    the primary one), whether a predictor stands in for measuring, whether int8 ships."""
    return [family.summary() for family in families()]


def describe_space(space: SearchSpace) -> dict[str, Any]:
    """A space as the doors show it: name, model family, genes and their choices, size."""
    return {**space.describe(), "family": family_kind(space)}


SPACE_DIR_ENV = "NAS_SPACE_DIR"  # a folder of a user's space files (*.yaml, *.yml)


def user_space_files() -> list[Path]:
    """The space files in $NAS_SPACE_DIR, by name (none when it is unset)."""
    folder = os.environ.get(SPACE_DIR_ENV)
    if not folder:
        return []
    if not Path(folder).is_dir():
        raise UserError(f"${SPACE_DIR_ENV} names {folder!r}, which is not a folder")
    return sorted(p for p in Path(folder).iterdir() if p.suffix in (".yaml", ".yml"))


def list_spaces(user: bool = False) -> list[dict[str, Any]]:
    """The preset search spaces, each as `describe_space` gives it (`source`: "preset"); with
    `user`, then each file in $NAS_SPACE_DIR (`source`: its path), or, for a file that does
    not define a space, its path and `error` (one bad file hides none of the others)."""
    spaces = [{**describe_space(get_space(name)), "source": "preset"} for name in space_names()]
    for path in user_space_files() if user else []:
        try:
            spaces.append({**describe_space(get_space(path)), "source": str(path)})
        except UserError as err:
            spaces.append({"name": path.stem, "source": str(path), "error": str(err)})
    return spaces


def space_extremes(space: SearchSpace, mcu: str) -> dict[str, Any]:
    """The smallest and largest subnets of a space: arch id, resolution (`r`: the input's
    of a classifier, the output's of a generator), MACs and params, and what the MCU
    profile `mcu` predicts for each (peak SRAM, flash, latency; its `error` where its model
    cannot cost the space)."""
    hw = lm.load_hardware(mcu)
    problem = cost_problem(space, mcu, hw)
    out: dict[str, Any] = {}
    for which in ("smallest", "largest"):
        arch = getattr(space, which)()
        spec = space.to_spec(arch, batch=1)
        entry: dict[str, Any] = {
            "arch_id": space.arch_id(arch),
            "r": arch[space.resolution_gene],
            "macs": spec.macs,
            "params": spec.params,
        }
        if problem:
            entry[mcu] = {"error": problem}
        else:
            costs = hw.predict(spec)
            entry[mcu] = {m: costs[m] for m in ("peak_sram_kb", "flash_kb", "latency_ms")}
        out[which] = entry
    return out
