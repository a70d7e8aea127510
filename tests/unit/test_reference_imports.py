"""The brute-force references are one package that tests and the bench share.

``bench`` imports nothing from ``tests`` but ``tests.reference``, and the references
import nothing else of ``tests`` and nothing of ``bench``: no cycle between the
bench and the tests (checked on the source, imports inside functions included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


BENCH = sorted((ROOT / "bench").rglob("*.py"))
REFERENCE = sorted((ROOT / "tests" / "reference").rglob("*.py"))


@pytest.mark.parametrize("path", BENCH, ids=lambda p: p.name)
def test_bench_imports_only_the_references_of_tests(path: Path) -> None:
    wrong = [n for n in _imports(path) if _under(n, "tests") and not _under(n, "tests.reference")]
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}: move it to tests/reference"


@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: p.name)
def test_references_import_neither_tests_nor_bench(path: Path) -> None:
    wrong = [
        n
        for n in _imports(path)
        if _under(n, "bench") or (_under(n, "tests") and not _under(n, "tests.reference"))
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_the_checks_see_the_packages() -> None:
    assert len(BENCH) > 10 and len(REFERENCE) >= 8
    assert any(_under(n, "tests.reference") for p in BENCH for n in _imports(p))
