"""Broker errors a person can act on: one line with the cause and what to check.

librdkafka reports connection-level trouble (refused connections, TLS handshakes,
SASL authentication) through its error callback, not through the call that waits for
an answer: a client pointed at a wrong address or with a wrong password would wait for
its whole timeout and then say only "transport failure". :class:`ClientErrors` collects
those callbacks so a caller can stop at the first decisive one and say what it means.
"""

from __future__ import annotations

import threading
from typing import Any

from connectors.kafka.client import KafkaError
from runtime.api.redact import redact_text

__all__ = ["COORDINATOR_MOVING", "ClientErrors", "explain"]

#: A group's coordinator moving or still loading (a broker that has just started, a
#: leader change): a group request that fails with one of these passes when asked again.
COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)

# Errors that will not go away by waiting: report them at once.
_DECISIVE = {
    KafkaError._AUTHENTICATION: (
        "authentication failed",
        "check sasl.username, sasl.password and sasl.mechanism",
    ),
    KafkaError._SSL: (
        "TLS handshake failed",
        "check ssl.ca.location (the CA that signed the broker's certificate) and security.protocol",
    ),
    KafkaError._RESOLVE: ("cannot resolve the broker's host name", "check bootstrap.servers"),
    KafkaError.SASL_AUTHENTICATION_FAILED: (
        "authentication failed",
        "check sasl.username, sasl.password and sasl.mechanism",
    ),
    KafkaError.TOPIC_AUTHORIZATION_FAILED: (
        "not authorised for a topic",
        "the principal needs ACLs for the job's topics (docs/cluster.md: ACLs)",
    ),
    KafkaError.GROUP_AUTHORIZATION_FAILED: (
        "not authorised for the consumer group",
        "the principal needs READ on the job's group",
    ),
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: (
        "not authorised for the transactional id",
        "the principal needs WRITE on transactional ids prefixed with the job's group",
    ),
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: (
        "not authorised for the cluster operation",
        "ask for the cluster ACL the operation needs",
    ),
}
# Errors that may be passing (a broker restarting): wait, then report.
_TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}


class ClientErrors:
    """Collects a client's error callbacks (pass :meth:`callback` as ``error_cb``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisive: KafkaError | None = None
        self.last: KafkaError | None = None

    def callback(self, err: KafkaError) -> None:
        """librdkafka's ``error_cb``."""
        with self._lock:
            self.last = err
            if err.code() in _DECISIVE or err.fatal():
                self.decisive = self.decisive or err


def explain(err: Any, bootstrap: str, doing: str) -> str:
    """One line: what failed while ``doing`` at ``bootstrap``, why, and what to check."""
    code = err.code() if isinstance(err, KafkaError) else None
    text = redact_text(err.str() if isinstance(err, KafkaError) else str(err))
    if code in _DECISIVE:
        cause, advice = _DECISIVE[code]
        return f"{doing} on {bootstrap}: {cause} ({text}); {advice}"
    if code in _TRANSIENT:
        return (
            f"{doing}: cannot reach Kafka at {bootstrap} ({text}); check the address, that "
            "the brokers run, and security.protocol (a TLS listener needs SSL or SASL_SSL)"
        )
    if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return f"{doing} on {bootstrap}: the topic does not exist ({text})"
    return f"{doing} on {bootstrap}: {text}"
