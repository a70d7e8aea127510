"""The scoring model: logistic regression over a user's live engagement features.

For a user at event time ``T`` with decayed genre engagement ``G[g]`` and title
engagement ``E[t]`` (see ``jobs.personalization.engagement``), a candidate title
``t`` of genre ``g`` and popularity prior ``p`` gets the features

=================  ===========================================================
``bias``           1
``genre_share``    ``max(G[g], 0) / (1 + sum over genres of max(G[h], 0))``
``genre_log``      ``log(1 + max(G[g], 0))``
``title_asinh``    ``asinh(E[t])`` (0 without engagement; negative when disliked)
``log_popularity`` ``log(p)``
=================  ===========================================================

and the score ``sigmoid(w . x)``: the model's probability that ``t`` is the title the
user shows intent to play next. ``train.py`` fits ``w`` offline on generated traffic
and writes ``model.json``; the job only applies it. The score of every title splits
into a per-title constant, a per-genre term and a per-title engagement term, so
scoring the whole catalogue costs one addition per title.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.personalization.catalogue import Catalogue

__all__ = ["FEATURES", "MODEL_PATH", "Model", "Scorer", "feature_row", "sigmoid"]

#: Names of the model's inputs, in weight order.
FEATURES: tuple[str, ...] = ("bias", "genre_share", "genre_log", "title_asinh", "log_popularity")

#: The model shipped with the job.
MODEL_PATH = Path(__file__).resolve().parent / "model.json"


def sigmoid(z: float) -> float:
    """The logistic function, safe for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def feature_row(
    genre_value: float, genre_total: float, title_value: float, popularity: float
) -> list[float]:
    """The features of one candidate (see the module docstring).

    Args:
        genre_value: decayed engagement ``G[g]`` with the candidate's genre.
        genre_total: sum over genres of ``max(G[h], 0)``.
        title_value: decayed engagement ``E[t]`` with the candidate.
        popularity: the candidate's popularity prior.
    """
    g = max(genre_value, 0.0)
    return [
        1.0,
        g / (1.0 + genre_total),
        math.log1p(g),
        math.asinh(title_value),
        math.log(popularity),
    ]


@dataclass(frozen=True, slots=True)
class Model:
    """Weights of the logistic regression, in :data:`FEATURES` order.

    Args:
        weights: one weight per feature.
        version: names the model in every ``PersonalizationScore``.
        info: how it was trained and how well it did (informational).
    """

    weights: tuple[float, ...]
    version: str
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES) or not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"a model needs {len(FEATURES)} finite weights, got {self.weights!r}")

    @staticmethod
    def version_of(weights: tuple[float, ...]) -> str:
        """A version string that changes when the weights change (beyond 1e-6)."""
        text = json.dumps([round(w, 6) + 0.0 for w in weights])
        return "logreg-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def to_json(self) -> str:
        """The model as JSON."""
        doc = {
            "format": 1,
            "version": self.version,
            "features": list(FEATURES),
            "weights": list(self.weights),
            "info": dict(self.info),
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> Model:
        """Read a model written by :meth:`to_json`.

        Raises:
            ValueError: the file is not a model of these features.
        """
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != 1 or tuple(doc["features"]) != FEATURES:
                raise ValueError(f"expected format 1 with features {FEATURES}")
            return cls(tuple(float(w) for w in doc["weights"]), str(doc["version"]), doc["info"])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path.name} is not a readable model: {exc}") from exc


class Scorer:
    """Scores every catalogue title for one user's engagement and picks the top N.

    Args:
        model: the weights.
        catalogue: the candidate titles.
    """

    def __init__(self, model: Model, catalogue: Catalogue) -> None:
        self.model = model
        self.catalogue = catalogue
        w_bias, self._w_share, self._w_glog, self._w_title, w_pop = model.weights
        self._base = [w_bias + w_pop * math.log(t.popularity) for t in catalogue.titles]
        self._genre_of = [t.genre for t in catalogue.titles]
        self._index = catalogue.index

    def top(
        self, genres: Mapping[str, float], titles: Mapping[str, float], n: int
    ) -> list[tuple[str, float, str]]:
        """The ``n`` best titles as ``(title_id, score, genre)``, best first.

        Ties keep catalogue (title id) order.

        Args:
            genres: decayed engagement per genre at the scoring time.
            titles: decayed engagement per title at the scoring time.
            n: how many titles.
        """
        total = 0.0
        for v in genres.values():
            if v > 0.0:
                total += v
        w_share, w_glog = self._w_share, self._w_glog
        denominator = 1.0 + total
        genre_term: dict[str, float] = {}
        for g, v in genres.items():
            if v > 0.0:
                genre_term[g] = w_share * (v / denominator) + w_glog * math.log1p(v)
        get = genre_term.get
        z = [b + get(g, 0.0) for b, g in zip(self._base, self._genre_of, strict=True)]
        w_title, index, asinh = self._w_title, self._index, math.asinh
        for title_id, v in titles.items():
            i = index.get(title_id)
            if i is not None:
                z[i] += w_title * asinh(v)
        best = heapq.nlargest(n, range(len(z)), key=z.__getitem__)
        catalogue = self.catalogue.titles
        return [(catalogue[i].title_id, sigmoid(z[i]), catalogue[i].genre) for i in best]
