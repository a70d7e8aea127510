"""The worker's transport on the real broker: aborted checkpoints leave no trace, and
changelogs read back committed records only."""

from __future__ import annotations

import pytest

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.source import KafkaSource
from connectors.kafka.transport import ChangelogReader, KafkaTransport
from runtime.api.errors import ConnectorError
from tests.integration.helpers import read_all, unique


def test_an_aborted_checkpoint_does_not_fail_the_next_one(kafka: str) -> None:
    """Records purged by an abort are not reported as failures of the next commit.

    A checkpoint that loses a race with a rebalance is aborted while records are
    still queued in the client; their "purged" delivery reports must not be taken
    for delivery failures of the transaction that commits after the rewind.
    """
    inp, out = unique("tx-in"), unique("tx-out")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(inp, 1), TopicSpec(out, 2)])
    source = KafkaSource(kafka, unique("tx-group"), [inp])
    # A long linger keeps the first batch queued in the client when the abort comes.
    transport = KafkaTransport(kafka, source, exactly_once=True, linger_ms=2_000)
    try:
        transport.write_many(out, [(b"a%d" % i, b"aborted", None) for i in range(5_000)])
        transport.abort()
        transport.write_many(out, [(b"c%d" % i, b"committed", None) for i in range(300)])
        transport.commit({})  # raised StateError("... Purged in queue") before the fix
        transport.write(out, b"last", b"committed")
        transport.commit({})
    finally:
        transport.close()
        source.close()
    values = [m.value() for m in read_all(kafka, out)]
    assert len(values) == 301
    assert set(values) == {b"committed"}


def test_changelog_partitions_are_read_together_committed_only_and_in_order(kafka: str) -> None:
    """``read_many`` hands over every committed record of each partition once, oldest
    first, in chunks no larger than asked; aborted records, a partition holding only
    aborted ones and an empty partition give nothing."""
    inp, log = unique("cl-in"), unique("cl")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(inp, 1), TopicSpec(log, 4)])
    source = KafkaSource(kafka, unique("cl-group"), [inp])
    transport = KafkaTransport(kafka, source, exactly_once=True)
    expected: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 1: []}
    try:
        for round_ in range(3):
            for partition in (0, 1):
                for i in range(9 + partition * 5):
                    key, value = b"k%d" % (i % 4), (None if i % 5 == 4 else b"v%d.%d" % (round_, i))
                    transport.write(log, key, value, partition=partition)
                    expected[partition].append((key, value))
            transport.commit({})
            for partition in (0, 1, 2):
                transport.write(log, b"gone", b"aborted", partition=partition)
            transport.abort()
    finally:
        transport.close()
        source.close()
    pairs = [(log, p) for p in range(4)]
    got: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
    offsets: dict[tuple[str, int], list[int]] = {}
    for tp, chunk in ChangelogReader(kafka).read_many(pairs, chunk=7):
        assert 0 < len(chunk) <= 7
        got.setdefault(tp, []).extend((k, v) for k, v, _ in chunk)
        offsets.setdefault(tp, []).extend(o for _, _, o in chunk)
    assert set(got) == {(log, 0), (log, 1)}
    for partition in (0, 1):
        assert got[(log, partition)] == expected[partition]
        assert offsets[(log, partition)] == sorted(offsets[(log, partition)])
    # One partition alone reads the same records.
    assert [(k, v) for k, v, _ in ChangelogReader(kafka).read(log, 1)] == expected[1]


def test_a_restore_during_the_fencing_of_a_predecessor_reads_committed_records_only(
    kafka: str,
) -> None:
    """A restarted worker's transport starts its transactions (fencing the killed
    one's open transaction) while its state restores: the restore reads what the
    predecessor committed, never what its open transaction holds, and the new
    transport commits once the fencing is done."""
    inp, log = unique("fence-in"), unique("fence-cl")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(inp, 1), TopicSpec(log, 2)])
    tid = unique("fence-tx")
    old_source = KafkaSource(kafka, unique("fence-group"), [inp])
    old = KafkaTransport(kafka, old_source, exactly_once=True, transactional_id=tid)
    for i in range(200):
        old.write(log, b"k%d" % (i % 7), b"committed-%d" % i, partition=i % 2)
    old.commit({})
    for i in range(300):
        old.write(log, b"k%d" % (i % 7), b"open", partition=i % 2)
    old.flush()  # on the broker, in a transaction that never commits
    source = KafkaSource(kafka, unique("fence-group"), [inp])
    new = KafkaTransport(kafka, source, exactly_once=True, transactional_id=tid)
    try:
        restored = [
            v
            for _, chunk in ChangelogReader(kafka).read_many([(log, 0), (log, 1)])
            for _, v, _ in chunk
        ]
        assert sorted(restored) == sorted(b"committed-%d" % i for i in range(200))
        new.write(log, b"k0", b"after", partition=0)
        new.commit({})
    finally:
        new.close()
        source.close()
        old.close()  # fenced: its abort fails quietly
        old_source.close()
    values = [m.value() for m in read_all(kafka, log)]
    assert b"open" not in values and values.count(b"after") == 1 and len(values) == 201


def test_transactions_that_cannot_start_fail_the_first_write(kafka: str) -> None:
    """The transactions start on a thread; a refusal (here a transaction timeout the
    broker does not allow) is raised, as one clear error, by the first write."""
    inp, out = unique("refused-in"), unique("refused-out")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(inp, 1), TopicSpec(out, 1)])
    source = KafkaSource(kafka, unique("refused-group"), [inp])
    transport = KafkaTransport(
        kafka, source, exactly_once=True, transaction_timeout_ms=24 * 3_600_000
    )
    try:
        with pytest.raises(ConnectorError, match="cannot start the worker's transactions"):
            transport.write(out, b"k", b"v")
    finally:
        transport.close()
        source.close()
