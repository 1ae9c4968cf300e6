"""Print the import facts of ``portrait3d`` and ``nerf``: cycles and imports that go up the layers.

The layers are those of the first ``layers`` contract in ``pyproject.toml`` (``[tool.importlinter]``),
top to bottom; a module belongs to the layer whose name is its longest prefix. An upward import is a
direct import from a module to a module of a higher layer, or between two independent siblings of one
layer (``a | b``). A cycle is a strongly connected group of two or more modules of the import graph
(lazy imports inside functions included, as ``grimp`` sees them).

Usage::

    python scripts/import_facts.py                 # the code of this checkout
    python scripts/import_facts.py --src OTHER     # another checkout (e.g. the commit before the layers)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("portrait3d", "nerf")


def read_layers(pyproject: Path) -> list[tuple[list[str], bool]]:
    """The first layers contract: ``[(modules of the layer, independent?)]``, top to bottom."""
    config = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    layers = []
    for row in contract["layers"]:
        independent = ":" not in row
        names = [name.strip().strip("()") for name in row.replace(":", "|").split("|")]
        layers.append((names, independent))
    return layers


def layer_of(module: str, layers: list[tuple[list[str], bool]]) -> tuple[int, str] | None:
    """(index from the top, layer module) of ``module``, or None when no layer holds it."""
    best = None
    for index, (names, _) in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (index, name)
    return best


def build_graph(src: Path):
    """The grimp import graph of the packages under ``src`` (no cache written)."""
    import grimp

    sys.path.insert(0, str(src))
    return grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)


def cycles(graph) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        # Iterative Tarjan: the graph is small, but recursion depth is not worth the risk.
        work = [(module, iter(sorted(graph.find_modules_directly_imported_by(module))))]
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(groups, key=lambda g: (-len(g), g))


def upward_imports(graph, layers) -> list[str]:
    """``importer -> imported (line N)`` for every direct import up the layers or across independent siblings."""
    found = []
    for importer in sorted(graph.modules):
        low = layer_of(importer, layers)
        if low is None:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            high = layer_of(imported, layers)
            if high is None or high[1] == low[1]:
                continue
            sideways = high[0] == low[0] and layers[low[0]][1]
            if high[0] < low[0] or sideways:
                lines = sorted(d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported))
                where = ", ".join(str(n) for n in lines)
                found.append(f"{importer} -> {imported} (line {where}){'  [sibling]' if sideways else ''}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout whose packages are read (default: this one)")
    parser.add_argument(
        "--pyproject", type=Path, default=ROOT / "pyproject.toml", help="where the layers contract is read"
    )
    args = parser.parse_args(argv)
    layers = read_layers(args.pyproject)
    graph = build_graph(args.src.resolve())
    groups = cycles(graph)
    upward = upward_imports(graph, layers)
    count = sum(len(graph.find_modules_directly_imported_by(m)) for m in graph.modules)
    print(f"source: {args.src.resolve()}")
    print(f"modules: {len(graph.modules)}, direct imports between them: {count}")
    print(f"cycles (strongly connected groups of modules): {len(groups)}")
    for group in groups:
        print(f"  {len(group)} modules: {', '.join(group)}")
    print(f"upward imports (against the layers of {args.pyproject.name}): {len(upward)}")
    for line in upward:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
