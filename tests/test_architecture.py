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


# --- the wings (docs/architecture.md) ------------------------------------------------------------------------
#: What each wing may import besides itself: the shared base wings never reach up into a request's life, the
#: client, routing or the doors.
WING_MAY_IMPORT = {
    "audio": {"errors", "music", "request"},
    "licences": {"errors", "audio", "_version"},
    "ops": {"errors", "audio", "licences", "request", "result", "_version"},
    "output": {"errors", "audio", "music", "licences", "ops"},
}
#: Named exceptions, each with its reason.
WING_EXCEPTIONS = {
    ("soundforge.output.inspect", "soundforge.run.watermarking"): "verify(watermark=True) asks AudioSeal's detector",
}
#: At most this many modules sit flat in src/soundforge (the rest live in wings).
MAX_FLAT_MODULES = 15


def _wing(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_each_wing_imports_only_what_its_floor_allows() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        wing = _wing(name)
        if wing not in WING_MAY_IMPORT:
            continue
        for dep in _imports(name, path, modules):
            other = _wing(dep)
            if other in (wing, "") or other in WING_MAY_IMPORT[wing] or (name, dep) in WING_EXCEPTIONS:
                continue
            wrong.append(f"{name} -> {dep}")
    assert not wrong, "wings import one way (docs/architecture.md): " + "; ".join(sorted(wrong))


def test_serve_never_imports_bulk_and_only_the_plan_asks_the_router() -> None:
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("soundforge.serve"):
            assert not any(d.startswith("soundforge.bulk") for d in _imports(name, path, modules)), name
        if name not in ("soundforge.run.plan", "soundforge.routing"):
            assert "router.plan(" not in path.read_text("utf-8"), f"{name} asks the router: use Client.plan"


def test_the_top_level_stays_small() -> None:
    flat = sorted(p.name for p in (SRC / "soundforge").glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, f"{len(flat)} flat modules: put new ones in a wing ({flat})"
    too_big = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text("utf-8").splitlines())) > 600
    }
    assert not too_big, f"modules over 600 lines: {too_big}"
    # The client is a facade over run/ (plan, steps, attempts): a rule that grows here belongs in a step.
    facade = len((SRC / "soundforge" / "client.py").read_text("utf-8").splitlines())
    assert facade <= 350, f"client.py has {facade} lines: move the rule into soundforge.run"


#: The public faces of `soundforge.backends`: a built-in provider is written from them alone, as a plug-in is.
FACES = {"base", "local", "diffusion", "cloud", "runtime", "devices", "adapters"}


def test_builtin_providers_use_only_the_public_faces() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        parts = name.split(".")
        if not name.startswith("soundforge.backends.") or parts[2] in FACES or parts[2].startswith("_"):
            continue
        for dep in _imports(name, path, modules):
            if dep.startswith("soundforge.backends.") and dep.split(".")[2].startswith("_"):
                wrong.append(f"{name} -> {dep}")
    assert not wrong, "import soundforge.backends.cloud / runtime instead: " + "; ".join(sorted(wrong))
