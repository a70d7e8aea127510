"""Bindings: which topic each named source and sink of a job reads or writes.

Jobs name their inputs and outputs; bindings map the names to topics so the same job
runs on the local broker, a production cluster and Flink. Unbound names use the
name itself as the topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from runtime.api.errors import ConfigError
from runtime.api.job import Job
from runtime.api.redact import redact_text, redact_url


@dataclass(frozen=True, slots=True)
class Bindings:
    """Topic of every source, sink and table, and the dead-letter topic."""

    sources: Mapping[str, str] = field(default_factory=dict)
    sinks: Mapping[str, str] = field(default_factory=dict)
    dead_letters: str = ""
    tables: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def for_job(job: Job, overrides: Iterable[str] = ()) -> Bindings:
        """Default bindings of ``job``, changed by ``NAME=TOPIC`` overrides.

        Raises:
            ConfigError: an override is malformed or names no source or sink.
        """
        sources = {s.name: s.name for s in job.sources}
        sinks = {s.name: s.name for s in job.sinks}
        tables = {t.name: t.name for t in job.tables}
        dead = job.dead_letter_topic
        for item in overrides:
            name, sep, topic = item.partition("=")
            shown = redact_text(item)  # a URL target may hold a password or a secret
            if not sep or not name or not topic:
                raise ConfigError(f"binding {shown!r} must look like NAME=TOPIC or NAME=URL")
            if name in sources:
                sources[name] = topic
            elif name in sinks:
                sinks[name] = topic
            elif name in tables:
                tables[name] = topic
            elif name == "dead-letters":
                dead = topic
            else:
                known = ", ".join(sorted([*sources, *sinks, *tables, "dead-letters"]))
                raise ConfigError(
                    f"binding {shown!r}: job {job.name!r} has no source or sink "
                    f"{name!r} (known: {known})"
                )
        return Bindings(sources=sources, sinks=sinks, dead_letters=dead, tables=tables)

    def describe(self) -> str:
        """``source<-topic, ..., table<-topic (table), ... -> sink->target, ...`` for
        start-up lines, URLs redacted.

        >>> Bindings({"in": "t"}, {"out": "postgres://u:pw@db/x"}).describe()
        'in<-t -> out->postgres://u:***@db/x'
        """
        ins = ", ".join(
            [f"{n}<-{redact_url(t)}" for n, t in self.sources.items()]
            + [f"{n}<-{redact_url(t)} (table)" for n, t in self.tables.items()]
        )
        outs = ", ".join(f"{n}->{redact_url(t)}" for n, t in self.sinks.items())
        return f"{ins} -> {outs}"

    def topic_sources(self) -> dict[str, str]:
        """Topic -> source name."""
        out: dict[str, str] = {}
        for name, topic in self.sources.items():
            if topic in out:
                raise ConfigError(
                    f"sources {out[topic]!r} and {name!r} read the same topic {topic!r}"
                )
            out[topic] = name
        return out
