"""Wire formats of a job's endpoints: which framing each source and sink writes, and the
schema registry behind the Confluent framing.

=================== ============================================================
choice               meaning
=================== ============================================================
``single-object``    Avro single-object encoding (``C3 01`` + fingerprint), resolved
                     against ``schemas/``: needs no registry
``confluent``        schema registry framing (``00`` + 4-byte id), the writer
                     schema registered under a subject at start
=================== ============================================================

The default is ``confluent`` when a schema registry is configured and
``single-object`` otherwise; ``--wire-format FORMAT`` changes it for every endpoint and
``--wire-format NAME=FORMAT`` for one source or sink. Subjects follow
``--subject-strategy [NAME=]topic|record|topic-record`` (default ``topic``:
``<topic>-value``; see :mod:`connectors.avro.subjects`).

Sources read both framings whatever their choice says (by the first byte, see
:mod:`connectors.avro.framing`); a registry-framed record needs a registry, and without
one is dead-lettered saying so. Sinks write their choice. Sinks without a schema stay
JSON, and dead letters stay single-object (Shoal's own records, readable without a
registry).

:meth:`EndpointCodecs.prepare` registers (or looks up) the schema of every ``confluent``
sink before a job reads anything: a schema the registry refuses stops the job at start
with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.avro import (
    CONFLUENT,
    DEFAULT_STRATEGY,
    SINGLE_OBJECT,
    AvroSerde,
    MagicByteSerde,
    RegistryConfig,
    RegistryLookup,
    RegistrySerde,
    SchemaRepository,
    check_format,
    check_strategy,
    schema_id_of,
    subject_name,
)
from connectors.avro.serde import FrameError
from connectors.codecs import AvroCodec, CodecFactory
from runtime.api.errors import ConfigError, ShoalError
from runtime.api.redact import redact_url

__all__ = ["EndpointCodecs", "WireConfig", "parse_choices"]


def parse_choices(
    items: Iterable[str], check: Callable[[str], str], option: str
) -> tuple[str | None, dict[str, str]]:
    """``[NAME=]VALUE`` options as (the value for every endpoint, values by name).

    >>> parse_choices(["confluent", "in=single-object"], check_format, "--wire-format")
    ('confluent', {'in': 'single-object'})

    Raises:
        ConfigError: a value ``check`` refuses, or an empty name.
    """
    everywhere: str | None = None
    named: dict[str, str] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if sep and not name:
            raise ConfigError(f"{option} {item!r}: expected VALUE or NAME=VALUE")
        check(value)
        if sep:
            named[name] = value
        else:
            everywhere = value
    return everywhere, named


@dataclass(frozen=True)
class WireConfig:
    """Framing and subject naming of a job's endpoints, and the registry.

    Args:
        registry: the schema registry, if any.
        format: the framing of every endpoint not in ``formats``; ``None``: ``confluent``
            with a registry, ``single-object`` without.
        formats: framing by source or sink name.
        strategy: the subject naming strategy of every endpoint not in ``strategies``.
        strategies: subject naming strategy by source or sink name.

    Raises:
        ConfigError: an unknown format or strategy, or ``confluent`` without a registry.
    """

    registry: RegistryConfig | None = None
    format: str | None = None
    formats: Mapping[str, str] = field(default_factory=dict)
    strategy: str = DEFAULT_STRATEGY
    strategies: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        chosen = [f for f in (self.format, *self.formats.values()) if f is not None]
        for value in chosen:
            check_format(value)
        for value in (self.strategy, *self.strategies.values()):
            check_strategy(value)
        if self.registry is None and CONFLUENT in chosen:
            raise ConfigError(
                "wire format 'confluent' needs a schema registry: pass --schema-registry URL "
                "(or set SHOAL_SCHEMA_REGISTRY_URL)"
            )

    @classmethod
    def from_options(
        cls,
        registry: RegistryConfig | None,
        formats: Iterable[str] = (),
        strategies: Iterable[str] = (),
    ) -> WireConfig:
        """From ``--wire-format [NAME=]FORMAT`` and ``--subject-strategy [NAME=]STRATEGY``.

        Raises:
            ConfigError: a malformed or unknown choice.
        """
        fmt, by_name = parse_choices(formats, check_format, "--wire-format")
        strategy, strategy_by_name = parse_choices(strategies, check_strategy, "--subject-strategy")
        return cls(registry, fmt, by_name, strategy or DEFAULT_STRATEGY, strategy_by_name)

    def format_of(self, name: str) -> str:
        """The framing an endpoint writes."""
        chosen = self.formats.get(name, self.format)
        if chosen is not None:
            return chosen
        return CONFLUENT if self.registry is not None else SINGLE_OBJECT

    def strategy_of(self, name: str) -> str:
        """The subject naming strategy of an endpoint."""
        return self.strategies.get(name, self.strategy)

    def check_names(self, known: Iterable[str], what: str) -> None:
        """Every named choice must name one of ``known``.

        Raises:
            ConfigError: one names something else (the message lists the known names).
        """
        names = sorted(set(known))
        for option, given in (
            ("--wire-format", self.formats),
            ("--subject-strategy", self.strategies),
        ):
            unknown = sorted(n for n in given if n not in names)
            if unknown:
                raise ConfigError(
                    f"{option} {unknown[0]}=...: {what} has no source or sink {unknown[0]!r} "
                    f"(known: {', '.join(names) or 'none'})"
                )


class EndpointCodecs:
    """The codecs of one job's sources and sinks under a :class:`WireConfig`.

    Args:
        base: the single-object codecs (and JSON for ``""``) over the job's schemas.
        wire: framings, subject strategies and the registry.
        sources: topic by source name.
        sinks: topic by Kafka sink name.
        owner: what the endpoints belong to, for messages (``job 'qoe'``).
        client: a registry client to share instead of connecting one for ``wire``.

    Raises:
        ConfigError: a choice names no endpoint, or the registry settings are refused.
    """

    def __init__(
        self,
        base: CodecFactory,
        wire: WireConfig,
        sources: Mapping[str, str],
        sinks: Mapping[str, str],
        owner: str = "the job",
        *,
        client: Any = None,
    ) -> None:
        wire.check_names([*sources, *sinks], owner)
        self.base = base
        self.wire = wire
        self.repository: SchemaRepository = base.repository
        self._topics = {**sources, **sinks}
        self._sink_names = set(sinks)
        self._owns_client = wire.registry is not None and client is None
        if wire.registry is None:
            client = None
        elif client is None:
            client = wire.registry.connect()
        self.client: Any = client
        self.lookup = RegistryLookup(self.client) if self.client is not None else None
        self._codecs: dict[tuple[str, str, str], Any] = {}
        self._writers: dict[str, RegistrySerde] = {}
        self._sink_schemas: dict[str, str] = {}

    def close(self) -> None:
        """Close the registry client's connections (a client given to us stays open)."""
        if self._owns_client and self.client is not None:
            self.client.close()

    def __call__(self, schema: str) -> Any:
        """Internal records (dead letters): single-object, readable without a registry."""
        return self.base(schema)

    def knows(self, schema: str) -> bool:
        """Whether ``schema`` names a known record (or is ``""``, JSON)."""
        return self.base.knows(schema)

    def source(self, name: str, schema: str) -> Any:
        """The codec of source ``name``: reads both framings."""
        return self._endpoint("source", name, schema)

    def sink(self, name: str, schema: str) -> Any:
        """The codec of sink ``name``: writes its framing, reads both."""
        return self._endpoint("sink", name, schema)

    def _endpoint(self, role: str, name: str, schema: str) -> Any:
        key = (role, name, schema)
        codec = self._codecs.get(key)
        if codec is None:
            if schema and self.client is not None:
                codec = AvroCodec(self._serde(name, schema))
            else:  # JSON, or single-object only: the plain codec, nothing in between
                codec = self.base(schema)
            self._codecs[key] = codec
        return codec

    def _serde(self, name: str, schema: str) -> MagicByteSerde:
        single = AvroSerde(schema, self.repository)
        registry = None
        if self.client is not None and self.wire.registry is not None:
            topic = self._topics.get(name, name)
            registry = RegistrySerde(
                schema,
                self.repository,
                self.client,
                subject_name(self.wire.strategy_of(name), topic, single.schema.name),
                auto_register=self.wire.registry.auto_register,
                lookup=self.lookup,
            )
        confluent = self.wire.format_of(name) == CONFLUENT
        if confluent and registry is not None and name in self._sink_names:
            self._writers[name] = registry
        return MagicByteSerde(registry if confluent and registry else single, single, registry)

    def prepare(self, sinks: Iterable[tuple[str, str]]) -> list[str]:
        """Register (or look up) the schema of every ``confluent`` sink, now.

        Args:
            sinks: ``(name, schema)`` of the Kafka sinks.

        Returns:
            One description per registered sink (``"out: subject 'out-value', id 3"``).

        Raises:
            ConfigError: the registry refuses a schema (one line: schema, subject, reason).
            ConnectorError: the registry cannot be reached.
        """
        done = []
        for name, schema in sinks:
            self._sink_schemas[name] = schema
            if not schema or self.wire.format_of(name) != CONFLUENT:
                continue
            self.sink(name, schema)
            writer = self._writers[name]
            done.append(f"{name}: subject {writer.subject!r}, id {writer.register()}")
        return done

    def describe(self) -> str:
        """The registry and each sink's framing (``json`` for sinks without a schema, as
        :meth:`prepare` saw them), for start-up lines, no secrets; ``""`` without a
        registry (everything is single-object then)."""
        if self.wire.registry is None:
            return ""
        sinks = ", ".join(
            f"{n}={self.wire.format_of(n) if self._sink_schemas.get(n, '?') else 'json'}"
            for n in self._topics
            if n in self._sink_names
        )
        return f"schema registry {redact_url(self.wire.registry.url)}; sinks: {sinks or 'none'}"

    def any_decoder(self, schema: str | None) -> Callable[[bytes | None], Any]:
        """A forgiving decoder for ``shoal tail``: registry framing too.

        With ``schema``, records of either framing are read into it (a bad record raises
        ``DecodeError``). Without, a registry-framed record is decoded with its own writer
        schema (or shown with the reason it cannot be); anything else as
        :meth:`connectors.codecs.CodecFactory.any_decoder` does.
        """
        fallback = self.base.any_decoder(None)
        if schema:
            serde = self._serde("", schema)
            return lambda data: None if data is None else serde.decode(data)
        lookup = self.lookup
        if lookup is None:
            return fallback
        by_id: dict[int, RegistrySerde] = {}

        def decode(data: bytes | None) -> Any:
            schema_id = None if data is None else schema_id_of(data)
            if data is None or schema_id is None:
                return fallback(data)
            try:
                serde = by_id.get(schema_id) or self._writer_serde(lookup, schema_id)
                by_id[schema_id] = serde
                return serde.decode(data)
            except (FrameError, ShoalError) as exc:  # show why, keep tailing
                return {"undecodable": str(exc), "hex": data.hex()}

        return decode

    def _writer_serde(self, lookup: RegistryLookup, schema_id: int) -> RegistrySerde:
        """A serde that reads records of ``schema_id`` with that very schema."""
        repository = SchemaRepository([lookup.writer(schema_id)])
        (name,) = repository.names
        return RegistrySerde(name, repository, lookup.client, "", lookup=lookup)
