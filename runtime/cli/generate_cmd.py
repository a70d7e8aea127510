"""``shoal generate``: simulated viewers -> Avro records on Kafka."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import click

from runtime.api.errors import ConfigError
from runtime.cli.common import codecs, kafka_options, resolve_client, resolve_wire, wire_options


def parse_degradation(text: str) -> tuple[str, int, int]:
    """``CDN:START_S:END_S`` -> (cdn, start ms, end ms) relative to the start."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--degrade {text!r} must look like CDN:START_S:END_S")
    try:
        return parts[0], int(float(parts[1]) * 1000), int(float(parts[2]) * 1000)
    except ValueError as exc:
        raise ConfigError(f"--degrade {text!r}: START_S and END_S must be numbers") from exc


@click.command()
@click.option(
    "--events",
    "-n",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="How many records to produce.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Records per second of wall time; 0 is as fast as possible.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same records.")
@click.option("--users", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--titles", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--start-ms", type=int, default=None, help="Event-time origin (epoch ms); default: now."
)
@click.option(
    "--live",
    is_flag=True,
    help="Start event time --lookback seconds before now, run at the simulated pace "
    "until it reaches the wall clock, then follow the wall clock (never ahead of it).",
)
@click.option(
    "--lookback",
    type=click.FloatRange(min=0),
    default=7200,
    show_default=True,
    help="With --live: seconds of simulated past before event time reaches now.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Partitions of topics created here.",
)
@click.option("--playback-topic", default="playback", show_default=True)
@click.option("--interactions-topic", default="interactions", show_default=True)
@click.option("--late-rate", type=click.FloatRange(0, 1), default=0.002, show_default=True)
@click.option("--duplicate-rate", type=click.FloatRange(0, 1), default=0.005, show_default=True)
@click.option("--malformed-rate", type=click.FloatRange(0, 1), default=0.001, show_default=True)
@click.option("--bad-timestamp-rate", type=click.FloatRange(0, 1), default=0.001, show_default=True)
@click.option("--out-of-order-ms", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option(
    "--degrade",
    multiple=True,
    metavar="CDN:START_S:END_S",
    help="Make one CDN bad for a stretch of event time (repeatable).",
)
@click.option("--bootstrap", default=None, help="Kafka address; default: the local broker.")
@kafka_options
@wire_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def generate(
    events: int,
    rate: float,
    seed: int,
    users: int,
    titles: int,
    start_ms: int | None,
    live: bool,
    lookback: float,
    partitions: int,
    playback_topic: str,
    interactions_topic: str,
    late_rate: float,
    duplicate_rate: float,
    malformed_rate: float,
    bad_timestamp_rate: float,
    out_of_order_ms: int,
    degrade: tuple[str, ...],
    bootstrap: str | None,
    quiet: bool,
) -> None:
    """Produce simulated playback and interaction events (Avro: single-object encoding, or
    schema registry framing with --schema-registry; the streams are named playback and
    interactions for --wire-format and --subject-strategy).

    Viewers with devices browse rows, start plays with startup delay, switch bitrate
    with their bandwidth, rebuffer, seek, pause, fail and stop. Out-of-order, late,
    duplicated, malformed and badly-timestamped records are mixed in at the given rates.

    Simulated time runs much faster than the wall clock (tens of times at a few
    thousand records per second), so by default it soon runs hours ahead of now. With
    ``--live`` it starts in the past and, once it has caught up, follows the wall clock
    forever: what ``shoal demo`` runs.
    """
    from tqdm import tqdm

    from connectors.kafka.admin import KafkaAdmin, TopicSpec
    from connectors.kafka.sink import KafkaSink
    from connectors.wire import EndpointCodecs
    from runtime.generator import Degradation, Generator, GeneratorConfig, corrupt_bytes

    server = resolve_client(bootstrap)
    topic = {"playback": playback_topic, "interactions": interactions_topic}
    schemas = {"playback": "PlaybackEvent", "interactions": "InteractionEvent"}
    streams = EndpointCodecs(codecs(), resolve_wire(), {}, topic, owner="shoal generate")
    try:
        for registered in streams.prepare(schemas.items()):
            click.echo(f"generator: schema registered for {registered}", err=True)
    finally:
        streams.close()  # encoding needs no registry once the ids are known
    if live and start_ms is not None:
        raise ConfigError("--live starts event time itself: leave out --start-ms")
    now_ms = time.time_ns() // 1_000_000
    origin = start_ms if start_ms is not None else now_ms - int(lookback * 1000) * live
    try:
        config = GeneratorConfig(
            seed=seed,
            users=users,
            titles=titles,
            start_ms=origin,
            out_of_order_ms=out_of_order_ms,
            late_rate=late_rate,
            duplicate_rate=duplicate_rate,
            malformed_rate=malformed_rate,
            bad_timestamp_rate=bad_timestamp_rate,
            degradations=tuple(Degradation(*parse_degradation(d)) for d in degrade),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    KafkaAdmin(server).ensure_topics(
        [TopicSpec(playback_topic, partitions), TopicSpec(interactions_topic, partitions)]
    )
    encoders = {name: streams.sink(name, schema).encode for name, schema in schemas.items()}
    sink = KafkaSink(server, linger_ms=50)
    rng = random.Random(seed ^ 0x5EED)
    counts: dict[str, int] = {}
    t0 = time.monotonic()
    caught_up = False
    bar = tqdm(
        total=events,
        unit="ev",
        disable=quiet,
        file=click.get_text_stream("stderr"),  # type: ignore[operator]
        mininterval=0.5,
    )
    try:
        for i, rec in enumerate(Generator(config)):
            if i >= events:
                break
            data = encoders[rec.stream](rec.value)
            if rec.corrupt is not None:
                data = corrupt_bytes(data, rec.corrupt, rng)
            if live and rec.label != "bad_timestamp":
                caught_up = _follow_clock(rec.value.get("event_time_ms"), caught_up, sink.poll)
            sink.write(topic[rec.stream], rec.key, data, None)
            counts[rec.label] = counts.get(rec.label, 0) + 1
            if i % 1000 == 999:
                bar.update(1000)
                sink.poll()
                if rate > 0:
                    ahead = (i + 1) / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        bar.update(events - bar.n)
        sink.flush()
    except KeyboardInterrupt:
        sink.flush()
    finally:
        bar.close()
    took = time.monotonic() - t0
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    click.echo(
        f"produced {sum(counts.values())} records in {took:.1f}s "
        f"({sum(counts.values()) / max(took, 1e-9):,.0f}/s): {summary}",
        err=True,
    )


def _follow_clock(event_time_ms: object, caught_up: bool, poll: Callable[[], None]) -> bool:
    """Wait until ``event_time_ms`` is not ahead of the wall clock; True once it was.

    Announces, once, that simulated time reached the wall clock (``--live``).
    """
    if not isinstance(event_time_ms, int):
        return caught_up
    ahead_ms = event_time_ms - time.time_ns() // 1_000_000
    if ahead_ms <= 0:
        return caught_up
    if not caught_up:
        click.echo(
            "generator: event time caught up with the wall clock; following it from now on",
            err=True,
        )
    while ahead_ms > 0:
        poll()  # serve delivery reports while waiting
        time.sleep(min(ahead_ms / 1000, 0.5))
        ahead_ms = event_time_ms - time.time_ns() // 1_000_000
    return True
