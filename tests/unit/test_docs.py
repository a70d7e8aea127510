"""The tutorial works as written: every ```python block in docs/ (and the README) runs,
and every ``shoal`` command in their shell blocks names a command and options that exist.

Blocks of a page run in order in one namespace (as a reader types them into one
session), in a temporary folder, without a broker. A block the test leaves out says so
on its first line, visibly: ``# not run: <the reason>`` (the test checks that a reason
is given and counts them).
"""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import click
import pytest

from runtime.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
NOT_RUN = "# not run:"
# Blocks left out on purpose, at most (raise it only with a visible reason in the block).
MAX_NOT_RUN = 2


def blocks(page: Path) -> list[tuple[str, int, str]]:
    """``(language, line number, code)`` of each fenced block of a page."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 2
        found.append((m.group(2), line, textwrap.dedent(m.group(3))))
    return found


def test_the_docs_have_the_pages_the_site_lists() -> None:
    listed = re.findall(r":\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert sorted(listed) == sorted(p.name for p in PAGES)
    assert sum(1 for p in PAGES for lang, _, _ in blocks(p) if lang == "python") >= 25


RUNNABLE = [p for p in (*PAGES, ROOT / "README.md") if any(b[0] == "python" for b in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_every_python_block_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for lang, line, code in blocks(page):
        if lang != "python":
            continue
        if code.startswith(NOT_RUN):
            assert len(code.splitlines()[0]) > len(NOT_RUN) + 10, f"{page.name}:{line}: why?"
            continue
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            pytest.fail(f"docs/{page.name}, block at line {line}: {type(exc).__name__}: {exc}")


def test_few_blocks_are_left_out_and_each_says_why() -> None:
    left_out = [
        f"{p.name}:{line}"
        for p in RUNNABLE
        for lang, line, code in blocks(p)
        if lang == "python" and code.startswith(NOT_RUN)
    ]
    assert len(left_out) <= MAX_NOT_RUN, left_out


def _commands(code: str, table: bool = False) -> list[list[str]]:
    """``shoal ...`` invocations of a shell block, as argument lists (of a plain block,
    a table of commands and descriptions: the first column only)."""
    found = []
    for raw in code.replace("\\\n", " ").splitlines():
        line = raw.strip().removeprefix("$ ")
        if table:
            line = re.split(r"\s{2,}", line)[0]
        if line.startswith("#"):
            continue
        for part in re.split(r"&&|\|\||[|;&]", line.split(" #")[0]):
            try:
                words = shlex.split(part)
            except ValueError:
                words = part.split()
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                words = words[1:]  # VARIABLE=value before the command
            if words and words[0] == "shoal":
                found.append(words[1:])
    return found


def _check(words: list[str], where: str) -> None:
    command: click.Command = cli
    names = {o for p in cli.params for o in (*p.opts, *p.secondary_opts)}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            assert name in names | {"--help", "-h"}, (
                f"{where}: {name} is no option of {command.name}"
            )
            continue
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            names = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            continue
        if isinstance(command, click.Group) and "|" in word:  # start|status|stop
            assert all(w in command.commands for w in word.split("|")), f"{where}: {word}"
    assert command is not cli or words in (["--help"], ["--version"]), f"{where}: {words}"


def test_every_shoal_command_in_the_docs_exists() -> None:
    seen = 0
    for page in [*PAGES, ROOT / "README.md"]:
        for lang, line, code in blocks(page):
            if lang in ("bash", "sh", "console", "shell", ""):
                for words in _commands(code, table=lang == ""):
                    _check(words, f"{page.name}:{line}")
                    seen += 1
    assert seen >= 30
