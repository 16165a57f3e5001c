"""Hardware profiles: YAML files in latency_models/profiles/, loaded into device models.

    hw = load_hardware("h100-sxm")          # a profile name, or the path of a YAML file
    hw.predict(spec)                        # {"latency_ms": ..., "macs": ..., "params": ...}

A profile names its `kind`, which picks the model class; the other fields are that kind's
parameters (see profiles/README.md). A bare name is looked up first in the user's profile
folder (`$NAS_PROFILE_DIR`, default `runs/profiles`, where `nas latency build-lut` writes),
then among the shipped profiles: a profile built on this machine stands in for the shipped one
of the same name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from latency_models.base import CostModel, Reader
from latency_models.errors import ProfileError, UnknownHardwareError
from latency_models.models.gpu import GPUModel
from latency_models.models.learned import LearnedModel
from latency_models.models.lut import LUTModel
from latency_models.models.mcu import MCUModel
from latency_models.models.measured import MeasuredModel

log = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
USER_PROFILE_DIR_ENV = "NAS_PROFILE_DIR"
DEFAULT_USER_PROFILE_DIR = Path("runs/profiles")


def user_profile_dir() -> Path:
    """Where profiles built on this machine go: `$NAS_PROFILE_DIR`, else runs/profiles."""
    return Path(os.environ.get(USER_PROFILE_DIR_ENV) or DEFAULT_USER_PROFILE_DIR).expanduser()


KINDS: dict[str, type[CostModel]] = {
    cls.kind: cls for cls in (MCUModel, LUTModel, GPUModel, MeasuredModel, LearnedModel)
}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, except lists of plain numbers and strings on one line (tree arrays)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(isinstance(v, int | float | str) and not isinstance(v, bool) for v in data)
    flow = flat and all(not isinstance(v, str) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _directories(directory: Path | None) -> list[Path]:
    return [user_profile_dir(), PROFILE_DIR] if directory is None else [directory]


def list_hardware(directory: Path | None = None) -> list[str]:
    """Names of the profiles in `directory` (the file names without .yaml); by default the
    user's profile folder and the shipped one."""
    return sorted({p.stem for d in _directories(directory) for p in d.glob("*.yaml")})


def hardware_path(name_or_path: str | Path, directory: Path | None = None) -> Path:
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        for folder in _directories(directory):
            candidate = folder / f"{text}.yaml"
            if candidate.is_file():
                return candidate
        raise UnknownHardwareError(text, list_hardware(directory))
    path = Path(text).expanduser()
    if not path.is_file():
        raise UnknownHardwareError(text, list_hardware(directory))
    return path


def read_yaml(path: Path) -> Any:
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ProfileError(str(path), None, f"not valid YAML{where}: {problem}") from None
    except OSError as err:
        raise ProfileError(str(path), None, f"cannot read: {err.strerror or err}") from None


def load_hardware(name_or_path: str | Path) -> CostModel:
    """A device model from a profile name (see `list_hardware()`) or a YAML path.

    A model is kept while the files it was read from are unchanged (same size and
    modification time), and the same object is handed out again: parsing the Note10
    tables takes 0.2 s, and a server costs a candidate on every device per request.
    Models are not modified after they are built (their lookup memos only fill)."""
    if isinstance(name_or_path, CostModel):
        return name_or_path
    path = hardware_path(name_or_path)
    key = path.resolve()
    kept = _LOADED.get(key)
    if kept is not None and kept[0] == _stamp(kept[1].files):
        return kept[1]
    before = _stamp([path])  # a profile rewritten while it is read is read again next time
    model = from_profile(read_yaml(path), str(path), default_name=path.stem)
    _LOADED[key] = (before + _stamp(model.files[1:]), model)
    return model


# profile path -> (the stamps of the files it was read from, the model): a memo of parsed
# files, bounded by the number of profiles on disk
_LOADED: dict[Path, tuple[tuple, CostModel]] = {}


def _stamp(files: list[Path]) -> tuple:
    """Size and modification time of each file (None for a file gone)."""
    stamps = []
    for file in files:
        try:
            stat = file.stat()
            stamps.append((str(file), stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append((str(file), None, None))
    return tuple(stamps)


def from_profile(data: Any, source: str, default_name: str = "custom") -> CostModel:
    """A device model from a profile mapping (already parsed)."""
    reader = Reader(data, source)
    kind = reader.string("kind", choices=sorted(KINDS))
    name = reader.string("name", default_name)
    model = KINDS[kind](name, data, source)
    log.debug("loaded %s profile %r from %s", kind, name, source)
    return model


def dump_profile(profile: dict[str, Any], path: Path) -> None:
    """Write a profile as YAML (block style, keys in the given order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        yaml.dump(profile, f, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
