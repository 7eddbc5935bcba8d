"""The shape docs/design.md describes, held to the code: Hydra only in the command line, no import cycles."""
from __future__ import annotations

import ast
import os
from typing import Dict, Set

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dreamvid")
HYDRA = ("hydra", "omegaconf")


def modules() -> Dict[str, str]:
    """dotted module name -> file, for every module of the package."""
    found = {}
    for folder, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def imports(module: str, path: str) -> Set[str]:
    """Every module `module` imports, at the top or inside a function (absolute names)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from . import x` imports the module x
    return names


def test_hydra_and_omegaconf_are_imported_only_by_the_command_line():
    for module, path in modules().items():
        if module == "dreamvid.cli" or module.startswith("dreamvid.cli."):
            continue
        used = sorted(n for n in imports(module, path) if n.split(".")[0] in HYDRA)
        assert not used, f"{module} imports {used}: only dreamvid.cli may (see docs/design.md)"


def test_no_module_imports_one_that_imports_it_back():
    mods = modules()
    graph = {m: {n for n in imports(m, p) if n in mods and n != m} for m, p in mods.items()}
    # a package's __init__ is not an edge back to itself from its own modules' relative imports of siblings
    seen, stack, cycles = set(), [], []

    def visit(m: str) -> None:
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_design_document_names_every_module():
    doc = open(os.path.join(os.path.dirname(ROOT), "docs", "design.md"), encoding="utf-8").read()
    missing = [m for m in modules() if m != "dreamvid" and f"`{m.split('.', 1)[1]}`" not in doc
               and not m.startswith("dreamvid.conf")]
    assert not missing, f"docs/design.md does not say what these own: {missing}"
