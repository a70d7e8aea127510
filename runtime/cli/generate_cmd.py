"""``shoal generate``: simulated viewers -> Avro records on Kafka."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from runtime.api.errors import ConfigError, ShoalError
from runtime.api.watermarks import DEFAULT_MAX_FUTURE_MS
from runtime.cli.common import codecs, kafka_options, resolve_client, resolve_wire, wire_options
from runtime.generator.pacing import Pacer


def parse_degradation(text: str) -> tuple[str, int, int]:
    """``CDN:START_S:END_S`` -> (cdn, start ms, end ms) relative to the start."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--degrade {text!r} must look like CDN:START_S:END_S")
    try:
        return parts[0], int(float(parts[1]) * 1000), int(float(parts[2]) * 1000)
    except ValueError as exc:
        raise ConfigError(f"--degrade {text!r}: START_S and END_S must be numbers") from exc


class SpeedupType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """``--speedup``: a positive number, or ``max``."""

    name = "speedup"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float) or value == MAX:
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'max'", param, ctx)
        if not number > 0:
            self.fail(f"{value!r} must be above 0 (1 is --realtime)", param, ctx)
        return number


MAX = "max"


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
    "--start-ms",
    type=int,
    default=None,
    help="Event-time origin (epoch ms) instead of now minus --lookback.",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Event time follows the wall clock (the default): once it has reached now, a "
    "record goes out when the clock reaches its event time.",
)
@click.option(
    "--speedup",
    type=SpeedupType(),
    default=None,
    metavar="N|max",
    help="Instead of --realtime: once event time has reached now, it runs N times as fast "
    "as the wall clock (30: half an hour a minute); max: as fast as --rate allows.",
)
@click.option(
    "--lookback",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Start event time this many seconds before now and replay that past as fast as "
    "--rate allows before following the clock.",
)
@click.option("--live", is_flag=True, hidden=True, help="Former name of --realtime.")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Partitions of topics created here.",
)
@click.option("--playback-topic", default="playback", show_default=True)
@click.option("--interactions-topic", default="interactions", show_default=True)
@click.option(
    "--catalogue-topic",
    default="title-catalogue",
    show_default=True,
    help="Compacted topic the title catalogue (TitleCatalogEntry records keyed by title id, "
    "the titles the events name) is written to before the events; '' skips it.",
)
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
    realtime: bool,
    speedup: float | str | None,
    lookback: float,
    live: bool,
    partitions: int,
    playback_topic: str,
    interactions_topic: str,
    catalogue_topic: str,
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
    The titles they name are first written to --catalogue-topic (a compacted topic, one
    TitleCatalogEntry per title: genre, kind, duration), for jobs that look them up.

    \b
    How event time advances:
      - It starts now (or --lookback seconds ago, or at --start-ms). The past, if any,
        is replayed as fast as --rate allows.
      - From then on it follows the wall clock (--realtime, the default): it is never
        ahead of now, so every run, a second one too, continues at the present and the
        jobs reading it see it as on time. --speedup N runs it N times as fast as the
        clock instead (it gets ahead of now), --speedup max as fast as --rate allows.
      - The simulation sets how many records an event-time second holds (about 47 for
        1,000 users): in real time --users sets the rate, --rate caps it.
      - It warns, once, when event time gets more than 10 minutes ahead of the clock
        (jobs dead-letter such records by default) and, at the start, when it starts
        behind the watermark of a job reading the topics (its windows would see the
        records as late).
    """
    from tqdm import tqdm

    from connectors.kafka.admin import KafkaAdmin, TopicSpec
    from connectors.kafka.sink import KafkaSink
    from connectors.wire import EndpointCodecs
    from runtime.generator import (
        Degradation,
        Generator,
        GeneratorConfig,
        catalogue_entries,
        corrupt_bytes,
    )

    server = resolve_client(bootstrap)
    topic = {"playback": playback_topic, "interactions": interactions_topic}
    schemas = {"playback": "PlaybackEvent", "interactions": "InteractionEvent"}
    if catalogue_topic:
        topic["catalogue"] = catalogue_topic
        schemas["catalogue"] = "TitleCatalogEntry"
    streams = EndpointCodecs(codecs(), resolve_wire(), {}, topic, owner="shoal generate")
    try:
        for registered in streams.prepare(schemas.items()):
            click.echo(f"generator: schema registered for {registered}", err=True)
    finally:
        streams.close()  # encoding needs no registry once the ids are known
    realtime = realtime or live
    if realtime and speedup is not None:
        raise ConfigError("--realtime and --speedup exclude each other: choose one")
    if start_ms is not None and lookback:
        raise ConfigError("--lookback and --start-ms both set the origin: choose one")
    pace = 1.0 if speedup is None else (None if speedup == MAX else float(speedup))
    now_ms = _now_ms()
    origin = start_ms if start_ms is not None else now_ms - int(lookback * 1000)
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
    admin = KafkaAdmin(server)
    admin.ensure_topics(
        [TopicSpec(playback_topic, partitions), TopicSpec(interactions_topic, partitions)]
    )
    if catalogue_topic:
        admin.ensure_topics([TopicSpec(catalogue_topic, 1, config={"cleanup.policy": "compact"})])
    click.echo(f"generator: {_describe_time(origin, now_ms, pace)}", err=True)
    # In the background: on a busy cluster (or a broker that just started) listing the
    # groups takes seconds, and the generator must not keep the jobs waiting for it.
    check = threading.Thread(
        target=_warn_behind,
        args=(admin, [playback_topic, interactions_topic], origin),
        name="shoal-generate-watermarks",
        daemon=True,
    )
    check.start()
    pacer = Pacer(pace, _now_ms, DEFAULT_MAX_FUTURE_MS, origin_ms=origin)
    encoders = {name: streams.sink(name, schema).encode for name, schema in schemas.items()}
    sink = KafkaSink(server, linger_ms=50)
    if catalogue_topic:
        entries = catalogue_entries(config)
        for key, value in entries:
            sink.write(catalogue_topic, key, encoders["catalogue"](value), None)
        sink.flush()
        click.echo(f"generator: {len(entries)} titles written to {catalogue_topic!r}", err=True)
    rng = random.Random(seed ^ 0x5EED)
    counts: dict[str, int] = {}
    interrupted = False
    t0 = time.monotonic()
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
            if rec.label != "bad_timestamp":
                _pace(pacer, rec.value.get("event_time_ms"), sink.poll)
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
        interrupted = True
    finally:
        bar.close()
    if not interrupted:
        check.join(timeout=30)  # a short run still says what the check found
    took = time.monotonic() - t0
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    click.echo(
        f"produced {sum(counts.values())} records in {took:.1f}s "
        f"({sum(counts.values()) / max(took, 1e-9):,.0f}/s): {summary}",
        err=True,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _describe_time(origin: int, now_ms: int, pace: float | None) -> str:
    """The start-up line about event time: where it starts and how it advances."""
    offset = origin - now_ms
    if abs(offset) < 1000:
        start = f"event time starts now ({_utc(origin)})"
    else:
        where = "ahead of" if offset > 0 else "before"
        start = f"event time starts {_span(abs(offset))} {where} now ({_utc(origin)})"
    if offset <= -1000:
        start += ", replays that past at once"
    elif offset >= 1000:
        start += " and stays that far ahead"
    if pace is None:
        return f"{start}, then runs as fast as --rate allows (--speedup max)"
    if pace == 1.0:
        return f"{start}, then follows the wall clock (--realtime)"
    return f"{start}, then runs {pace:g}x as fast as the wall clock (--speedup {pace:g})"


def _span(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _warn_behind(admin: Any, topics: list[str], origin: int) -> None:
    """Say which jobs reading ``topics`` have a watermark past ``origin``."""
    from runtime.cli.status_cmd import watermarks_on
    from runtime.generator.pacing import behind_watermarks

    try:
        found = watermarks_on(admin, topics)
    except ShoalError as exc:
        click.echo(f"generator: could not read the jobs' watermarks: {exc}", err=True)
        return
    for group, behind in behind_watermarks(origin, found):
        click.echo(
            f"generator: warning: event time starts {_span(behind)} behind the watermark of "
            f"job group {group!r} ({_utc(found[group])}): it sees these records as late "
            "(start later with --start-ms, or write to new topics)",
            err=True,
        )


def _pace(pacer: Pacer, event_time_ms: object, poll: Callable[[], None]) -> None:
    """Wait until ``event_time_ms`` is due (serving delivery reports meanwhile); say once
    when event time reached the wall clock and once when it is too far ahead of it."""
    if not isinstance(event_time_ms, int):
        return
    was = pacer.caught_up
    wait = pacer.wait_ms(event_time_ms)
    if pacer.caught_up and not was:
        if pacer.speedup == 1.0:
            follow = "following it from now on"
        elif pacer.speedup is None:
            follow = "it runs on as fast as --rate allows"
        else:
            follow = f"it runs {pacer.speedup:g}x as fast from now on"
        click.echo(f"generator: event time caught up with the wall clock; {follow}", err=True)
    if pacer.too_far_ahead(event_time_ms):
        click.echo(
            f"generator: warning: event time is {_span(pacer.ahead_ms(event_time_ms))} ahead "
            f"of the wall clock; jobs dead-letter records more than "
            f"{_span(pacer.skew_limit_ms)} ahead by default (WatermarkStrategy max_future)",
            err=True,
        )
    while wait > 0:
        poll()
        time.sleep(min(wait, 500) / 1000)
        wait = pacer.wait_ms(event_time_ms)
