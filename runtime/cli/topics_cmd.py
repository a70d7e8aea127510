"""``shoal topics`` and ``shoal tail``."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import click

from runtime.cli.common import codecs, kafka_options, registry_option, resolve_client, resolve_wire


@click.group(invoke_without_command=True)
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@kafka_options
@click.pass_context
def topics(ctx: click.Context, bootstrap: str | None) -> None:
    """List topics (or create one: shoal topics create NAME)."""
    ctx.obj = bootstrap
    if ctx.invoked_subcommand is None:
        from connectors.kafka.admin import KafkaAdmin

        for name, parts in sorted(KafkaAdmin(resolve_client(bootstrap)).topics().items()):
            click.echo(f"{name}\t{parts} partition(s)")


@topics.command("create")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--compact", is_flag=True, help="cleanup.policy=compact")
@click.pass_obj
def create(bootstrap: str | None, name: str, partitions: int, compact: bool) -> None:
    """Create topic NAME if it does not exist."""
    from connectors.kafka.admin import KafkaAdmin, TopicSpec

    config = {"cleanup.policy": "compact"} if compact else {}
    made = KafkaAdmin(resolve_client(bootstrap)).ensure_topics(
        [TopicSpec(name, partitions, config=config)]
    )
    click.echo(f"created {name}" if made else f"{name} already exists")


def _printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _unknown_schema(data: bytes | None, value: Any) -> bool:
    """A single-object Avro record whose fingerprint no schema here has (shown as hex)."""
    return data is not None and data[:2] == b"\xc3\x01" and value == data.hex()


@click.command()
@click.argument("topic")
@click.option(
    "--schema",
    default=None,
    help="Avro record name to decode with; default: found from the bytes (single-object "
    "encoding by fingerprint, schema registry framing by id with --schema-registry), else "
    "JSON, else hex.",
)
@click.option(
    "--count", "-n", type=click.IntRange(min=1), default=None, help="Stop after this many records."
)
@click.option(
    "--schemas",
    "schema_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="DIR",
    help="A folder of a job's own *.avsc schemas (repeatable; also SHOAL_SCHEMA_PATH), "
    "e.g. myjob/schemas for a project that shoal init made.",
)
@click.option("--from-beginning", is_flag=True, help="Read from the start, not the end.")
@click.option("--timeout", type=float, default=None, help="Stop after this many idle seconds.")
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@kafka_options
@registry_option
def tail(
    topic: str,
    schema: str | None,
    schema_dirs: tuple[Path, ...],
    count: int | None,
    from_beginning: bool,
    timeout: float | None,
    bootstrap: str | None,
) -> None:
    """Decode and print records of TOPIC as JSON lines."""
    from connectors.kafka.admin import KafkaAdmin
    from connectors.kafka.source import KafkaSource
    from runtime.api.errors import ConfigError

    client = resolve_client(bootstrap)
    if topic not in KafkaAdmin(client).topics():
        raise ConfigError(f"topic {topic!r} does not exist on {client.bootstrap} (shoal topics)")
    from connectors.wire import EndpointCodecs

    decoders = EndpointCodecs(codecs(schema_dirs), resolve_wire(), {}, {})
    decode = decoders.any_decoder(schema)
    source = KafkaSource(
        client,
        f"shoal-tail-{time.time_ns()}",
        [topic],
        read_committed=True,
        extra={
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
        },
    )
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    seen, idle_since, hinted = 0, time.monotonic(), False
    try:
        while not stop["now"]:
            msgs = source.poll(500, 0.2)
            if not msgs:
                if timeout is not None and time.monotonic() - idle_since > timeout:
                    break
                continue
            idle_since = time.monotonic()
            for m in msgs:
                value = decode(m.value())
                if not hinted and _unknown_schema(m.value(), value):
                    hinted = True
                    click.echo(
                        "tail: a record's Avro schema is not known here, so it shows as hex: "
                        "add its folder with --schemas DIR (or SHOAL_SCHEMA_PATH)",
                        err=True,
                    )
                line = {
                    "partition": m.partition(),
                    "offset": m.offset(),
                    "key": (m.key() or b"").decode("utf-8", "replace"),
                    "value": value,
                }
                click.echo(json.dumps(line, default=_printable))
                seen += 1
                if count is not None and seen >= count:
                    return
    finally:
        source.close()
        decoders.close()
