"""Schema evolution: every committed version of every schema stays readable.

For each ``schemas/*.avsc`` the test takes every version of that file in the
git history and checks that the current file can read data written with it. A
file with no history yet is checked against itself. The checker itself is
tested too: it must catch breaking changes and accept safe ones. Last, the fast
evolution path (decode as written, then reshape) must give exactly what
fastavro's full resolution gives.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import schemas
from connectors.avro import (
    AvroSerde,
    SchemaRepository,
    _fastavro,
    check_backward_compatible,
    sample_datums,
)
from connectors.avro.datums import tagged_sample_datums
from connectors.avro.projection import compile_projection, identity
from connectors.avro.schema_tree import normalize

REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError as exc:
        pytest.fail(f"git is needed to check schema history but cannot run: {exc}")


def committed_versions(relative: str, root: Path = REPO_ROOT) -> list[tuple[str, dict[str, Any]]]:
    """Every committed version of a file, newest first, as ``(commit, schema)``.

    Fails the test (never skips) when git or the repository is unavailable.
    """
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        pytest.fail(f"the project folder is not a git work tree: {inside.stderr.strip()}")
    if _git(root, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        return []  # a repository without commits: no history yet
    log = _git(root, "log", "--format=%H", "--", relative)
    if log.returncode != 0:
        pytest.fail(f"git log failed for {relative}: {log.stderr.strip()}")
    versions = []
    for commit in log.stdout.split():
        shown = _git(root, "show", f"{commit}:{relative}")
        if shown.returncode != 0:
            continue  # the commit deleted the file
        versions.append((commit, json.loads(shown.stdout)))
    return versions


def test_the_schemas_folder_is_not_empty() -> None:
    assert schemas.schema_names(), "no .avsc files in schemas/"


@pytest.mark.parametrize("name", schemas.schema_names())
def test_current_schema_reads_every_committed_version(name: str) -> None:
    current = schemas.load_schema(name)
    versions = committed_versions(f"schemas/{name}.avsc") or [("working copy", current)]
    failures = []
    for commit, old in versions:
        problems = check_backward_compatible(old, current)
        if problems:
            failures.append(f"version {commit[:12]}:\n  " + "\n  ".join(problems))
    assert not failures, f"schemas/{name}.avsc cannot read older data:\n" + "\n".join(failures)


def test_history_reader_finds_every_committed_version(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        ident = ["-c", "user.name=shoal-test", "-c", "user.email=test@example.invalid"]
        ident += ["-c", "commit.gpgsign=false"]
        done = _git(tmp_path, *ident, *args)
        assert done.returncode == 0, done.stderr

    git("init", "-q")
    assert committed_versions("schemas/Event.avsc", tmp_path) == []
    (tmp_path / "schemas").mkdir()
    schema_file = tmp_path / "schemas" / "Event.avsc"
    breaking = added({"name": "region", "type": "string"})
    for version in (BASE, SAFE["int to long"], breaking):
        schema_file.write_text(json.dumps(version))
        git("add", "schemas/Event.avsc")
        git("commit", "-q", "--no-verify", "-m", "schema change")
    versions = committed_versions("schemas/Event.avsc", tmp_path)
    assert [schema for _, schema in versions] == [breaking, SAFE["int to long"], BASE]
    # The last commit broke compatibility with the two before it.
    assert check_backward_compatible(versions[1][1], breaking)
    assert check_backward_compatible(versions[2][1], breaking)


def test_missing_git_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match="git is needed"):
        committed_versions("schemas/PlaybackEvent.avsc")


# -- the checker itself -------------------------------------------------------

BASE: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "namespace": "test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "sizes", "type": {"type": "array", "items": "int"}},
        {"name": "labels", "type": {"type": "map", "values": "string"}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "blob", "type": "bytes"},
    ],
}


def changed(**fields: Any) -> dict[str, Any]:
    """BASE with some fields' types replaced (``None`` removes the field)."""
    schema = copy.deepcopy(BASE)
    out = []
    for field in schema["fields"]:
        if field["name"] not in fields:
            out.append(field)
        elif fields[field["name"]] is not None:
            out.append({**field, "type": fields[field["name"]]})
    schema["fields"] = out
    return schema


