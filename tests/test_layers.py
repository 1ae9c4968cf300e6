"""The layers: import-linter's contracts hold, bite on a wrong import, and the import graph has no cycle.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); ``scripts/import_facts.py``
prints the cycles and upward imports these tests keep at zero.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("portrait3d", "nerf")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root`` with ``root/pyproject.toml`` (no cache written)."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def import_facts():
    """``scripts/import_facts.py`` as a module."""
    spec = importlib.util.spec_from_file_location("import_facts", REPO / "scripts" / "import_facts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contracts_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout)
    assert kept and int(kept.group(1)) >= 2, result.stdout


@pytest.fixture(scope="module")
def copy_of_packages(tmp_path_factory) -> Path:
    """A copy of the packages and pyproject.toml, for adding wrong imports to."""
    root = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@contextlib.contextmanager
def added(root: Path, lines: dict[str, str]):
    """Append ``lines[file]`` to each file under ``root`` (created, with its folders, if missing); undone after."""
    saved, created = {}, []
    try:
        for file, line in lines.items():
            path = root / file
            for folder in reversed(path.parents):
                if not folder.exists():
                    folder.mkdir()
                    created.append(folder)
            if path.exists():
                saved[path] = path.read_text()
            else:
                created.append(path)
            path.write_text(saved.get(path, "") + f"\n{line}\n")
        yield
    finally:
        for path, text in saved.items():
            path.write_text(text)
        for path in reversed(created):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize(
    ("file", "line", "broken"),
    [
        # Up the layers: the run folder must not know the front end.
        (
            "portrait3d/run.py",
            "import portrait3d.make_asset",
            "portrait3d.run is not allowed to import portrait3d.make_asset",
        ),
        # A stage package back up to the pipeline (the knot this layering removed).
        (
            "nerf/export.py",
            "from portrait3d.pipeline import asset_stages",
            "nerf is not allowed to import portrait3d.pipeline",
        ),
        # Between independent stage packages.
        (
            "nerf/fit.py",
            "from portrait3d.proxy.stage import ProxyOptions",
            "nerf is not allowed to import portrait3d.proxy",
        ),
        (
            "portrait3d/diffusion/stages.py",
            "import portrait3d.preprocess",
            "portrait3d.diffusion is not allowed to import portrait3d.preprocess",
        ),
        # A stage package that does not exist yet: above nerf, so nerf may not use it.
        ("nerf/dataset.py", "import portrait3d.rig", "nerf is not allowed to import portrait3d.rig"),
    ],
)
def test_contract_bites(copy_of_packages, file, line, broken):
    # The layer of portrait3d.rig is optional: the package is made here when this branch does not have it.
    rig = {"portrait3d/rig/__init__.py": ""} if "portrait3d.rig" in line else {}
    original = (copy_of_packages / file).read_text()
    with added(copy_of_packages, {**rig, file: line}):
        result = lint_imports(copy_of_packages)
    assert result.returncode != 0, result.stdout
    assert broken in result.stdout, result.stdout
    # The offending import is named: its module and the line it was added at.
    importer = file.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> " in result.stdout
    assert f"(l.{len(original.splitlines()) + 2})" in result.stdout, result.stdout


def test_new_stage_package_may_use_nerf(copy_of_packages):
    """``portrait3d.rig`` (optional in the contract) may read the fitted field through nerf's public functions."""
    probe = {
        "portrait3d/rig/__init__.py": "",
        "portrait3d/rig/layers_probe.py": "from nerf.fit import load_field\nfrom portrait3d.runner import Stage",
    }
    with added(copy_of_packages, probe):
        result = lint_imports(copy_of_packages)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers_probe" not in result.stdout


def test_every_module_is_in_a_layer():
    """A new module or package (outside the contract, it would be unchecked) needs a row in the layers contract."""
    facts = import_facts()
    layers = facts.read_layers(REPO / "pyproject.toml")
    children = [f"portrait3d.{p.stem}" for p in (REPO / "portrait3d").iterdir() if p.suffix == ".py" or p.is_dir()]
    children = [c for c in children if c != "portrait3d.__init__" and is_module(c)]
    assert len(children) > 15
    assert [c for c in [*children, "nerf"] if facts.layer_of(c, layers) is None] == []
    assert facts.layer_of("portrait3d.no_such_module", layers) is None


def test_import_graph_has_no_cycle():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    assert import_facts().cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.d", "p.e")]:
        graph.add_import(importer=importer, imported=imported)
    assert import_facts().cycles(graph) == [["p.a", "p.b", "p.c"]]


def unit(module: str) -> str:
    """The package a module belongs to for the private-name rule: ``nerf`` or ``portrait3d.<child>``."""
    parts = module.split(".")
    return parts[0] if parts[0] != "portrait3d" or len(parts) == 1 else ".".join(parts[:2])


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def private_uses(path: Path) -> list[str]:
    """``file:line name`` for every private name of another package that ``path`` imports or reads."""
    own = unit(module_name(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    modules = {}  # local name -> project module it is bound to
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] not in PACKAGES or unit(base) == own:
                continue
            for alias in node.names:
                if is_private(alias.name) or any(is_private(p) for p in base.split(".")):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {base}.{alias.name}")
                if is_module(f"{base}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES and unit(alias.name) != own:
                    if any(is_private(p) for p in alias.name.split(".")):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} {alias.name}")
                    if alias.asname:
                        modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and is_private(node.attr)
        ):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {modules[node.value.id]}.{node.attr}")
    return found


def test_private_use_is_found(tmp_path, monkeypatch):
    """The check below can fail: the old stages.py read diffusion's private stage functions."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "portrait3d" / "diffusion").mkdir(parents=True)
    (tmp_path / "portrait3d" / "diffusion" / "stages.py").write_text("def _run_back_view(): ...\n")
    (tmp_path / "portrait3d" / "diffusion" / "__init__.py").write_text("")
    old = tmp_path / "portrait3d" / "stages.py"
    old.write_text(
        "from portrait3d.diffusion import stages as diffusion\n"
        "from portrait3d.diffusion.stages import _check_options\n"
        "fn = diffusion._run_back_view\n"
    )
    assert private_uses(old) == [
        "portrait3d/stages.py:2 portrait3d.diffusion.stages._check_options",
        "portrait3d/stages.py:3 portrait3d.diffusion.stages._run_back_view",
    ]


def test_no_package_uses_another_packages_private_names():
    files = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))
    assert len(files) > 50
    assert [use for path in files for use in private_uses(path)] == []
