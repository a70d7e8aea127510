"""The savepoint storage layer on a local folder, a ``file://`` URL and a real S3-compatible
server (moto's, as an HTTP server process), and whole savepoints written and read on each.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from runtime.api.errors import ConfigError, StateError
from runtime.cli.common import savepoint_storages
from runtime.cli.main import cli
from runtime.savepoint.format import Savepoint, SavepointWriter
from runtime.savepoint.layouts import row_schema, rows_from_entries
from runtime.savepoint.storage import (
    S3_EXTRA,
    FsspecStorage,
    LocalStorage,
    Storage,
    open_storage,
    parse_storage_options,
)
from runtime.savepoint.take import write_savepoint
from tests.integration import savepoint_jobs
from tests.unit.savepoint.test_format import ENTRIES, _changes, committed, description

if TYPE_CHECKING:
    from tests.s3 import S3Server

pytest_plugins = ["tests.s3"]

KINDS = ["local", "file-url", "s3"]
Make = Callable[[str], Storage]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    """A function giving the storage of a new location of the parametrized kind."""
    if request.param == "local":
        return lambda name: open_storage(tmp_path / name)
    if request.param == "file-url":
        return lambda name: open_storage(f"file://{tmp_path / name}")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = server.create_bucket()
    return lambda name: open_storage(f"s3://{bucket}/{name}", server.options())


def test_each_kind_is_the_storage_it_should_be(make: Make) -> None:
    storage = make("sp")
    if storage.location.startswith("s3://"):
        assert isinstance(storage, FsspecStorage) and storage.object_store
    else:
        assert isinstance(storage, LocalStorage) and "://" not in storage.location


def test_write_read_list_exists(make: Make) -> None:
    storage = make("sp")
    assert storage.list() == [] and not storage.exists("") and not storage.exists("manifest.json")
    storage.mkdirs()
    payload = bytes(range(256)) * 1000
    with storage.open_write("state/s/task-0.avro") as fo:
        fo.write(payload)
    storage.write_atomic("manifest.json", b'{"format": 1}\n')
    assert storage.list() == ["manifest.json", "state/s/task-0.avro"]
    assert storage.exists("") and storage.exists("state/s/task-0.avro")
    assert not storage.exists("state/s/task-1.avro")
    with storage.open_read("state/s/task-0.avro") as fo:
        assert fo.read() == payload
    with storage.open_read("manifest.json") as fo:
        assert json.loads(fo.read()) == {"format": 1}
    assert storage.where("manifest.json") == f"{storage.location}/manifest.json"


def test_a_failed_write_leaves_no_file(make: Make) -> None:
    storage = make("sp")
    with pytest.raises(RuntimeError, match="midway"), storage.open_write("state/s/x.avro") as fo:
        fo.write(b"half")
        raise RuntimeError("midway")
    assert storage.list() == []


def test_a_neighbouring_prefix_is_not_part_of_the_location(make: Make) -> None:
    neighbour = make("sp10")
    neighbour.mkdirs()
    with neighbour.open_write("state/s/task-0.avro") as fo:
        fo.write(b"x")
    storage = make("sp1")
    assert storage.list() == [] and not storage.exists("")


def test_reading_a_missing_file_is_one_line(make: Make) -> None:
    storage = make("sp")
    storage.mkdirs()
    with pytest.raises(ConfigError) as err:
        storage.open_read("state/none.avro")
    assert "\n" not in str(err.value) and "none.avro" in str(err.value)


def _take(location: Any, logs: dict[tuple[str, int], list[Any]]) -> None:
    write_savepoint(location, description(), committed(), lambda t, p: logs.get((t, p), []),
                    outputs={"x": 1}, command="c1")  # fmt: skip


def test_a_whole_savepoint_round_trips_on_each_storage(make: Make, tmp_path: Path) -> None:
    logs = {("g.sessions.changelog", 0): _changes(ENTRIES["session"][:1]),
            ("g.sessions.changelog", 1): _changes(ENTRIES["session"][1:])}  # fmt: skip
    _take(make("sp"), logs)
    got = Savepoint(make("sp"))
    # The reference: the sessions as they went into the changelogs, task by task.
    want = [(t, key, w.start, w.end, w.acc) for t, entries in
            ((0, ENTRIES["session"][:1]), (1, ENTRIES["session"][1:]))
            for key, windows in entries for w in windows]  # fmt: skip
    rows = [(t, r["key"]["v"], r["start"], r["end"], r["acc"]) for t, r in got.rows("sessions")]
    assert rows == want
    assert got.manifest.state["sessions"]["keys"] == 2 and got.manifest.command == "c1"
    assert got.storage.list() == [
        "manifest.json", "state/sessions/task-0.avro", "state/sessions/task-1.avro"
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="not empty"):
        SavepointWriter(make("sp"))


def test_a_savepoint_without_its_manifest_is_never_read(make: Make) -> None:
    writer = SavepointWriter(make("sp"))
    schema = row_schema("session", "sessions", None)
    writer.write_rows("sessions", 0, "session", schema,
                      rows_from_entries("session", ENTRIES["session"], False))  # fmt: skip
    assert writer.storage.list() == ["state/sessions/task-0.avro"]
    with pytest.raises(ConfigError, match="is not a savepoint .no manifest.json"):
        Savepoint(make("sp"))
    with pytest.raises(ConfigError, match="does not exist"):
        Savepoint(make("never-written"))


def test_a_value_that_does_not_fit_leaves_no_state_file(make: Make) -> None:
    writer = SavepointWriter(make("sp"))
    schema = row_schema("fixed", "counts", savepoint_jobs.ACC_V1)
    rows = rows_from_entries("fixed", [(("t", 0), {"events": "many", "seeks": 0})], True)
    with pytest.raises(StateError, match="counts"):
        writer.write_rows("counts", 0, "fixed", schema, rows)
    assert writer.storage.list() == []


def test_a_missing_bucket_is_one_line_and_creates_nothing(s3_server: S3Server) -> None:
    storage = open_storage("s3://shoal-no-such-bucket/sp", s3_server.options())
    with pytest.raises(ConfigError) as err:
        SavepointWriter(storage)
    text = str(err.value)
    assert "\n" not in text and "bucket" in text and "s3://shoal-no-such-bucket/sp" in text
    with pytest.raises(ConfigError, match="bucket"):
        Savepoint(storage)


def test_secrets_never_show_in_errors(s3_server: S3Server) -> None:
    secret = "do-not-show-this-9f3k"
    options = {
        "endpoint_url": f"http://user:{secret}-url@127.0.0.1:1",
        "key": "AKIA-shown-nowhere",
        "secret": secret,
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    storage = open_storage("s3://bucket-x/sp", options)
    with pytest.raises(ConfigError) as err:
        storage.list()
    text = str(err.value)
    assert "cannot list s3://bucket-x/sp" in text and "\n" not in text
    assert secret not in text and "AKIA-shown-nowhere" not in text
    assert secret not in repr(storage)
    # A message that echoes a secret option's value has it masked.
    assert isinstance(storage, FsspecStorage)
    with pytest.raises(ConfigError) as echoed:
        storage._fail("cannot read", "x", OSError(f"denied for secret {secret} key"))
    assert secret not in str(echoed.value) and "***" in str(echoed.value)


def test_a_missing_s3fs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now raises ImportError
    with pytest.raises(ConfigError) as err:
        open_storage("s3://bucket/sp")
    assert str(err.value) == S3_EXTRA
    assert S3_EXTRA == "s3:// savepoints need the s3 extra: pip install 'shoal[s3]'"
    # Local folders need no extra at all.
    assert isinstance(open_storage("savepoints/a"), LocalStorage)


def test_an_unknown_protocol_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        open_storage("nosuchfs://bucket/sp")
    assert "\n" not in str(err.value) and "nosuchfs" in str(err.value)


def test_storage_options_parse() -> None:
    assert parse_storage_options(
        ["endpoint_url=http://127.0.0.1:9000", "anon=false", "n=8",
         'client_kwargs={"region_name": "eu-west-1"}', "secret=a=b"]
    ) == {"endpoint_url": "http://127.0.0.1:9000", "anon": False, "n": 8,
          "client_kwargs": {"region_name": "eu-west-1"}, "secret": "a=b"}  # fmt: skip
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_storage_options(["no-equals-sign"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_storage_options(["=value"])


def test_the_s3_endpoint_setting_applies_to_s3_only(s3_server: S3Server) -> None:
    s3 = open_storage("s3://b-x/sp", {}, s3_endpoint_url=s3_server.endpoint)
    assert isinstance(s3, FsspecStorage)
    assert s3.fs.client_kwargs.get("endpoint_url", s3.fs.endpoint_url) == s3_server.endpoint
    given = open_storage("s3://b-x/sp", {"endpoint_url": "http://127.0.0.1:9"},
                         s3_endpoint_url=s3_server.endpoint)  # fmt: skip
    assert isinstance(given, FsspecStorage) and given.fs.endpoint_url == "http://127.0.0.1:9"
    local = open_storage("sp", {}, s3_endpoint_url=s3_server.endpoint)
    assert isinstance(local, LocalStorage)


def test_state_dump_and_diff_read_s3_savepoints(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.create_bucket()
    logs = {("g.sessions.changelog", 0): _changes(ENTRIES["session"][:1]),
            ("g.sessions.changelog", 1): _changes(ENTRIES["session"][1:])}  # fmt: skip
    # As the command line opens it: SHOAL_S3_ENDPOINT_URL and the AWS_* variables.
    _take(savepoint_storages([f"s3://{bucket}/a"], {})[0], logs)
    _take(tmp_path / "local", logs)
    runner = CliRunner()
    dumped = runner.invoke(cli, ["state", "dump", f"s3://{bucket}/a", "sessions"])
    assert dumped.exit_code == 0, dumped.output
    rows = [json.loads(line) for line in dumped.stdout.splitlines()]
    want = [(key, w.start, w.acc) for key, windows in ENTRIES["session"] for w in windows]
    assert [(r["key"], r["start"], r["acc"]) for r in rows] == want
    local = runner.invoke(cli, ["state", "dump", str(tmp_path / "local"), "sessions"])
    assert local.stdout == dumped.stdout
    same = runner.invoke(cli, ["state", "diff", f"s3://{bucket}/a", str(tmp_path / "local")])
    assert same.exit_code == 0, same.output
    # The same with the endpoint given as an option instead of the variable.
    monkeypatch.delenv("SHOAL_S3_ENDPOINT_URL")
    endpoint = f"endpoint_url={s3_server.endpoint}"
    option = runner.invoke(
        cli, ["state", "dump", f"s3://{bucket}/a", "sessions", "--storage-option", endpoint]
    )
    assert option.exit_code == 0 and option.stdout == dumped.stdout, option.output
    # Options for a local folder only are refused, not dropped.
    refused = runner.invoke(cli, ["state", "dump", str(tmp_path / "local"), "sessions",
                                  "--storage-option", "anon=true"])  # fmt: skip
    assert refused.exit_code != 0 and "applies to savepoint URLs" in refused.output


def test_a_supervisors_workers_get_no_savepoint_options() -> None:
    from runtime.cli.native import _strip_workers

    args = ["run", "j:job", "--workers", "2", "--from-savepoint", "s3://b/sp",
            "--storage-option", "secret=x", "--storage-option=key=y", "--group", "g"]  # fmt: skip
    assert _strip_workers(args) == ["run", "j:job", "--group", "g"]


def test_doctests() -> None:
    import doctest

    from runtime.savepoint import storage

    result = doctest.testmod(storage)
    assert result.attempted > 0 and result.failed == 0