def added(field: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    schema["fields"].append(field)
    return schema


BREAKING = {
    "new field without default": (added({"name": "region", "type": "string"}), "region"),
    "removed enum symbol": (
        changed(kind={"type": "enum", "name": "Kind", "symbols": ["a", "b"]}),
        "lost symbols ['c']",
    ),
    "int to string": (changed(count="string"), "count: type changed from int to string"),
    "long to int": (changed(sizes={"type": "array", "items": "string"}), "sizes[]"),
    "union lost a branch": (changed(note=["null", "int"]), "note"),
    "fixed resized": (
        changed(digest={"type": "fixed", "name": "Digest", "size": 8}),
        "changed size from 4 to 8",
    ),
    "record renamed": ({**copy.deepcopy(BASE), "name": "Other"}, "renamed"),
}

SAFE = {
    "identical": BASE,
    "new field with default": added({"name": "region", "type": "string", "default": "eu"}),
    "new nullable field": added({"name": "extra", "type": ["null", "long"], "default": None}),
    "int to long": changed(count="long"),
    "int to double": changed(count="double"),
    "added enum symbol": changed(
        kind={"type": "enum", "name": "Kind", "symbols": ["a", "b", "c", "d"]}
    ),
    "removed enum symbol with enum default": changed(
        kind={"type": "enum", "name": "Kind", "symbols": ["a", "b"], "default": "a"}
    ),
    "removed field": changed(blob=None),
    "bytes to string": changed(labels={"type": "map", "values": "bytes"}),
    "field made nullable": changed(id=["null", "string"]),
    "record renamed with alias": {**copy.deepcopy(BASE), "name": "Other", "aliases": ["Event"]},
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_checker_catches_breaking_changes(case: str) -> None:
    new, mention = BREAKING[case]
    problems = check_backward_compatible(BASE, new)
    assert problems, f"{case} was not caught"
    assert any(mention in problem for problem in problems), problems


@pytest.mark.parametrize("case", sorted(SAFE))
def test_checker_accepts_safe_changes(case: str) -> None:
    assert check_backward_compatible(BASE, SAFE[case]) == []


def test_checker_reports_new_field_without_default_structurally_and_by_trying() -> None:
    problems = check_backward_compatible(BASE, added({"name": "region", "type": "string"}))
    assert any("region: new field has no default" in p for p in problems)
    assert any(p.startswith("sample 0 written with the old schema fails to read") for p in problems)


def test_checker_reports_invalid_schemas() -> None:
    assert check_backward_compatible(BASE, {"type": "record", "name": "X"})[0].startswith(
        "the new schema is invalid"
    )


# -- the sample generator -------------------------------------------------------

EVERYTHING: dict[str, Any] = {
    "type": "record",
    "name": "All",
    "namespace": "test",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "ratio", "type": "float"},
        {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": list("rgbcmyk")}},
        {
            "name": "choice",
            "type": ["null", "int", "string", "Colour", {"type": "array", "items": "long"}],
        },
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 3}},
        {"name": "raw", "type": "bytes"},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "double"]}},
        {
            "name": "next",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Node",
                    "fields": [
                        {"name": "value", "type": "int"},
                        {"name": "next", "type": ["null", "Node"]},
                    ],
                },
            ],
        },
    ],
}


def test_samples_are_deterministic_valid_and_cover_every_branch_and_symbol() -> None:
    samples = sample_datums(EVERYTHING)
    assert samples == sample_datums(EVERYTHING) != sample_datums(EVERYTHING, seed=1)
    assert len(samples) == 8
    assert {s["colour"] for s in samples} == set("rgbcmyk")
    kinds = {type(s["choice"]).__name__ for s in samples}
    assert kinds == {"NoneType", "int", "str", "list"}
    assert any(s["next"] is not None and s["next"]["next"] is not None for s in samples)
    serde = AvroSerde("All", SchemaRepository([EVERYTHING]))
    for sample in samples:
        serde.validate(sample)
    decoded, failures = serde.decode_batch(serde.encode_many(samples))
    assert not failures and len(decoded) == len(samples)


