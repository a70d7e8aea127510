"""The CLI pieces a new job author meets first, without a broker: where Shoal's home is,
``shoal init``'s project (its own tests pass, it lints clean), finding a job module and
the one-line errors when that fails, and ``shoal run --dry-run``."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from connectors.codecs import codec_factory
from connectors.wire import WireConfig
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError
from runtime.cli.init_cmd import make_project, package_name, project_files
from runtime.cli.plan import check_schemas, describe_run
from runtime.loader import load_job
from runtime.runner import topic_plan
from runtime.settings import default_home, load_settings

ROOT = Path(__file__).resolve().parents[2]


# -- the home -------------------------------------------------------------------------
def test_the_home_is_per_user_unless_shoal_home_says_otherwise(tmp_path: Path) -> None:
    assert load_settings({"HOME": "/home/u"}).home == Path("/home/u/.local/share/shoal")
    xdg = {"HOME": "/home/u", "XDG_DATA_HOME": "/data"}
    assert load_settings(xdg).home == Path("/data/shoal")
    assert load_settings(xdg).broker_home == Path("/data/shoal/broker")
    assert load_settings(xdg).state_dir == Path("/data/shoal/state")
    # a relative XDG_DATA_HOME is invalid by the specification: ignored
    assert default_home({"HOME": "/home/u", "XDG_DATA_HOME": "data"}) == Path(
        "/home/u/.local/share/shoal"
    )
    # SHOAL_HOME wins, made absolute so every folder finds the same broker
    relative = load_settings({**xdg, "SHOAL_HOME": "here"}).home
    assert relative.is_absolute() and relative == Path.cwd() / "here"
    assert load_settings({**xdg, "SHOAL_HOME": str(tmp_path)}).home == tmp_path


# -- shoal init ---------------------------------------------------------------------
def test_init_makes_a_project_that_passes_its_own_tests_and_lints_clean(tmp_path: Path) -> None:
    folder = tmp_path / "slow-starts"
    written = make_project(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in written)
    assert names == [
        "README.md",
        "pyproject.toml",
        "slow_starts/__init__.py",
        "slow_starts/job.py",
        "slow_starts/schemas/SlowStarts.avsc",
        "tests/test_job.py",
    ]
    readme = (folder / "README.md").read_text()
    assert len(readme.splitlines()) == 5 and "shoal run slow_starts.job:job" in readme
    assert "__PACKAGE__" not in "".join(p.read_text() for p in written)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "5 passed" in tests.stdout
    ruff = Path(sys.executable).with_name("ruff")
    lint = subprocess.run(
        [str(ruff), "check", "--isolated", "--no-cache", "--line-length", "100",
         "--select", "E,F,W,I,B,UP,SIM", "."],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout


def test_the_project_job_loads_and_has_every_kind_of_step(tmp_path: Path) -> None:
    folder = tmp_path / f"p{uuid.uuid4().hex[:8]}"
    make_project(folder)
    job = load_job(f"{folder.name}.job:job", [folder])
    kinds = [n.kind for n in job.nodes]
    assert kinds == ["source", "filter", "keyby", "process", "keyby", "window", "sink"]
    assert job.name == folder.name
    check_schemas(job, codec_factory(job.schema_dirs))  # its own schema is found


def test_init_refuses_a_folder_with_files_and_names_that_are_no_package(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        make_project(tmp_path / "taken")
    for bad in ("1job", "my job", "class", "runtime", "tests"):
        with pytest.raises(ConfigError):
            package_name(tmp_path / bad)
    assert package_name(tmp_path / "my-job") == "my_job"
    assert "my_job/job.py" in {p.as_posix() for p in project_files("my_job", "my_job")}


# -- finding the job ------------------------------------------------------------------
def _module(folder: Path, text: str) -> str:
    name = f"m{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(text)
    return name


def test_a_missing_module_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_job("no_such_module_here:job", [tmp_path])
    message = str(info.value)
    assert "\n" not in message and "no module named 'no_such_module_here'" in message
    assert f"looked in {tmp_path.resolve()}, {Path.cwd().resolve()}" in message
    assert "--path DIR" in message


def test_errors_inside_the_job_module_are_one_line_naming_the_file(tmp_path: Path) -> None:
    cases = {
        "import not_installed_anywhere_xyz\n": "imports 'not_installed_anywhere_xyz'",
        "x = 1 / 0\n": "ZeroDivisionError: division by zero",
        "def broken(:\n": "SyntaxError",
        "job = 3\n": "is not a shoal Job (got int)",
        "from runtime import Job\nother = Job('other')\n": "no attribute 'job' (Jobs in it: other)",
    }
    for text, expected in cases.items():
        name = _module(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_job(f"{name}:job", [tmp_path])
        message = str(info.value)
        assert expected in message and "\n" not in message, message
        if "Error" in expected:
            assert f"{name}.py:1" in message, message
    with pytest.raises(ConfigError, match="must look like package.module:attr"):
        load_job("not-a-module:job")


def test_a_function_returning_the_job_is_accepted(tmp_path: Path) -> None:
    name = _module(tmp_path, "from runtime import Job\ndef build():\n    return Job('built')\n")
    assert load_job(f"{name}:build", [tmp_path]).name == "built"


# -- --dry-run ------------------------------------------------------------------------
def test_dry_run_lists_what_the_worker_would_create(tmp_path: Path) -> None:
    from jobs.qoe.alerts import alerts_job

    bindings = Bindings.for_job(
        alerts_job,
        ["qoe-alerts=webhook+https://hooks.example/x?secret=whsec_abc", "dead-letters=qoe.dl"],
    )
    lines = describe_run(
        alerts_job, bindings, WireConfig(), codec_factory(), group="qoe-g", worker_id="h-w0",
        guarantee="exactly_once", state="rocksdb", state_dir=tmp_path, partitions=6,
        replication=3, checkpoint_ms=500,
    )  # fmt: skip
    text = "\n".join(lines)
    assert f"rocksdb state in {tmp_path / 'h-w0'}" in text
    assert "checkpoint every 500 ms" in text
    assert "qoe-metrics <- topic qoe-metrics: QoeMetric" in text
    assert "qoe-alerts -> webhook+https://hooks.example/x?secret=***: QoeAlert" in text
    assert "whsec_abc" not in text
    assert "dead letters -> topic qoe.dl: DeadLetter; if missing: partitions 1, replication 3" in (
        text
    )
    # every topic the worker would create is listed, with the same settings
    for planned in topic_plan(alerts_job, bindings, 6, "qoe-g", 3):
        assert planned.name in text
        if planned.role == "changelog":
            assert (
                f"{planned.name}: changelog of step {planned.owner}; partitions one per input "
                "partition, replication 3, cleanup.policy=compact"
            ) in text
    assert lines[-1] == "dry run: nothing was connected to, created or started"


def test_dry_run_names_schemas_that_are_not_found() -> None:
    from runtime import Avro, Job

    job = Job("j")
    job.source("in", schema="NoSuchRecord").sink("out", Avro("AlsoMissing"))
    text = "\n".join(
        describe_run(
            job, Bindings.for_job(job), WireConfig(), codec_factory(), group="j",
            worker_id="w", guarantee="exactly_once", state="memory", state_dir=Path("."),
            partitions=1, replication=-1, checkpoint_ms=1000,
        )
    )  # fmt: skip
    assert "NoSuchRecord (NOT FOUND in the schema folders)" in text
    with pytest.raises(ConfigError, match="AlsoMissing, NoSuchRecord"):
        check_schemas(job, codec_factory())
