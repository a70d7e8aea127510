"""``shoal init PATH``: a job project to start from, outside Shoal's repository.

The project is made from the files in ``runtime/cli/project/`` (``*.tmpl``; the folder
``__PACKAGE__`` and every ``__PACKAGE__`` and ``__JOB__`` in the files take the
project's names): a job module with a source, a filter, a keyed process step with
state and an event-time timer, a window and a sink with its own Avro schema; a pytest
file that drives it with the test driver; a five-line README. It passes its tests and
runs with ``shoal run PACKAGE.job:job`` against the local broker as it is.
"""

from __future__ import annotations

import keyword
from pathlib import Path

import click

from runtime.api.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parent / "project"
SUFFIX = ".tmpl"


def project_files(package: str, job_name: str) -> dict[Path, str]:
    """The project's files (relative path -> text) for a package and job name."""
    files = {}
    for source in sorted(TEMPLATE.rglob(f"*{SUFFIX}")):
        relative = source.relative_to(TEMPLATE).as_posix().removesuffix(SUFFIX)
        text = source.read_text(encoding="utf-8")
        text = text.replace("__PACKAGE__", package).replace("__JOB__", job_name)
        files[Path(relative.replace("__PACKAGE__", package))] = text
    return files


def package_name(folder: Path) -> str:
    """The Python package a project folder's name gives (``my-job`` -> ``my_job``).

    Raises:
        ConfigError: the name cannot be a package.
    """
    name = folder.resolve().name.replace("-", "_")
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise ConfigError(
            f"{folder.resolve().name!r} cannot name a Python package: use letters, digits, '_' and "
            "'-', starting with a letter (e.g. shoal init slow_starts)"
        )
    if name in ("runtime", "connectors", "jobs", "schemas", "tests", "test"):
        raise ConfigError(f"{name!r} is taken (Shoal or pytest uses it): pick another")
    return name


def make_project(folder: Path) -> list[Path]:
    """Write a new job project into ``folder`` (created; it must be empty if it exists).

    Returns:
        The files written.

    Raises:
        ConfigError: the folder holds files already, or its name cannot be a package.
    """
    package = package_name(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} exists and is not an empty folder: choose a new path")
    written = []
    for relative, text in project_files(package, package).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
def init(path: Path) -> None:
    """Make a job project in PATH (a new folder) to start from.

    \b
    PATH/
      README.md                 five lines: test, broker and generate, run, tail
      pyproject.toml            pytest settings
      NAME/job.py               the job: source, filter, keyed process step with
                                state and a timer, 1-minute window, sink
      NAME/schemas/*.avsc       the sink's own record schema
      tests/test_job.py         tests with the test driver (no broker needed)

    NAME is the folder's name ('-' becomes '_'); so is the job's. Then:
    cd PATH && pytest && shoal run NAME.job:job
    """
    written = make_project(path)
    package = package_name(path)
    click.echo(f"made {len(written)} files in {path.resolve()}:", err=True)
    for file in written:
        click.echo(f"  {file.relative_to(path)}", err=True)
    go = "" if path.resolve() == Path.cwd().resolve() else f"cd {path} && "
    click.echo(f"next: {go}pytest && shoal run {package}.job:job   (see README.md)", err=True)
