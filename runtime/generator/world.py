"""Shared state of one simulation run: random stream, ids, catalogue and CDN health."""

from __future__ import annotations

import random
from itertools import count
from typing import Any

from runtime.generator.catalogue import Title, catalogue
from runtime.generator.config import GeneratorConfig
from runtime.generator.population import User

#: A generated event: a dict with exactly the fields of its Avro schema.
Event = dict[str, Any]
#: An event and the stream it belongs to.
Tagged = tuple[str, Event]

PLAYBACK = "playback"
INTERACTIONS = "interactions"

# Share of title picks that follow the account's favourite genres.
_TASTE = 0.65


class EventIds:
    """Cheap unique ids shaped like UUIDs: a seeded random prefix and a counter.

    Args:
        rng: random stream the prefix is drawn from.
    """

    def __init__(self, rng: random.Random) -> None:
        bits = rng.getrandbits(64)
        self._prefix = (
            f"{bits >> 32:08x}-{(bits >> 16) & 0xFFFF:04x}-4{(bits >> 4) & 0xFFF:03x}-"
            f"{8 | (bits & 0x3):x}{rng.getrandbits(12):03x}-"
        )
        # Counting from 2**48 makes hex() give "0x1" and then exactly 12 digits.
        self._counter = count(1 << 48)

    def new(self) -> str:
        """Return an id never returned before by this instance."""
        return self._prefix + hex(next(self._counter))[3:]


class World:
    """Everything viewers of one run share.

    Args:
        config: the generator configuration.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = random.Random(f"shoal-generator:{config.seed}:viewers")
        self.ids = EventIds(self.rng)
        self.titles: tuple[Title, ...] = catalogue(config)
        self._all_cum = _cumulative(self.titles)
        by_genre: dict[str, list[Title]] = {}
        for title in self.titles:
            by_genre.setdefault(title.genre, []).append(title)
        self._by_genre = {g: (tuple(ts), _cumulative(ts)) for g, ts in by_genre.items()}
        ratio = config.interaction_ratio
        #: interaction events to emit per expected playback event.
        self.interactions_per_playback_event = ratio / (1.0 - ratio)
        self._degradations: dict[str, tuple[tuple[int, int, float, float], ...]] = {}
        for d in config.degradations:
            span = (
                config.start_ms + d.start_offset_ms,
                config.start_ms + d.end_offset_ms,
                float(d.rebuffer_multiplier),
                float(d.bitrate_divisor),
            )
            self._degradations[d.cdn] = (*self._degradations.get(d.cdn, ()), span)

    def pick_titles(self, user: User, k: int) -> list[Title]:
        """Draw ``k`` titles (with repeats) the way this account's choices lean.

        Args:
            user: the account choosing.
            k: how many titles to draw.

        Returns:
            ``k`` titles, popular ones and the account's favourite genres more likely.
        """
        rng = self.rng
        if rng.random() < _TASTE:
            pool = self._by_genre.get(rng.choice(user.favourite_genres))
            if pool is not None:
                return rng.choices(pool[0], cum_weights=pool[1], k=k)
        return rng.choices(self.titles, cum_weights=self._all_cum, k=k)

    def may_degrade(self, cdn: str) -> bool:
        """Whether any configured degradation names ``cdn``."""
        return cdn in self._degradations

    def degradation(self, cdn: str, t_ms: int) -> tuple[float, float] | None:
        """Return ``(rebuffer_multiplier, bitrate_divisor)`` if ``cdn`` is degraded at ``t_ms``.

        Overlapping degradations of one CDN multiply.
        """
        spans = self._degradations.get(cdn)
        if spans is None:
            return None
        found: tuple[float, float] | None = None
        for start, end, mult, div in spans:
            if start <= t_ms < end:
                found = (mult, div) if found is None else (found[0] * mult, found[1] * div)
        return found


def _cumulative(titles: tuple[Title, ...] | list[Title]) -> list[float]:
    total = 0.0
    out = []
    for title in titles:
        total += title.popularity
        out.append(total)
    return out