def test_tagged_samples_write_the_named_union_branch() -> None:
    tagged = tagged_sample_datums(EVERYTHING)
    assert ("test.Colour", "c") in [s["choice"] for s in tagged]
    assert ("test.Node", tagged[1]["next"][1]) == tagged[1]["next"]


# -- the fast evolution path agrees with fastavro's resolution ------------------

NESTED_OLD: dict[str, Any] = {
    "type": "record",
    "name": "Outer",
    "fields": [
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [{"name": "n", "type": "int"}, {"name": "gone", "type": "string"}],
                },
            },
        },
        {"name": "maybe", "type": ["null", "Item"]},
        {"name": "by_key", "type": {"type": "map", "values": "Item"}},
        {
            "name": "mood",
            "type": {"type": "enum", "name": "Mood", "symbols": ["up", "down", "odd"]},
        },
        {"name": "text", "type": "string"},
    ],
}
NESTED_NEW: dict[str, Any] = {
    "type": "record",
    "name": "Outer",
    "fields": [
        {
            "name": "mood",
            "type": {"type": "enum", "name": "Mood", "symbols": ["up", "down"], "default": "up"},
        },
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [
                        {"name": "n", "type": "double"},
                        {
                            "name": "tags",
                            "type": {"type": "array", "items": "string"},
                            "default": [],
                        },
                    ],
                },
            },
        },
        {"name": "maybe", "type": ["null", "Item"]},
        {"name": "by_key", "type": {"type": "map", "values": "Item"}},
        {"name": "body", "type": "bytes", "aliases": ["text"]},
    ],
}

FAST_PAIRS = {
    **{f"base: {case}": (BASE, new) for case, new in SAFE.items()},
    "nested records, enum default, alias, promotion": (NESTED_OLD, NESTED_NEW),
    "everything, same schema": (EVERYTHING, EVERYTHING),
}


@pytest.mark.parametrize("case", sorted(FAST_PAIRS))
def test_fast_evolution_path_equals_full_resolution(case: str) -> None:
    old, new = FAST_PAIRS[case]
    project = compile_projection(normalize(old), normalize(new))
    assert project is not None, "this common evolution should take the fast path"
    parsed_old = _fastavro.parse(old)
    as_written = _fastavro.read_plan(old)
    resolved = _fastavro.read_plan(old, new)
    for datum in tagged_sample_datums(old, 24, seed=5):
        buffer = io.BytesIO()
        _fastavro.write_body(buffer, parsed_old, datum)
        body = buffer.getvalue()
        expected = _fastavro.read_body(io.BytesIO(body), resolved)
        got = project(_fastavro.read_body(io.BytesIO(body), as_written))
        # repr: same values, same types (1 is not 1.0 here), same field order.
        assert repr(got) == repr(expected)


def test_identical_schemas_need_no_projection() -> None:
    assert compile_projection(normalize(BASE), normalize(copy.deepcopy(BASE))) is identity


@pytest.mark.parametrize(
    "new",
    [
        changed(note=["null", "string", "long"]),  # union reshaped
        changed(count={"type": "int", "logicalType": "date"}),  # a logical type appears
        added({"name": "at", "type": "bytes", "default": "\u00ff"}),  # non-scalar default
        changed(count="string"),  # incompatible: fastavro reports it per record
    ],
)
def test_unusual_evolutions_fall_back_to_full_resolution(new: dict[str, Any]) -> None:
    assert compile_projection(normalize(BASE), normalize(new)) is None


def test_fast_path_defaults_are_floats_and_fresh_objects() -> None:
    new = added({"name": "score", "type": "double", "default": 0})
    new["fields"].append({"name": "seen", "type": {"type": "array", "items": "int"}, "default": []})
    project = compile_projection(normalize(BASE), normalize(new))
    assert project is not None
    record = {field["name"]: None for field in BASE["fields"]}
    first, second = project(record), project(record)
    assert first["score"] == 0.0 and isinstance(first["score"], float)
    first["seen"].append(1)
    assert second["seen"] == []  # not one shared default list
