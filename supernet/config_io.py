"""Reading YAML config files: one way for every config in the project (training, search)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def format_validation_error(err: ValidationError, what: str) -> str:
    """One line per problem, each naming the field: `  phases.0.epochs: Field required`."""
    lines = [f"invalid {what}:"]
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def read_yaml_mapping(path: str | Path, error: type[Exception], what: str = "config") -> dict:
    """The mapping in a YAML file; `error` (naming the file) if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise error(f"{what} {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must be a YAML mapping")
    return raw


def merge_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Command-line overrides (None means: not given) on top of a file's values."""
    return {**raw, **{k: v for k, v in overrides.items() if v is not None}}
