"""Print who imports whom inside poppoarc, at package and at module level.

    python -m tools.modmap            # both maps, as text
    python -m tools.modmap --json     # {"packages": {...}, "modules": {...}}
    python -m tools.modmap --cycles   # the import cycles between packages

Every import statement counts, also one inside a function (a deferred import is a
dependency all the same).  A package is a directory of poppoarc (``format``,
``restore``, ...); a top-level module (``cli``, ``config``) is a package of its own.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "poppoarc"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def imports_of(path: Path, name: str) -> set[str]:
    """The poppoarc modules ``path`` (module ``name``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith(PACKAGE):
                continue
            found.add(module)
            for alias in node.names:    # ``from . import x``: x may be a module
                found.add(f"{module}.{alias.name}")
    return found


def module_map(root: Path) -> dict[str, list[str]]:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        targets = {t for t in imports_of(path, name) if t in paths} - {name}
        graph[name] = sorted(targets)
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def package_map(modules: dict[str, list[str]]) -> dict[str, list[str]]:
    graph = defaultdict(set)
    for name, targets in modules.items():
        source = package_of(name)
        graph[source]
        for target in targets:
            if package_of(target) != source and package_of(target) != "(root)":
                graph[source].add(package_of(target))
    return {k: sorted(v) for k, v in sorted(graph.items())}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent / PACKAGE
    modules = module_map(root)
    packages = package_map(modules)
    if "--json" in argv:
        print(json.dumps({"packages": packages, "modules": modules}, indent=1))
        return 0
    if "--cycles" in argv:
        for component in cycles(packages):
            print("package cycle:", " ".join(component))
        for component in cycles(modules):
            print("module cycle:", " ".join(m.removeprefix(PACKAGE + ".") for m in component))
        return 0
    print("# packages (a top-level module counts as a package)")
    for name, targets in packages.items():
        print(f"{name:<16} -> {', '.join(targets) or '-'}")
    print("\n# modules")
    for name, targets in modules.items():
        short = [t.removeprefix(PACKAGE + ".") for t in targets]
        print(f"{name.removeprefix(PACKAGE + '.'):<28} -> {', '.join(short) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
