"""Where sink records are encoded, and what becomes of one its schema refuses.

A job's output can break its sink's schema (a required field missing, a field of the
wrong type): that is bad output, not a reason to stop the worker. Such a record is
dead-lettered like bad input, under the job's error policy, and the rest of the batch
is written:

* the dead letter's message is one line naming the sink, the schema and the field
  (``sink 'alerts', schema 'QoeAlert': rule: missing (required, string, no default)``);
* it holds the output record itself (its message key and value) and names the source
  record it came from (topic, partition and offset) when the sink's input still
  carries it (records a window or timer emits carry none);
* the sink counts it as ``dead_lettered`` instead of ``out``, so the sink keeps
  ``in = processed + late + dead_lettered``.

The worker's :class:`~runtime.engine.outputs.OutputWriter` writes the good records and
the dead letters in the same transaction; the test driver encodes through the same
function, so a test sees the same dead letter.
"""

from __future__ import annotations

from typing import Any

from runtime.api.errors import RecordError, RecordOrigin, SchemaError
from runtime.api.io import Codec
from runtime.engine.operators import Rec
from runtime.engine.task import Task
from runtime.engine.topics import message_key

__all__ = ["Encoded", "encode_sink_records"]

#: ``(message key, encoded value, event time ms)``, as the transport takes them.
Encoded = tuple[bytes | None, bytes, int | None]

# What encoding one bad record raises: the codecs' SchemaError, and what a key or a
# JSON value that cannot be written raises (e.g. a string with a lone surrogate).
# Anything else (a schema registry that is down: ConnectorError) is not the record's
# fault and stops the worker as before.
_BAD_RECORD = (RecordError, TypeError, ValueError, OverflowError, RecursionError)


def encode_sink_records(
    task: Task, sink: str, schema: str, codec: Codec, records: list[Rec]
) -> tuple[list[Encoded], list[Rec]]:
    """Encode a sink's records; dead-letter (per the error policy) those that do not fit.

    Args:
        task: the task whose sink wrote them (takes the dead letters and counts them).
        sink: the sink's name.
        schema: the sink's schema name (``""``: JSON).
        codec: the sink's codec.
        records: ``(key, value, event time, origin)`` records.

    Returns:
        The encoded good records, and the good records themselves (``records`` when
        all fit), both in order.

    Raises:
        SchemaError: a record does not fit and the job's error policy is ``FAIL``.
    """
    encode = codec.encode
    try:  # the common case: the whole batch fits, at the cost of one comprehension
        return [(message_key(k), encode(v), t) for k, v, t, _ in records], records
    except _BAD_RECORD:
        pass
    encoded: list[Encoded] = []
    good: list[Rec] = []
    counters = task.sinks[sink].counters
    for rec in records:
        k, v, t, origin = rec
        try:
            encoded.append((message_key(k), encode(v), t))
        except _BAD_RECORD as exc:
            counters.dead_lettered += 1
            counters.records_out -= 1
            error = SchemaError(_one_line(sink, schema, exc), origin=_origin(origin))
            task.dead_letter_output(sink, error, origin, _safe_key(k), v)
            continue
        good.append(rec)
    return encoded, good


def _one_line(sink: str, schema: str, exc: BaseException) -> str:
    """``sink 'out', schema 'QoeAlert': rule: missing ...``: the codec's own message
    names the field; its leading full schema name is replaced by the schema given."""
    reason = exc.reason if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"
    head, sep, rest = reason.partition(": ")
    if sep and schema and head.endswith(schema) and " " not in head:
        reason = rest
    what = f"schema {schema!r}" if schema else "JSON"
    return " ".join(f"sink {sink!r}, {what}: {reason}".split())


def _origin(origin: Any) -> RecordOrigin | None:
    if origin is None:
        return None
    return RecordOrigin(origin.topic(), origin.partition(), origin.offset())


def _safe_key(key: Any) -> bytes | None:
    """The message key of a dead-lettered record, or none when the key is what failed."""
    try:
        return message_key(key)
    except _BAD_RECORD:
        return None
