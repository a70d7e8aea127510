"""Loads a job by name: ``MODULE:ATTR``, the way every entry point names one.

``shoal run``, ``shoal demo`` and the Flink application entry point
(``runtime.flink.main``) load the job they are given through :func:`load_job`; the
engine itself never imports a job. A job project lives anywhere (``shoal init`` makes
one): its module is imported the way ``python -m`` would from the current folder, plus
any ``--path DIR``. An import that fails is one line saying what was missing and where
it was looked for.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from runtime.api.errors import ConfigError, ShoalError
from runtime.api.job import Job

__all__ = ["job_search_path", "load_job"]


def job_search_path(paths: Iterable[Path] = ()) -> list[Path]:
    """The folders a job module is looked for in, first match wins: each ``--path``
    folder in order, then the current folder."""
    found: list[Path] = []
    for folder in (*paths, Path.cwd()):
        folder = folder.expanduser().resolve()
        if folder not in found:
            found.append(folder)
    return found


def load_job(spec: str, paths: Iterable[Path] = ()) -> Job:
    """Import ``module:attr`` (or ``module`` with a ``job`` attribute) and return the Job.

    ``attr`` may also name a function without arguments that returns the Job.

    Args:
        spec: ``package.module:attr``.
        paths: folders to import from before the current folder (``--path``).

    Raises:
        ConfigError: the module cannot be imported (the message names the folders
            searched), the attribute is missing, or it is not a Job.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "job"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(f"job {spec!r} must look like package.module:attr (e.g. myjob.job:job)")
    search = job_search_path(paths)
    for folder in reversed(search):
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(_not_found(module_name, exc, search)) from exc
    except ShoalError:
        raise  # the job's own definition error: already one line naming the step
    except Exception as exc:  # the module's code failed: say where, in one line
        text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ConfigError(
            f"cannot import job module {module_name!r}: {type(exc).__name__}: {text}"
            f"{_where(exc, search)}"
        ) from exc
    obj = getattr(module, attr, None)
    if obj is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, Job))
        hint = f" (Jobs in it: {', '.join(found)})" if found else ""
        raise ConfigError(
            f"job module {module_name!r} ({_file_of(module)}) has no attribute {attr!r}{hint}"
        )
    if callable(obj) and not isinstance(obj, Job):
        try:
            obj = obj()
        except ShoalError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"{module_name}:{attr}() failed: {type(exc).__name__}: {exc}{_where(exc, search)}"
            ) from exc
    if not isinstance(obj, Job):
        raise ConfigError(f"{module_name}:{attr} is not a shoal Job (got {type(obj).__name__})")
    return obj


def _not_found(module_name: str, exc: ModuleNotFoundError, search: list[Path]) -> str:
    missing = exc.name or module_name
    if not (module_name == missing or module_name.startswith(missing + ".")):
        # The job's module was found, but something it imports was not.
        return (
            f"job module {module_name!r} imports {missing!r}, which is not installed "
            f"in this Python ({sys.executable})"
        )
    parent = missing.rpartition(".")[0]
    if parent in sys.modules:  # the package was found; the module is not in it
        where = f"in package {parent!r} at {_file_of(sys.modules[parent])}"
    else:
        where = f"looked in {', '.join(str(p) for p in search)}"
    return (
        f"cannot import job module {module_name!r}: no module named {missing!r} ({where}; "
        "run from the project's folder or add --path DIR)"
    )


def _where(exc: BaseException, search: list[Path]) -> str:
    """`` (file:line)`` of a syntax error, else of the innermost frame in the job's own
    folders (else the innermost frame)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if any(Path(f.filename).is_relative_to(p) for p in search)]
    chosen = own or frames
    return f" ({chosen[-1].filename}:{chosen[-1].lineno})" if chosen else ""


def _file_of(module: object) -> str:
    """Where a module was found (a namespace package: its folders)."""
    file = getattr(module, "__file__", None)
    if file:
        return str(file)
    folders = list(getattr(module, "__path__", []))
    return ", ".join(folders) if folders else str(getattr(module, "__name__", "?"))
