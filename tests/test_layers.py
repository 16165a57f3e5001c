"""The package layering of DESIGN.md, read from the source: no module imports a layer above
its own, `nas/` reaches model families only through `supernet.family`, and `latency_models`
imports torch only in the modules that measure or trace."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what each package may import of the project's packages (the layers of DESIGN.md)
ALLOWED = {
    "latency_models": {"latency_models"},
    "supernet": {"supernet", "latency_models"},
    "nas": {"nas", "supernet", "latency_models"},
}
FAMILY_PACKAGES = ("supernet.mbconv", "supernet.anycost")  # a family's own modules


def imports_of(path: Path, top_level: bool = False, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every import in a file under `root`, relative ones resolved: in
    functions too, unless `top_level` (what importing the module itself imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            # `from supernet import mbconv` names a family's package as well
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_a_layer_above_it(package):
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources(package)
        for line, module in imports_of(path)
        if module.split(".")[0] in ALLOWED and module.split(".")[0] not in ALLOWED[package]
    ]
    assert not bad, "\n".join(bad)


def test_nas_reaches_model_families_only_through_the_family_protocol():
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources("nas")
        for line, module in imports_of(path)
        if any(module == p or module.startswith(p + ".") for p in FAMILY_PACKAGES)
    ]
    assert not bad, "nas/ must use supernet.family.ModelFamily:\n" + "\n".join(bad)


def test_latency_models_imports_torch_only_where_it_measures_or_traces():
    """Importing latency_models, and costing with it, needs no torch: torch is imported at
    module level only in latency_models/torch/ (a reader of TorchScript files imports it
    in the function that needs it)."""
    bad = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sources("latency_models")
        if "torch" not in path.relative_to(ROOT / "latency_models").parts
        for line, module in imports_of(path, top_level=True)
        if module.split(".")[0] == "torch"
    ]
    assert not bad, "\n".join(bad)


def test_the_checks_see_what_they_forbid(tmp_path):
    """The reader finds imports in functions, relative ones and `from pkg import module`."""
    probe = tmp_path / "nas" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("def f():\n    from supernet import mbconv\n    from .search import runner\n")
    found = {module for _, module in imports_of(probe, root=tmp_path)}
    assert {"supernet.mbconv", "nas.search", "nas.search.runner"} <= found
