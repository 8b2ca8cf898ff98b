"""Layers that point one way, checked on the source (every import, also inside functions):

- ``config`` imports neither ``kdeconv.model`` nor torch (a YAML validates without torch);
- ``model`` does not import ``kdeconv.io``;
- ``evaluate`` does not import ``kdeconv.separate.driver``;
- ``workflows/`` use the package's public names only (no ``_private`` module, name or attribute);
- kikuchipy's private API is used in ``kdeconv/_kikuchipy.py`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdeconv"


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def targets(module: str, names: list[str]) -> list[str]:
    """The modules an import may load: ``from a import b`` may load ``a.b``."""
    return [module] + [f"{module}.{name}" for name in names]


def violations(folder: Path, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        for line, module, names in imported_modules(path, root):
            for target in targets(module, names):
                if any(target == f or target.startswith(f + ".") for f in forbidden):
                    out.append(f"{path.relative_to(root)}:{line} imports {target}")
    return out


@pytest.mark.parametrize("layer, forbidden", [
    ("config", ("kdeconv.model", "torch")),
    ("model", ("kdeconv.io",)),
    ("evaluate", ("kdeconv.separate.driver",)),
])
def test_layers_point_one_way(layer, forbidden):
    assert violations(PACKAGE / layer, forbidden) == []


def private_uses(path: Path) -> list[str]:
    """kdeconv names starting with one underscore that ``path`` imports or reaches as attributes."""
    tree = ast.parse(path.read_text(), str(path))
    out, bound = [], set()

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kdeconv":
                    bound.add(alias.asname or "kdeconv")
                    if any(private(part) for part in alias.name.split(".")):
                        out.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kdeconv":
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if any(private(part) for part in node.module.split(".")) or private(alias.name):
                    out.append(f"{node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                out.append(f"{node.lineno}: {root.id}...{node.attr}")
    return out


def test_workflows_use_public_names_only():
    found = {path.name: private_uses(path) for path in sorted((ROOT / "workflows").glob("*.py"))}
    assert {name: uses for name, uses in found.items() if uses} == {}


def test_kikuchipy_private_api_only_behind_the_compat_module():
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_kikuchipy.py":
            continue
        for line, module, names in imported_modules(path):
            if module.split(".")[0] == "kikuchipy" and (
                    any(part.startswith("_") for part in module.split("."))
                    or any(name.startswith("_") for name in names)):
                uses.append(f"{path.relative_to(ROOT)}:{line} {module}")
        if "._get_master_pattern_arrays_from_energy" in path.read_text():
            uses.append(f"{path.relative_to(ROOT)}: _get_master_pattern_arrays_from_energy")
    assert uses == []


def test_the_checks_see_a_violation(tmp_path):
    config = tmp_path / "kdeconv" / "config"
    config.mkdir(parents=True)
    (config / "probe.py").write_text("def f():\n    import torch.nn\n"
                                     "    from ..model import load_separator\n")
    assert violations(config, ("kdeconv.model", "torch"), tmp_path) == [
        "kdeconv/config/probe.py:2 imports torch.nn", "kdeconv/config/probe.py:3 imports kdeconv.model",
        "kdeconv/config/probe.py:3 imports kdeconv.model.load_separator"]
    workflow = tmp_path / "flow.py"
    workflow.write_text("import kdeconv.evaluate.driver as d\nfrom kdeconv.x import _y\nd._pairs(1)\n")
    assert private_uses(workflow) == ["2: from kdeconv.x import _y", "3: d..._pairs"]
