"""The dependency rules of DESIGN.md, checked on the source (AST), not hoped for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "connectors", "jobs", "schemas")

# package prefix -> prefixes of our own modules it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "runtime.api": ("runtime.api",),
    "runtime.engine": ("runtime.api", "runtime.engine", "runtime.state"),
    "runtime.state": ("runtime.api", "runtime.state"),
    "runtime.generator": ("runtime.generator",),
    "connectors": ("connectors", "runtime.api", "schemas"),
    "jobs": ("jobs", "runtime", "connectors"),
    "schemas": ("schemas",),
}
# jobs may use only the public root of the runtime, never the engine or state
JOBS_FORBIDDEN = ("runtime.engine", "runtime.state", "runtime.cli", "runtime.testing")

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
    best = None
    for prefix in ALLOWED:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return ALLOWED[best] if best else None


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_modules_found() -> None:
    mods = dict(_modules())
    assert "runtime.api.job" in mods and "connectors.kafka.client" in mods


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: str(v))
def test_import_direction(module: str, path: Path) -> None:
    allowed = _rule_for(module)
    if allowed is None:  # runtime.cli, runtime.testing, runtime root: may use everything
        return
    bad = [n for n in _imports(path) if _ours(n) and not _within(n, allowed)]
    if module.startswith("jobs"):
        bad += [n for n in _imports(path) if _within(n, JOBS_FORBIDDEN)]
    assert not bad, f"{module} must not import {bad} (allowed: {allowed})"


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
