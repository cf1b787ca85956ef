"""The layout of the package: one namespace, imports in one direction, no cycles.

Layers, bottom to top: ``gradprobe.core`` <- ``gradprobe.bench`` <- ``gradprobe.analysis`` <-
the top (``gradprobe.api``, ``gradprobe.cli``, ``gradprobe.pipeline``,
``gradprobe.calibration``). Every import counts, including those inside functions: a cycle
dodged with a function-level import is still a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import gradprobe

ROOTS = {"gradprobe": Path(gradprobe.__file__).parent,
         "gradprobe.bench": Path(gradprobe.__file__).parent.parent.parent / "bench",
         "gradprobe.analysis": Path(gradprobe.__file__).parent.parent.parent / "analysis"}
LAYERS = {"core": 0, "bench": 1, "analysis": 2, "top": 3}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    import gradprobe.analysis
    import gradprobe.bench

    found = {}
    for prefix, module in (("gradprobe", gradprobe), ("gradprobe.bench", gradprobe.bench),
                           ("gradprobe.analysis", gradprobe.analysis)):
        root = Path(module.__file__).parent
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((prefix, *parts))
            found.setdefault(name, path)
    return found


def imported(path: Path, name: str) -> set[str]:
    """gradprobe modules that ``path`` imports anywhere in its body (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m == "gradprobe" or m.startswith("gradprobe.")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges = defaultdict(set)
    for name, path in mods.items():
        for target in imported(path, name):
            while target not in mods and "." in target:  # `from pkg import name`
                target = target.rpartition(".")[0]
            if target != name and target in mods and not name.startswith(target + "."):
                edges[name].add(target)
    return {name: edges[name] for name in mods}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("core", "bench", "analysis"):
        return LAYERS[parts[1]]
    return LAYERS["top"]


def test_imports_only_go_down_the_layers():
    upward = [(a, b) for a, targets in graph().items() for b in targets
              if layer(b) > layer(a) and b != "gradprobe"]
    assert not upward, f"imports from a lower layer into a higher one: {upward}"


# Within the layers, the subpackages in the order a sweep's data flows through them.
ORDER = ("core", "bench.plan", "bench.init", "bench.models", "bench.engine", "bench.store",
         "bench.execute", "analysis.stats", "analysis.analyze", "analysis.compare",
         "analysis.report", "analysis.history")


def rank(module: str) -> int:
    parts = module.split(".")
    for depth in (3, 2):
        group = ".".join(parts[1:depth])
        if group in ORDER:
            return ORDER.index(group)
    return len(ORDER)  # the top: api, cli, pipeline, calibration


def test_subpackages_import_only_those_before_them():
    backwards = [(a, b) for a, targets in graph().items() for b in targets
                 if b != "gradprobe" and rank(b) > rank(a)]
    assert not backwards, f"imports of a later subpackage: {backwards}"


def test_nothing_below_the_top_imports_the_api():
    offenders = [a for a, targets in graph().items() if layer(a) < LAYERS["top"]
                 and {"gradprobe.api", "gradprobe"} & targets]
    assert not offenders


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_one_module_name_per_concept():
    """Module names are unique across the package, except the CLI's verb modules, which are
    named by their verb (``gradprobe.cli.commands.compare`` is ``gradprobe compare``)."""
    names = defaultdict(list)
    for name, path in modules().items():
        if path.name != "__init__.py" and not name.startswith("gradprobe.cli.commands."):
            names[name.rsplit(".", 1)[-1]].append(name)
    twice = {leaf: where for leaf, where in names.items() if len(where) > 1}
    assert not twice, f"one module name, several modules: {twice}"


def test_a_sweep_does_not_load_the_analysis_or_plotting_stacks():
    """``gradprobe run`` imports what a sweep needs; scipy, matplotlib and the analysis
    load when a command uses them."""
    import subprocess
    import sys

    probe = ("import sys; from gradprobe.cli.main import build_parser; build_parser(); "
             "import gradprobe.api; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'matplotlib', 'seaborn', 'scipy', 'jinja2'}), "
             "any(m.startswith('gradprobe.analysis.') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["[]", "False"], done.stderr


def test_core_needs_no_heavy_dependency():
    """The core reads and writes files (pyarrow, pandas) but computes and draws nothing."""
    heavy = ("torch", "scipy", "matplotlib", "seaborn")
    for name, path in modules().items():
        if not name.startswith("gradprobe.core"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not (mod or "").startswith(heavy), f"{name} imports {mod}"
