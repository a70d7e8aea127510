"""The simulated title catalogue: ids, genres, durations and popularity."""

from __future__ import annotations

import random
from dataclasses import dataclass

from runtime.generator.config import GeneratorConfig

GENRES: tuple[str, ...] = (
    "drama",
    "comedy",
    "action",
    "thriller",
    "documentary",
    "animation",
    "romance",
    "sci-fi",
    "horror",
    "kids",
    "reality",
    "crime",
)

_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Title:
    """One playable title.

    Args:
        title_id: catalogue id such as ``t0001``.
        genre: primary genre, one of :data:`GENRES`.
        kind: ``"movie"`` or ``"episode"``.
        duration_ms: running time in milliseconds.
        popularity: relative weight of the title being picked (Zipf-like).
    """

    title_id: str
    genre: str
    kind: str
    duration_ms: int
    popularity: float


def catalogue(config: GeneratorConfig) -> tuple[Title, ...]:
    """Return the catalogue a generator with ``config`` draws from.

    It depends only on ``config.seed`` and ``config.titles``, so a job or a test
    can rebuild it without running the generator.

    Args:
        config: the generator configuration.

    Returns:
        ``config.titles`` titles, most popular first, ids ``t0001``, ``t0002``, ...

    >>> titles = catalogue(GeneratorConfig(seed=1, titles=3))
    >>> [t.title_id for t in titles]
    ['t0001', 't0002', 't0003']
    """
    rng = random.Random(f"shoal-generator:{config.seed}:catalogue")
    width = max(4, len(str(config.titles)))
    titles = []
    for rank in range(1, config.titles + 1):
        genre = rng.choice(GENRES)
        if rng.random() < 0.35:
            kind = "movie"
            duration = rng.randint(80 * _MINUTE_MS, 150 * _MINUTE_MS)
        else:
            kind = "episode"
            duration = rng.randint(20 * _MINUTE_MS, 60 * _MINUTE_MS)
        titles.append(
            Title(
                title_id=f"t{rank:0{width}d}",
                genre=genre,
                kind=kind,
                duration_ms=duration,
                popularity=1.0 / rank**0.9,
            )
        )
    return tuple(titles)


def catalogue_entries(config: GeneratorConfig) -> list[tuple[bytes, dict[str, object]]]:
    """The catalogue as records of a ``TitleCatalogEntry`` table topic: ``(key, value)``.

    Each key is the title id (UTF-8), each value a ``TitleCatalogEntry``
    (``schemas/TitleCatalogEntry.avsc``), for the titles a generator with ``config``
    draws from: what ``shoal generate --catalogue`` writes to ``title-catalogue``.

    Args:
        config: the generator configuration (only ``seed`` and ``titles`` matter).

    Returns:
        One ``(key, value)`` per title, most popular first.

    >>> catalogue_entries(GeneratorConfig(seed=1, titles=1))[0][0]
    b't0001'
    """
    return [
        (
            t.title_id.encode(),
            {
                "title_id": t.title_id,
                "genre": t.genre,
                "kind": t.kind,
                "duration_ms": t.duration_ms,
            },
        )
        for t in catalogue(config)
    ]
