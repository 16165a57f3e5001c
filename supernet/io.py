"""Reading and writing the project's files: trained artifacts and YAML configs.

- Writes are atomic (a temporary file, then a rename), so a kill never leaves half a file.
- A trained file is read once into an `Artifact` that carries its SHA-256; whoever needs the
  file again (a Ray actor, an export) checks that hash instead of trusting the path.
- A run folder stands for the trained file in it; `resolve_artifact_path` is the one place
  that says so.
"""

from __future__ import annotations

import hashlib
import io
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError

from supernet.errors import CheckpointError


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The trained file each artifact kind keeps in its run folder, in the order they are tried.
ARTIFACT_FILE_NAMES = ("supernet.pt", "gan.pt")


def resolve_artifact_path(
    path: str | os.PathLike, file_names: tuple[str, ...] = ARTIFACT_FILE_NAMES
) -> Path:
    """A run folder stands for the trained file in it (the first of `file_names` it holds);
    a file path is taken as it is. The one place that says so."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except OSError as err:  # a name too long for the file system, say
        raise CheckpointError(f"cannot use path {str(path)[:80]}...: {err.strerror}") from None
    if is_dir:
        for name in file_names:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} is a folder that holds none of {', '.join(file_names)}")
    return path


@dataclass(frozen=True)
class Artifact:
    """A trained file read once: its absolute path, the SHA-256 of the bytes that were read,
    and the dict they held. Code that needs the file again checks `sha256`, never the path."""

    path: Path
    sha256: str
    data: dict[str, Any] = field(repr=False)

    @property
    def format(self) -> str:
        return self.data["format"]

    def check_sha256(self, expected: str | None, what: str = "file") -> None:
        """CheckpointError unless this file is the one recorded with hash `expected`."""
        if expected is not None and expected != self.sha256:
            raise CheckpointError(
                f"{self.path} is not the {what} recorded (SHA-256 {self.sha256[:12]}... != "
                f"{expected[:12]}...); it was replaced or another file was given"
            )


def read_artifact(path: str | os.PathLike, expected_format: str | tuple[str, ...]) -> Artifact:
    """Read a saved dict whose "format" is `expected_format` (or one of them), hashing the
    same bytes that are loaded: one read and one hash, and the hash is of what was used."""
    path = resolve_artifact_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    raw = path.read_bytes()
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    found = data.get("format") if isinstance(data, dict) else None
    allowed = (expected_format,) if isinstance(expected_format, str) else expected_format
    if found not in allowed:
        wanted = " or ".join(repr(f) for f in allowed)
        raise CheckpointError(f"{path} is not a {wanted} file (found format {found!r})")
    return Artifact(path.resolve(), hashlib.sha256(raw).hexdigest(), data)


def read_checkpoint(
    path: str | os.PathLike, expected_format: str | tuple[str, ...]
) -> dict[str, Any]:
    """The dict saved at `path` (see `read_artifact`), when its hash is not needed."""
    return read_artifact(path, expected_format).data


MAX_PROBLEMS_SHOWN = 10  # a list of a million bad items is one error, not a million lines


def short_repr(value: Any, limit: int = 200) -> str:
    """A repr of a value given by a user, at most `limit` characters: a YAML alias can make a
    500-byte document a value of millions of items, and an error must not repeat it whole."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 3, 8, 8
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def field_path(loc: tuple[Any, ...]) -> str:
    """`phases.0.epochs` from a pydantic error location; a key a user made long is cut."""
    path = ".".join(str(part) for part in loc) or "<root>"
    return path if len(path) <= 200 else path[:197] + "..."


def format_validation_error(err: ValidationError, what: str) -> str:
    """One line per problem, each naming the field: `  phases.0.epochs: Field required`."""
    problems = err.errors(include_input=False, include_url=False)
    lines = [f"invalid {what}:"]
    for item in problems[:MAX_PROBLEMS_SHOWN]:
        lines.append(f"  {field_path(item['loc'])}: {item['msg']}")
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
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
