"""The package's structure: the pipeline-stage import contract (import-linter, configured in
pyproject.toml) holds, and no module reaches into another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hierbayes"


def test_import_layers_contract_is_kept():
    """`lint-imports` fails when a lower stage imports a higher one (pyproject.toml)."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reach_ins(path: Path, package_only: bool = True) -> list[str]:
    """``file:line`` of every import of a private name from another hierbayes module
    (``from hierbayes.x import _y``) and every ``m._y`` on a hierbayes module ``m`` imported
    under that name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path) if package_only else ""
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hierbayes"):
            for alias in node.names:
                if _is_private(alias.name) and node.module != here:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}")
                elif not _is_private(alias.name):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hierbayes"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _is_private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_reaches_into_private_names():
    found = [v for p in sorted(PACKAGE.rglob("*.py")) for v in private_reach_ins(p)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_no_test_reaches_into_private_names():
    """Tests use public or documented internal APIs (a test that needs a private name shows
    that the public API lacks something)."""
    found = [v for p in sorted((ROOT / "tests").rglob("*.py")) for v in private_reach_ins(p, False)]
    assert not found, "tests using private names of hierbayes:\n" + "\n".join(found)


def test_the_private_name_check_finds_reach_ins(tmp_path):
    """The check is not vacuous: a module importing and using private names is caught."""
    bad = PACKAGE / "report" / "_layers_probe.py"
    bad.write_text("from hierbayes.sampling import nuts\n"
                   "from hierbayes.kde import _x\n\n"
                   "def f():\n    return nuts._seed(1)\n")
    try:
        found = private_reach_ins(bad)
    finally:
        bad.unlink()
    assert len(found) == 2 and "nuts._seed" in found[1] and "hierbayes.kde._x" in found[0]
