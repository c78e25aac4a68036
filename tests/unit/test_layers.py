"""The layers hold: a package imports only packages below it, the command layer is the
command line's alone, and only the command line and ``ui/`` print.

The map itself is ``python -m tools.modmap`` (docs/architecture.md shows it).  Every
import statement counts, one inside a function too: a deferred import is a dependency
all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tools.modmap import module_map, package_of, package_map

PACKAGE = Path(__file__).resolve().parents[2] / "poppoarc"

# Bottom to top; a package imports only packages of lower layers (and itself).
LAYERS = [
    {"errors", "fs", "streamed", "parallel", "options", "i18n", "text"},
    {"lock", "crypto"},
    {"format"},
    {"config_schema", "store", "snapshot"},
    {"config_legacy"},
    {"config", "policy"},
    {"restore"},
    {"archives"},
    {"pack"},
    {"operations"},
    {"service", "doctor"},
    {"commands"},
    {"ui"},
    {"cli"},
    {"console"},        # the console entry point: Ctrl-C while cli is being imported
    {"__main__"},
]
# A program of its own (``make demo``, the tests' and the benchmark's trees): it imports
# nothing of poppoarc and nothing imports it.
APART = {"demo"}
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}

MODULES = module_map(PACKAGE)
PACKAGES = package_map(MODULES)


def test_every_package_has_a_layer():
    assert set(PACKAGES) - {"(root)"} == set(RANK) | APART


@pytest.mark.parametrize("package", sorted(set(PACKAGES) - {"(root)"}))
def test_a_package_imports_only_what_lies_below_it(package):
    if package in APART:
        assert PACKAGES[package] == [] and not [p for p, used in PACKAGES.items()
                                                if package in used]
        return
    above = [used for used in PACKAGES[package] if RANK[used] >= RANK[package]]
    assert not above, f"{package} imports {above}, which are not below it"


def test_format_and_crypto_import_nothing_above_them():
    for package in ("format", "crypto"):
        # (i18n: only N_, which marks an English reason for the catalog)
        assert set(PACKAGES[package]) <= {"crypto", "errors", "fs", "i18n", "parallel"}, package


def test_noun_packages_never_import_the_command_line():
    for package in ("store", "snapshot", "restore", "policy", "format", "crypto", "archives",
                    "pack", "service", "doctor"):
        assert not {"commands", "cli", "ui"} & set(PACKAGES[package]), package


def test_only_the_command_line_imports_the_commands():
    importers = {package_of(module) for module, used in MODULES.items()
                 if any(package_of(u) == "commands" for u in used)}
    assert importers == {"cli"}
    # and no command is built on another: what two share lives below them
    for module, used in MODULES.items():
        if module.startswith("poppoarc.commands."):
            assert not [u for u in used if u.startswith("poppoarc.commands.")], module


def _prints(tree: ast.AST) -> list[int]:
    """Lines that print or write to stdout/stderr, outside ``if __name__ == "__main__"``."""
    found = []

    def visit(node, in_main=False):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__":
            in_main = True
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print" and not in_main:
                found.append(node.lineno)
        if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") \
                and isinstance(node.value, ast.Name) and node.value.id == "sys" and not in_main:
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_main)

    visit(tree)
    return found


def test_only_the_command_line_and_ui_print():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in ("cli.py", "console.py") or relative.startswith(("ui/", "demo/")):
            continue
        lines = _prints(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            offenders[relative] = lines
    assert not offenders, f"print or sys.stdout/stderr outside cli.py and ui/: {offenders}"


def test_the_print_check_sees_prints():
    assert _prints(ast.parse("print('x')\nimport sys\nsys.stderr.write('y')\n")) == [1, 3]
    assert _prints(ast.parse("if __name__ == '__main__':\n    print('x')\n")) == []
    assert _prints(ast.parse("BOOT = 'sys.stdout.write(1)'\n")) == []
