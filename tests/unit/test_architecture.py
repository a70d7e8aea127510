"""The dependency rules of DESIGN.md, checked on the source (AST), not hoped for.

Every import counts: at the top, under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "connectors", "jobs", "schemas")

# The top layer: the composition root (the one module that wires connectors into the
# engine) and the command line built on it. They may import everything.
TOP = ("runtime.composition", "runtime.cli")

# package prefix -> prefixes of our own modules it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "runtime": ("runtime.api",),  # the public root re-exports the job API
    "runtime.aggregates": ("runtime.api",),
    "runtime.api": ("runtime.api",),
    "runtime.engine": ("runtime.api", "runtime.engine", "runtime.state"),
    "runtime.state": ("runtime.api", "runtime.state"),
    "runtime.generator": ("runtime.generator",),
    "runtime.settings": ("runtime.api",),
    "runtime.loader": ("runtime.api",),
    "runtime.engines": ("runtime.api",),
    "runtime.runner": ("runtime.api", "runtime.engine", "runtime.state"),
    "runtime.service": ("runtime.api", "runtime.engine", "runtime.service"),
    "runtime.testing": ("runtime.api", "runtime.engine", "runtime.state", "runtime.testing"),
    # The Flink engine: the API and the shared engine pieces (never the worker: see
    # FLINK_FORBIDDEN), the engine interface and its own modules.
    "runtime.flink": (
        "runtime.api",
        "runtime.engine",
        "runtime.engines",
        "runtime.flink",
        "runtime.loader",
        "runtime.settings",
    ),
    "connectors": ("connectors", "runtime.api", "schemas"),
    "jobs": ("jobs", "runtime", "connectors"),
    "schemas": ("schemas",),
}
# Entry points below the top layer that start from the composition root, and why.
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    # the Flink application's __main__ (run by the JobManager): it wires like `shoal run`
    "runtime.flink.main": ("runtime.composition",),
    # TestDriver's default codecs, when the test gives none
    "runtime.testing.driver": ("runtime.composition",),
}
# jobs may use only the public root of the runtime, never the engine or state
JOBS_FORBIDDEN = ("runtime.engine", "runtime.state", "runtime.cli", "runtime.testing")
# the Flink engine shares engine pieces, never the native worker or the command line
FLINK_FORBIDDEN = ("runtime.engine.worker", "runtime.cli")

SINGLE_IMPORT = {
    "confluent_kafka": "connectors/kafka/client.py",
    "fastavro": "connectors/avro/_fastavro.py",
    "rocksdict": "runtime/state/rocksdb.py",
    "pyflink": "runtime/flink/_pyflink.py",
    "psycopg": "connectors/postgres/sink.py",
    "redis": "connectors/redis/sink.py",
    "standardwebhooks": "connectors/webhook/signing.py",
    "httpcore2": "connectors/webhook/http.py",
    "msgpack": "runtime/state/codec.py",
    "ddsketch": "runtime/api/aggregates.py",
}

# Modules that turn bytes into code, and builtins that run strings: never in the
# platform, whose inputs (Kafka records, changelogs, local state) anyone may have written.
FORBIDDEN_MODULES = ("pickle", "marshal", "cloudpickle", "dill", "shelve")
FORBIDDEN_CALLS = ("eval", "exec")
NO_CODE_FROM_DATA = ("runtime", "connectors")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _rule_for(module: str) -> tuple[str, ...] | None:
    """What ``module`` may import of ours; ``None`` for the top layer (everything)."""
    if _within(module, TOP):
        return None
    best = None
    for prefix in ALLOWED:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    if best is None:
        raise AssertionError(f"{module} has no import rule: add one to ALLOWED")
    return ALLOWED[best] + ENTRY_POINTS.get(module, ())


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_modules_found() -> None:
    mods = dict(_modules())
    assert "runtime.api.job" in mods and "connectors.kafka.client" in mods


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: str(v))
def test_import_direction(module: str, path: Path) -> None:
    allowed = _rule_for(module)
    if allowed is None:  # the composition root and the command line: may use everything
        return
    bad = [n for n in _imports(path) if _ours(n) and not _within(n, allowed)]
    if module.startswith("jobs"):
        bad += [n for n in _imports(path) if _within(n, JOBS_FORBIDDEN)]
    if module.startswith("runtime.flink"):
        bad += [n for n in _imports(path) if _within(n, FLINK_FORBIDDEN)]
    assert not bad, f"{module} must not import {bad} (allowed: {allowed})"


def test_only_the_top_layer_imports_connectors() -> None:
    """The composition root wires the connectors in; every other runtime module gets
    them injected (through protocols of runtime.api, runtime.engine.ports, the runner's
    RunnerConnectors and the Flink engine's FlinkConnectors)."""
    users = sorted(
        module
        for module, path in _modules()
        if not _within(module, ("connectors",))
        and any(_within(n, ("connectors",)) for n in _imports(path))
    )
    outside = [m for m in users if not _within(m, TOP)]
    assert not outside, f"only {TOP} may import connectors; also: {outside}"
    assert "runtime.composition" in users


def test_flink_does_not_borrow_from_the_worker_or_the_cli() -> None:
    found = {
        module: [n for n in _imports(path) if _within(n, FLINK_FORBIDDEN)]
        for module, path in _modules()
        if _within(module, ("runtime.flink",))
    }
    assert len(found) > 5, "the Flink engine's modules were not found"
    assert not any(found.values()), {m: names for m, names in found.items() if names}


def _engine_graph() -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports."""
    modules = {m: p for m, p in _modules() if _within(m, ("runtime.engine",))}
    return {
        module: {n for n in _imports(path) if n in modules and n != module}
        for module, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[a, b, ..., a]``), or ``None``."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node)
        if found:
            return found
    return None


def test_no_import_cycles_inside_the_engine() -> None:
    graph = _engine_graph()
    assert "runtime.engine.task" in graph and "runtime.engine.checkpoint" in graph
    assert _cycle(graph) is None, f"import cycle in runtime.engine: {_cycle(graph)}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_engine_never_imports_jobs() -> None:
    for module, path in _modules():
        if module.startswith("runtime"):
            assert not [n for n in _imports(path) if _within(n, ("jobs",))], module


@pytest.mark.parametrize("library", sorted(SINGLE_IMPORT))
def test_library_imported_in_one_module(library: str) -> None:
    users = sorted(
        str(path.relative_to(ROOT))
        for _, path in _modules()
        if any(n == library or n.startswith(library + ".") for n in _imports(path))
    )
    assert users == [SINGLE_IMPORT[library]], f"{library} imported by {users}"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from runtime.engine.task import Task\nimport fastavro\n")
    names = _imports(bad)
    assert not _within(names[0], ALLOWED["runtime.api"])
    assert "fastavro" in names


def _code_from_data(path: Path) -> list[str]:
    """Imports of FORBIDDEN_MODULES and calls of FORBIDDEN_CALLS in one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")
            if name in FORBIDDEN_CALLS:
                found.append(f"{name}() at line {node.lineno}")
        found += [
            f"import {n} at line {node.lineno}"
            for n in names
            if n.split(".")[0] in FORBIDDEN_MODULES
        ]
    return found


@pytest.mark.parametrize(
    "module,path",
    [(m, p) for m, p in _modules() if m.split(".")[0] in NO_CODE_FROM_DATA],
    ids=lambda v: str(v),
)
def test_no_code_from_data(module: str, path: Path) -> None:
    found = _code_from_data(path)
    assert not found, f"{module} may turn data into code: {found}"


def test_code_from_data_checker_catches_each_form(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text(
        "import pickle\nfrom marshal import loads\nimport dill.source\n"
        "eval('1')\nbuiltins.exec('x = 1')\n"
    )
    found = _code_from_data(bad)
    assert found == [
        "import pickle at line 1",
        "import marshal at line 2",
        "import dill.source at line 3",
        "eval() at line 4",
        "exec() at line 5",
    ], found


# Window operators are being reworked elsewhere; their asserts go with that work.
ASSERTS_PENDING = ("runtime/engine/windows.py", "runtime/flink/translate.py")


def _asserts(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]


def test_invariants_raise_errors_not_asserts() -> None:
    """``python -O`` strips asserts: an invariant raises a named error instead."""
    found = {
        str(path.relative_to(ROOT)): _asserts(path)
        for module, path in _modules()
        if module.split(".")[0] in NO_CODE_FROM_DATA
        and str(path.relative_to(ROOT)) not in ASSERTS_PENDING
    }
    assert not {p: lines for p, lines in found.items() if lines}
    assert _asserts(ROOT / "tests" / "unit" / "test_architecture.py")  # the finder finds
