"""The tree shows the pipeline: every import inside the package points down the layers, and there is no import cycle."""

import ast
from pathlib import Path

import fooled

SRC = Path(fooled.__file__).parent
# data flows down this list; a module may import from its own layer and those before it, never after.
# attacks come before train: they need only a model, and adversarial training (Madry et al.) needs PGD
LAYERS = ["_version", "errors", "data", "models", "settings", "config", "rundir", "audit_prose", "records", "stage_rows", "attacks", "train", "detection", "analysis", "study", "api", "cli", "__init__"]


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(module: str) -> bool:
    return (SRC.parent / module.replace(".", "/") / "__init__.py").exists()


def _resolve(module: str, node: ast.AST) -> list[str]:
    """The fooled modules an import statement in `module` loads (function-level imports included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "fooled"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module if _is_package(module) else module.rsplit(".", 1)[0]
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if base.split(".")[0] != "fooled":
        return []
    subs = [f"{base}.{a.name}" for a in node.names]  # `from . import run` loads a submodule
    subs = [s for s in subs if (SRC.parent / (s.replace(".", "/") + ".py")).exists() or _is_package(s)]
    return subs if base == "fooled" and subs else [base] + subs  # `from .. import attacks` needs no more of the root


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(SRC.rglob("*.py")):
        module = _module(path)
        graph[module] = {m for node in ast.walk(ast.parse(path.read_text())) for m in _resolve(module, node)} - {module}
    return graph


def _layer_name(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    return LAYERS.index(_layer_name(module))


def test_every_module_has_a_layer():
    unplaced = [m for m in _graph() if _layer_name(m) not in LAYERS]
    assert not unplaced, f"add these to LAYERS (and to ARCHITECTURE.md): {unplaced}"


def test_imports_point_down_the_pipeline():
    wrong = [f"{m} imports {d}" for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m)]
    assert not wrong, wrong


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, cycles


def test_the_checks_see_a_cycle_and_an_upward_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    report_imports_study = _resolve("fooled.analysis.report", ast.parse("from ..study import run").body[0])
    assert report_imports_study == ["fooled.study", "fooled.study.run"]
    assert _layer("fooled.study.run") > _layer("fooled.analysis.report")


def test_readme_and_architecture_draw_the_same_layers_as_this_test():
    import re

    root = SRC.parent.parent
    expected = [name for name in LAYERS if name not in ("_version", "__init__")]
    architecture = next(line for line in (root / "ARCHITECTURE.md").read_text().splitlines() if line.startswith("errors, data ->"))
    readme = (root / "README.md").read_text()
    flow = readme[readme.index("Data flows one way, and the tree shows it:"):]
    flow = flow[: flow.index("Each arrow")]
    assert re.findall(r"[a-z_]+", architecture) == expected
    assert re.findall(r"`([a-z_]+)`", flow) == expected
