"""The engine's layering: it never imports the widgets or their UI libraries (data flows one way),
and its import graph has no loops, counting imports inside functions.

The graph is read from the source (``ast``), not from ``sys.modules``, so an import hidden in a
function counts like one at the top of a module. Importing ``a.b.c`` also runs ``a.b``'s
``__init__``: that edge counts too.
"""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import nuskybgd_engine

ROOT = "nuskybgd_engine"
ENGINE = Path(nuskybgd_engine.__file__).parent

#: Imports of engine modules allowed inside functions outside the CLI, with the reason (the same
#: reason is on the line, as ``# lazy: ...``). Anything else is imported at the top of its module.
LAZY_IMPORTS = {
    ("nuskybgd_engine.fit.registry", "nuskybgd_engine.fit.pyxspec"):
        "the PyXspec backend (and its .xcm export) is loaded only when asked for",
    ("nuskybgd_engine.batch.observation", "nuskybgd_engine.suggest"):
        "an install without suggest still runs regions='given' (tested by hiding the module)",
}

#: The CLI imports every step's module to build its parser; each step imports the engine inside
#: its ``run`` so that ``nuskybgd --help`` and argument errors load no science.
CLI_MODULES = ("nuskybgd_engine.cli", "nuskybgd_engine.commands")


def _modules():
    """``{module name: (path, is_package)}`` of every engine module."""
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = list(path.relative_to(ENGINE).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join([ROOT] + parts)] = (path, is_pkg)
    return out


def _imports(modules):
    """Every import of an engine module: (importer, target, line number, inside a function, line)."""
    found = []
    for name, (path, is_pkg) in modules.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source, filename=str(path))
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    targets.append(sub if sub in modules else mod)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.split(".")[0] != ROOT:
                    continue
                while target not in modules:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    found.append((name, target, node.lineno, id(node) in in_function, lines[node.lineno - 1]))
    return found


def _graph(modules, imports):
    """Module graph: importer -> target, plus importer -> every package ``__init__`` the import runs."""
    graph = defaultdict(set)
    for importer, target, *_ in imports:
        graph[importer].add(target)
        parts = target.split(".")
        for k in range(2, len(parts)):
            ancestor = ".".join(parts[:k])
            if not importer.startswith(ancestor + ".") and ancestor != importer:
                graph[importer].add(ancestor)
    return graph


def _cycles(nodes, graph):
    """Strongly connected components with more than one node (Tarjan), sorted."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(comps)


def _explain(comp, imports):
    members = set(comp)
    return "; ".join(sorted({f"{a} -> {b} (line {n}{', in a function' if f else ''})"
                             for a, b, n, f, _ in imports if a in members and b in members}))


@pytest.mark.slow
def test_engine_imports_no_ui():
    code = (
        "import importlib, pkgutil, sys\n"
        "import nuskybgd_engine\n"
        "for m in pkgutil.walk_packages(nuskybgd_engine.__path__, 'nuskybgd_engine.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('nuskybgd_widgets', 'ipywidgets', 'bqplot', 'bqplot_image_gl', 'voila', 'xspectrampoline'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the engine imported {out.stdout.strip()}"


def test_module_import_graph_is_acyclic():
    modules = _modules()
    imports = _imports(modules)
    assert len(imports) > 100  # the parser sees the engine's imports (relative ones included)
    cycles = _cycles(modules, _graph(modules, imports))
    assert not cycles, "import loops: " + " | ".join(_explain(c, imports) for c in cycles)


def test_package_import_graph_is_acyclic():
    """Between the engine's top-level packages and modules (io, calibration, maps, model, fit, ...)."""
    modules = _modules()
    imports = _imports(modules)

    def top(m):
        return ".".join(m.split(".")[:2])

    graph = defaultdict(set)
    for importer, target, *_ in imports:
        if top(importer) != top(target) and top(target) != ROOT:
            graph[top(importer)].add(top(target))
    cycles = _cycles({top(m) for m in modules}, graph)
    assert not cycles, f"package loops: {cycles}"


@pytest.mark.slow
def test_function_level_imports_are_the_documented_lazy_ones():
    modules = _modules()
    inside = [(a, b, n, line) for a, b, n, f, line in _imports(modules) if f]
    cli = [x for x in inside if x[0] == CLI_MODULES[0] or x[0].startswith(CLI_MODULES[1] + ".")]
    assert cli, "the CLI steps import the engine when they run"
    rest = [x for x in inside if x not in cli]
    assert {(a, b) for a, b, _n, _l in rest} == set(LAZY_IMPORTS), (
        "imports inside functions outside the CLI must be the documented lazy ones: "
        + ", ".join(f"{a}:{n} -> {b}" for a, b, n, _l in rest if (a, b) not in LAZY_IMPORTS))
    for a, b, n, line in rest:
        assert "# lazy:" in line, f"{a}:{n} imports {b} inside a function without a '# lazy: reason' comment"


def _function_level_imports(package_dir):
    """``path:line`` of every import inside a function under ``package_dir`` whose line (or
    the comment line just above it) gives no ``# lazy: reason``."""
    missing = []
    for path in sorted(Path(package_dir).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for fn in ast.walk(ast.parse(source, filename=str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    said = any("# lazy" in ln for ln in lines[node.lineno - 1:node.end_lineno])
                    k = node.lineno - 2  # or a comment heading the block of imports it belongs to
                    while not said and k >= 0 and lines[k].strip().startswith(("import ", "from ", "#")):
                        said = "# lazy" in lines[k]
                        k -= 1
                    if not said:
                        missing.append(str(path.relative_to(package_dir)) + f":{node.lineno}")
    return sorted(set(missing))


def test_every_function_level_import_says_why():
    """Outside the CLI steps, an import inside a function is a documented choice (an optional or
    heavy dependency kept off start-up), in the engine and in the widgets alike."""
    import nuskybgd_widgets

    engine = [m for m in _function_level_imports(ENGINE) if not m.startswith(("cli.py:", "commands/"))]
    widgets = _function_level_imports(Path(nuskybgd_widgets.__file__).parent)
    assert not engine and not widgets, f"imports inside functions without '# lazy: reason': {engine + widgets}"
