"""No import circle anywhere in slimkit: every module's imports (function-level ones included) form a DAG.

Importing `slimkit.a.b` runs `slimkit/a/__init__.py` first, so a module depends on the packages
above what it imports too, except its own enclosing packages (they are being imported already) and
`slimkit` itself, the public face.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(folder):
    """{dotted name: path} of every module under `folder` (a package's __init__ named as the package)."""
    out = {}
    for path in sorted(Path(folder).rglob("*.py")):
        parts = path.with_suffix("").relative_to(Path(folder).parent).parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(name, path, node, known):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]


def import_graph(folder):
    """{module: set of modules it imports}, within the package tree at `folder`."""
    known = modules(folder)
    top = Path(folder).name
    graph = {}
    for name, path in known.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(name, path, node, known):
                    while target and target != top:  # the target and every package above it
                        if target in known and target != name and not name.startswith(target + "."):
                            edges.add(target)
                        target = target.rpartition(".")[0]
        graph[name] = edges
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (or a module importing itself), sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_slimkit_has_no_import_cycle():
    found = cycles(import_graph(ROOT / "slimkit"))
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def package_graph(graph, top="slimkit"):
    """{package: packages it imports} one level below `top` (slimkit.run, slimkit.core, ...), the face left out."""
    def package(module):
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else None

    out = {}
    for module, targets in graph.items():
        if package(module) is None:
            continue
        out.setdefault(package(module), set()).update(
            package(t) for t in targets if package(t) not in (None, package(module)))
    return out


def test_packages_import_downwards_only():
    # run -> strategies -> algorithms -> deploy -> report -> core: no package reaches back up.
    found = cycles(package_graph(import_graph(ROOT / "slimkit")))
    assert found == [], "package cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_check_names_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("x = 1\ndef f():\n    from .sub.b import y\n")  # a function-level import counts
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import x\ny = x\n")
    (pkg / "c.py").write_text("from .sub import b\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]
    (pkg / "sub" / "__init__.py").write_text("from ..c import *\n")  # through a package's __init__
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.c", "pkg.sub", "pkg.sub.b"]]
    assert cycles(package_graph(import_graph(pkg), top="pkg")) == [["pkg.a", "pkg.c", "pkg.sub"]]
