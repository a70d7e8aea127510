"""A job author's own record schemas: beside the built-in ones, checked in the test driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.avro import SchemaRepository
from connectors.codecs import codec_factory
from runtime import Job, Json
from runtime.api.errors import ConfigError, SchemaError
from runtime.testing import TestDriver

CLICK = {
    "type": "record",
    "name": "ButtonClick",
    "namespace": "acme.events",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "button", "type": "string"},
        {"name": "at_ms", "type": "long"},
        {"name": "region", "type": "string", "default": "eu"},
    ],
}


def write_schema(folder: Path, schema: dict, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name or schema['name']}.avsc").write_text(json.dumps(schema))
    return folder


def click_job(folder: Path) -> Job:
    job = Job("clicks", schemas=folder)
    (
        job.source("clicks", schema="ButtonClick", timestamp=lambda e: e["at_ms"])
        .map(lambda e: {"user": e["user_id"], "region": e["region"]}, name="project")
        .sink("out", Json())
    )
    return job


def test_user_folder_adds_records_beside_the_built_in(tmp_path: Path) -> None:
    repo = SchemaRepository.from_directories([write_schema(tmp_path / "s", CLICK)])
    assert "acme.events.ButtonClick" in repo.names
    assert "shoal.events.PlaybackEvent" in repo.names


def test_a_different_schema_under_a_taken_name_is_refused(tmp_path: Path) -> None:
    other = {**CLICK, "fields": CLICK["fields"][:2]}
    a = write_schema(tmp_path / "a", CLICK)
    b = write_schema(tmp_path / "b", other)
    with pytest.raises(ConfigError, match="ButtonClick"):
        SchemaRepository.from_directories([a, b])


def test_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        codec_factory([tmp_path / "nope"])


def test_driver_encodes_through_the_jobs_codec(tmp_path: Path) -> None:
    driver = TestDriver(click_job(write_schema(tmp_path / "s", CLICK)))
    driver.send("clicks", {"user_id": "u1", "button": "play", "at_ms": 1_700_000_000_000})
    # The default of a field the sender left out is filled in, as a worker would see it.
    assert driver.output("out") == [{"user": "u1", "region": "eu"}]
    with pytest.raises(SchemaError, match="button"):
        driver.send("clicks", {"user_id": "u2", "at_ms": 1_700_000_000_000})
    with pytest.raises(SchemaError, match="at_ms"):
        driver.send("clicks", {"user_id": "u3", "button": "x", "at_ms": "soon"})


def test_a_postgres_sink_makes_its_table_from_a_users_own_schema(tmp_path: Path) -> None:
    """The sink's columns come from the job's own record (handed over by the runner from
    the job's codecs); without it, only built-in records are known."""
    from connectors.external import make_external_sink
    from connectors.postgres import config_from_url

    codecs = codec_factory([write_schema(tmp_path, CLICK)])
    avro = codecs.repository.current("ButtonClick").schema
    url = "postgres://shoal@127.0.0.1:1/db?table=clicks&key=user_id,at_ms"
    table = config_from_url(url, "out", "ButtonClick", avro).table
    assert [c.name for c in table.columns] == ["user_id", "button", "at_ms", "region"]
    assert table.key == ("user_id", "at_ms")
    assert '"at_ms" bigint NOT NULL' in table.create_sql()
    with pytest.raises(ConfigError, match="no schema named 'ButtonClick'"):
        config_from_url(url, "out", "ButtonClick")
    sink = make_external_sink(url, "out", "ButtonClick", {}, avro=avro)  # no connection yet
    sink.close()
