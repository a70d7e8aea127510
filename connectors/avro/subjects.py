"""Subject naming strategies: under which registry subject a topic's value schema lives.

The three strategies of Confluent's serializers, by the names Shoal's options take:

=============== ============================== ==================================
strategy         subject                        Confluent's class
=============== ============================== ==================================
``topic``        ``<topic>-value``              ``TopicNameStrategy`` (default)
``record``       ``<record full name>``         ``RecordNameStrategy``
``topic-record`` ``<topic>-<record full name>`` ``TopicRecordNameStrategy``
=============== ============================== ==================================

``topic`` gives a topic one schema lineage (compatibility checked per topic); ``record``
shares one lineage for a record type across every topic it is written to;
``topic-record`` lets a topic carry several record types, each with its own lineage.

>>> subject_name("topic", "qoe-metrics", "shoal.QoeMetric")
'qoe-metrics-value'
>>> subject_name("record", "qoe-metrics", "shoal.QoeMetric")
'shoal.QoeMetric'
>>> subject_name("topic-record", "qoe-metrics", "shoal.QoeMetric")
'qoe-metrics-shoal.QoeMetric'
"""

from __future__ import annotations

from typing import Final

from runtime.api.errors import ConfigError

__all__ = ["DEFAULT_STRATEGY", "SUBJECT_STRATEGIES", "check_strategy", "subject_name"]

#: Strategy names, the default first.
SUBJECT_STRATEGIES: Final = ("topic", "record", "topic-record")
DEFAULT_STRATEGY: Final = "topic"


def check_strategy(strategy: str) -> str:
    """``strategy`` if it is one of :data:`SUBJECT_STRATEGIES`.

    Raises:
        ConfigError: it is not; the message lists the valid ones.
    """
    if strategy not in SUBJECT_STRATEGIES:
        raise ConfigError(
            f"unknown subject naming strategy {strategy!r}; valid: {', '.join(SUBJECT_STRATEGIES)}"
        )
    return strategy


def subject_name(strategy: str, topic: str, record: str) -> str:
    """The subject of ``record`` values written to ``topic``.

    Args:
        strategy: one of :data:`SUBJECT_STRATEGIES`.
        topic: the Kafka topic.
        record: the record schema's full name (``namespace.Name``).

    Returns:
        The subject.

    Raises:
        ConfigError: unknown strategy.
    """
    check_strategy(strategy)
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        return record
    return f"{topic}-{record}"
