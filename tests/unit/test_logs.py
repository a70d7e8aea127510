"""Log lines carry job, worker and task; JSON lines parse as one object each."""

from __future__ import annotations

import json
import logging

import pytest

from runtime.cli.logs import configure, set_context


@pytest.fixture(autouse=True)
def restore_logging() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    set_context("-", "-")


def test_json_lines_have_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    set_context("qoe", "hosta-w1")
    logging.getLogger("shoal.worker").info("restored %d records", 12, extra={"task": 3})
    logging.getLogger("shoal.worker").debug("not shown at info")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["message"] == "restored 12 records"
    assert (line["job"], line["worker"], line["task"]) == ("qoe", "hosta-w1", 3)
    assert line["level"] == "INFO" and line["logger"] == "shoal.worker" and line["time"]


def test_text_lines_name_the_worker(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", "text")
    set_context("sessions", "pod-2")
    logging.getLogger("shoal.x").warning("late checkpoint")
    err = capsys.readouterr().err
    assert "[sessions pod-2 task=-]: late checkpoint" in err
