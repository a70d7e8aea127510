"""Loads a job by name: ``MODULE:ATTR``, the way every entry point names one.

``shoal run``, ``shoal demo`` and the Flink application entry point
(``runtime.flink.main``) load the job they are given through :func:`load_job`; the
engine itself never imports a job.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from runtime.api.errors import ConfigError
from runtime.api.job import Job

__all__ = ["load_job"]


def load_job(spec: str) -> Job:
    """Import ``module:attr`` (or ``module`` with a ``job`` attribute) and return the Job.

    A callable attribute is called to make the job.

    Raises:
        ConfigError: the module or attribute is missing, or is not a Job.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "job"
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import job module {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, Job):
        obj = obj()
    if not isinstance(obj, Job):
        raise ConfigError(f"{module_name}:{attr} is not a shoal Job (got {type(obj).__name__})")
    return obj
