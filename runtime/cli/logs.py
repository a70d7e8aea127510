"""Log lines an operator of many workers can search: level, format and context.

``shoal --log-level LEVEL --log-format text|json ...`` configures logging once per
process. Every line carries the job, the worker id and the task (``-`` where a line
belongs to none): :func:`set_context` is called as soon as a worker knows who it is,
and engine code passes ``extra={"task": tid}`` where a line is about one task. JSON
lines (python-json-logger: one object per line, fields ``time``, ``level``,
``logger``, ``message``, ``job``, ``worker``, ``task``) suit log shippers; text stays
the default for a terminal. Secrets never reach a line: messages that may carry a URL
or a setting are redacted where they are made (``runtime.api.redact``).
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LEVELS", "configure", "set_context"]

LEVELS = ("debug", "info", "warning", "error")
_CONTEXT = {"job": "-", "worker": "-"}
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(job)s %(worker)s task=%(task)s]: %(message)s"


class _ContextFilter(logging.Filter):
    """Adds the process's job and worker, and a task when the call gave none."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = _CONTEXT["job"]
        record.worker = _CONTEXT["worker"]
        if not hasattr(record, "task"):
            record.task = "-"
        return True


def configure(level: str, fmt: str) -> None:
    """Set up the root logger: ``level`` one of :data:`LEVELS`, ``fmt`` text or json."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(job)s %(worker)s %(task)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def set_context(job: str, worker: str) -> None:
    """Name the job and worker every later line of this process carries."""
    _CONTEXT["job"] = job
    _CONTEXT["worker"] = worker
