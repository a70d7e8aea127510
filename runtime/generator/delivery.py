"""The generator: merge every viewer's timeline, then disturb delivery like a real network.

Events are first merged into event-time order across accounts. Delivery then
labels each event and decides when it arrives: most arrive at once (``ok``);
some are delayed by at most ``out_of_order_ms`` (``out_of_order``), some far
beyond that (``late``), some arrive twice (``duplicate``, the second copy within
``out_of_order_ms`` of the event time), some get corrupted bytes (``malformed``)
or a missing/absurd event time (``bad_timestamp``). Records come out in arrival
order, so for every record not labelled ``late`` or ``bad_timestamp`` the event
time is at least the largest event time delivered before it minus
``out_of_order_ms``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Generator as PyGenerator
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from runtime.generator.catalogue import Title, catalogue
from runtime.generator.config import GeneratorConfig
from runtime.generator.corruption import CORRUPTIONS
from runtime.generator.population import User, build_population
from runtime.generator.viewer import timeline
from runtime.generator.world import Tagged, World

#: Labels of :class:`GeneratedRecord`, "ok" first.
LABELS: tuple[str, ...] = (
    "ok",
    "out_of_order",
    "late",
    "duplicate",
    "malformed",
    "bad_timestamp",
)

_YEAR_MS = 365 * 24 * 3_600_000
_YEAR_2001_MS = 978_307_200_000
_YEAR_2100_MS = 4_102_444_800_000


@dataclass(frozen=True, slots=True)
class GeneratedRecord:
    """One record as it arrives, before encoding.

    Args:
        stream: ``"playback"`` (PlaybackEvent) or ``"interactions"`` (InteractionEvent).
        key: the Kafka message key: the user id, UTF-8.
        value: the event, with exactly the fields of its schema.
        corrupt: ``None``, or how the producer must damage the encoded bytes
            (see :func:`~runtime.generator.corruption.corrupt_bytes`).
        label: what delivery did to it, one of :data:`LABELS`.
    """

    stream: str
    key: bytes
    value: dict[str, Any]
    corrupt: str | None
    label: str


def merged_events(world: World, users: tuple[User, ...]) -> Iterator[Tagged]:
    """Yield every account's events in event-time order, forever.

    Ties in event time go to the account listed first.
    """
    heap: list[tuple[int, int, str, dict[str, Any], PyGenerator[Tagged, None, None]]] = []
    for user in users:
        events = timeline(world, user)
        stream, value = next(events)
        heap.append((value["event_time_ms"], user.index, stream, value, events))
    heapq.heapify(heap)
    replace = heapq.heapreplace
    while True:
        _, index, stream, value, events = heap[0]
        yield stream, value
        stream, value = next(events)
        replace(heap, (value["event_time_ms"], index, stream, value, events))


class Generator:
    """A deterministic stream of simulated playback and interaction records.

    Iterating starts over from the seed each time, so two iterations (or two
    generators with equal configs) yield equal records.

    Args:
        config: what to simulate and how to disturb delivery.

    >>> from runtime.generator import Generator, GeneratorConfig
    >>> records = Generator(GeneratorConfig(seed=7, users=20)).take(3)
    >>> [len(r.value) > 10 for r in records]
    [True, True, True]
    """

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config

    @property
    def titles(self) -> tuple[Title, ...]:
        """The catalogue the viewers choose from."""
        return catalogue(self.config)

    def take(self, n: int) -> list[GeneratedRecord]:
        """Return the first ``n`` records.

        Raises:
            ValueError: if ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return list(islice(self, n))

    def __iter__(self) -> Iterator[GeneratedRecord]:
        """Yield records in arrival order, without end."""
        config = self.config
        world = World(config)
        events = merged_events(world, build_population(config))
        return _deliver(events, config)


def _deliver(events: Iterator[Tagged], config: GeneratorConfig) -> Iterator[GeneratedRecord]:
    """Label events and reorder them into arrival order."""
    rng = random.Random(f"shoal-generator:{config.seed}:delivery")
    random_ = rng.random
    bound = config.out_of_order_ms
    late_low, late_high = config.late_delay_ms
    c_malformed = config.malformed_rate
    c_bad_time = c_malformed + config.bad_timestamp_rate
    c_late = c_bad_time + config.late_rate
    c_disorder = c_late + config.out_of_order_rate
    c_duplicate = c_disorder + config.duplicate_rate
    pending: list[tuple[int, int, GeneratedRecord]] = []
    push = heapq.heappush
    pop = heapq.heappop
    seq = 0
    record = GeneratedRecord
    for stream, value in events:
        t = value["event_time_ms"]
        while pending and pending[0][0] <= t:
            yield pop(pending)[2]
        r = random_()
        key = value["user_id"].encode()
        if r >= c_duplicate:
            yield record(stream, key, value, None, "ok")
        elif r >= c_disorder:
            yield record(stream, key, value, None, "ok")
            seq += 1
            copy = record(stream, key, dict(value), None, "duplicate")
            push(pending, (t + int(random_() * (bound + 1)), seq, copy))
        elif r >= c_late:
            seq += 1
            delayed = record(stream, key, value, None, "out_of_order")
            push(pending, (t + 1 + int(random_() * bound), seq, delayed))
        elif r >= c_bad_time:
            seq += 1
            late = record(stream, key, value, None, "late")
            delay = bound + late_low + int(random_() * (late_high - late_low + 1))
            push(pending, (t + delay, seq, late))
        elif r >= c_malformed:
            bad = dict(value)
            bad["event_time_ms"] = _bad_timestamp(rng, config.start_ms)
            yield record(stream, key, bad, None, "bad_timestamp")
        else:
            yield record(stream, key, value, rng.choice(CORRUPTIONS), "malformed")


def _bad_timestamp(rng: random.Random, start_ms: int) -> int:
    """A missing (0), far-future or pre-2001 event time."""
    kind = rng.randrange(3)
    if kind == 0:
        return 0
    if kind == 1:
        return max(_YEAR_2100_MS, start_ms + 50 * _YEAR_MS) + rng.randrange(50 * _YEAR_MS)
    return 1 + rng.randrange(_YEAR_2001_MS - 1)
