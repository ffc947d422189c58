"""Imports only point down: each module imports only from its own layer or the layers below,
and no chain of imports (function-level ones included) leads back to where it started.

A module belongs to the layer of its longest matching prefix below. The package root
(`brainbench/__init__.py`) is bottom (its `__version__` is read everywhere); its lazy
`brainbench.load_model` is the one upward import allowed.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "brainbench"

LAYERS = (  # bottom first
    ("brainbench", "brainbench.spec", "brainbench.errors", "brainbench.stages",
     "brainbench.labels", "brainbench.progress", "brainbench.bids_names"),
    ("brainbench.config", "brainbench.suites", "brainbench.cluster"),
    ("brainbench.registry", "brainbench.metrics"),
    ("brainbench.data",),
    ("brainbench.results", "brainbench.models.base", "brainbench.memory"),
    ("brainbench.training",),  # the training core: fit, masking, augmentation, randomness
    ("brainbench.models",),
    ("brainbench.tasks", "brainbench.training.pretrain", "brainbench.training.pretrain_brainlm",
     "brainbench.checks"),
    ("brainbench.resolve", "brainbench.loading", "brainbench.predict", "brainbench.export",
     "brainbench.submission"),
    ("brainbench.grid",),
    ("brainbench.api",),
    ("brainbench.cli", "brainbench.commands", "brainbench.__main__"),
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, level = "", None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, level = prefix, i
    assert level is not None, f"{module} is in no layer; add it to LAYERS in {__file__}"
    return level


def resolve(name: str) -> str:
    """The brainbench module an imported name lives in (`pkg.mod.func` -> `pkg.mod`)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module: str) -> set[str]:
    """The brainbench modules `module` imports anywhere in its file."""
    if module == "brainbench":
        return set()  # the lazy load_model façade
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {resolve(n) for n in names if n.split(".")[0] == "brainbench"}
    return found - {module}


GRAPH = {module: imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = sorted(t for t in GRAPH[module] if layer_of(t) > layer_of(module))
    assert not upward, f"{module} (layer {layer_of(module)}) imports from above: {upward}"


def test_no_import_cycles():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(GRAPH[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(MODULES):
        visit(module, [])


def test_only_the_data_layer_knows_the_generator():
    """Outside data/, only the `brainbench synth` command imports the synthetic cohort's code:
    everything else asks the dataset's Source (data/sources/base.py) what it offers."""
    generator = ("brainbench.data.synth", "brainbench.data.sources.synth")
    users = sorted(
        module
        for module, targets in GRAPH.items()
        if not module.startswith(("brainbench.data.", "brainbench.commands.synth"))
        and any(t == g or t.startswith(g + ".") for t in targets for g in generator)
    )
    assert not users, f"{users} import the synthetic cohort; ask open_source(config) instead"
