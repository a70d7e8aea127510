"""The worker's transport on the real broker: aborted checkpoints leave no trace."""

from __future__ import annotations

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.source import KafkaSource
from connectors.kafka.transport import KafkaTransport
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
