"""The title catalogue the job scores: ids, genres, durations and a popularity prior.

The job cannot learn a title's duration from events (playback events carry only the
playhead), and playback events carry no genre, so it holds the catalogue as static
reference data: ``catalogue.json`` in this folder, written by ``train.py`` for the
generator's default seed. Another catalogue can be passed to ``build``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CATALOGUE_PATH", "Catalogue", "CatalogueTitle"]

#: The catalogue shipped with the job.
CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.json"


@dataclass(frozen=True, slots=True)
class CatalogueTitle:
    """One title that can be recommended.

    Args:
        title_id: catalogue id.
        genre: primary genre.
        duration_ms: running time, for completion ratios.
        popularity: relative popularity prior (> 0).
    """

    title_id: str
    genre: str
    duration_ms: int
    popularity: float


class Catalogue:
    """The titles, sorted by id, with lookups by id.

    Args:
        titles: the titles; ids must be unique and popularities positive.

    Raises:
        ValueError: on an empty catalogue, a duplicate id or a non-positive popularity.
    """

    def __init__(self, titles: Iterable[CatalogueTitle]) -> None:
        self.titles: tuple[CatalogueTitle, ...] = tuple(sorted(titles, key=lambda t: t.title_id))
        if not self.titles:
            raise ValueError("a catalogue needs at least one title")
        self.index: dict[str, int] = {t.title_id: i for i, t in enumerate(self.titles)}
        if len(self.index) != len(self.titles):
            raise ValueError("catalogue title ids must be unique")
        if any(not t.popularity > 0 for t in self.titles):
            raise ValueError("catalogue popularities must be positive")
        self.genres: tuple[str, ...] = tuple(sorted({t.genre for t in self.titles}))

    def __len__(self) -> int:
        return len(self.titles)

    def get(self, title_id: str | None) -> CatalogueTitle | None:
        """The title with ``title_id``, or None."""
        i = self.index.get(title_id) if title_id is not None else None
        return None if i is None else self.titles[i]

    @classmethod
    def of(cls, titles: Iterable[Any]) -> Catalogue:
        """Build from any objects with ``title_id``, ``genre``, ``duration_ms``, ``popularity``."""
        return cls(
            CatalogueTitle(t.title_id, t.genre, int(t.duration_ms), float(t.popularity))
            for t in titles
        )

    def to_json(self, **meta: Any) -> str:
        """The catalogue as JSON (one title per line), with ``meta`` fields."""
        rows = ",\n".join(
            "    " + json.dumps([t.title_id, t.genre, t.duration_ms, t.popularity])
            for t in self.titles
        )
        head = "".join(f"  {json.dumps(k)}: {json.dumps(v)},\n" for k, v in sorted(meta.items()))
        return "{\n" + head + '  "titles": [\n' + rows + "\n  ]\n}\n"

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> Catalogue:
        """Read a catalogue written by :meth:`to_json`.

        Raises:
            ValueError: the file is not a catalogue.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                CatalogueTitle(str(i), str(g), int(d), float(p)) for i, g, d, p in data["titles"]
            )
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path.name} is not a readable catalogue: {exc}") from exc
