"""The shape of the code: imports run one way (no cycle, deferred imports included) and nothing outside
`soundforge.backends` reaches into a private backends module."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every soundforge module `name` imports, at module level or inside functions (TYPE_CHECKING included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = package
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                full = f"{base}.{node.module}" if node.module else base
            else:
                full = node.module or ""
            subs = {f"{full}.{a.name}" for a in node.names if f"{full}.{a.name}" in modules}
            found |= subs
            if full in modules and len(subs) < len(node.names):
                found.add(full)
    return found - {name}


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(dep) :], dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_private_backends_modules_stay_inside_backends() -> None:
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("soundforge.backends"):
            continue
        private = {
            d
            for d in _imports(name, path, modules)
            if d.startswith("soundforge.backends.") and d.rpartition(".")[2].startswith("_")
        }
        assert not private, f"{name} imports {sorted(private)}: use soundforge.backends.runtime / .cloud"


def test_every_public_name_and_method_is_documented() -> None:
    import inspect

    import soundforge

    missing = []
    for name in soundforge.__all__:
        obj = getattr(soundforge, name)
        if name.startswith("__"):
            continue
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if inspect.isfunction(function) and not (function.__doc__ or "").strip():
                    missing.append(f"{name}.{attr}")
    assert not missing, f"document these public names: {missing}"
