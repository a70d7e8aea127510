"""Offline training of the personalization model on generated traffic (numpy).

Run ``python -m jobs.personalization.train`` to rewrite ``model.json`` and
``catalogue.json`` next to this file; the same seed gives the same weights, which a
test checks. The job never imports this module: it only reads the two files.

How the model is trained:

1. Generate ``events`` records of ``users`` viewers with seed ``seed`` and no delivery
   disturbance (so arrival order is event-time order).
2. Replay them in order, keeping each user's decayed engagement exactly as the job
   does (same signals, same half-life; a playback is abandoned once ``abandon_after``
   of event time passes without any of its events).
3. At every ``play_intent``, before it is counted, take the features
   (``jobs.personalization.model.FEATURES``) of the intended title (label 1) and of
   ``negatives`` titles drawn uniformly from the rest of the catalogue (label 0).
4. Fit a logistic regression with an L2 penalty ``l2`` (not on the bias) by Newton's
   method until the step is below 1e-10.
5. Evaluate on traffic of seed ``holdout_seed``: hit rate in the top 10 and mean
   reciprocal rank of the intended title among all titles, for the model and for
   ranking by popularity alone. The numbers go into ``model.json`` under ``info``.
"""

from __future__ import annotations

import argparse
import heapq
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from jobs.personalization.catalogue import CATALOGUE_PATH, Catalogue
from jobs.personalization.model import FEATURES, MODEL_PATH, Model, Scorer, feature_row
from jobs.personalization.signals import SignalWeights, completion_ratio
from runtime.generator import Generator, GeneratorConfig, catalogue

Matrix = npt.NDArray[np.float64]

__all__ = ["CATALOGUE_SEED", "TrainConfig", "evaluate", "main", "shipped_catalogue", "train"]

#: The generator seed the shipped catalogue is built for (the ``shoal generate`` default).
CATALOGUE_SEED = 1
CATALOGUE_TITLES = 200
_DEFAULT_WEIGHTS = SignalWeights()


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """What to train on and how."""

    seed: int = 101
    holdout_seed: int = 202
    users: int = 400
    titles: int = CATALOGUE_TITLES
    events: int = 120_000
    negatives: int = 20
    l2: float = 1.0
    half_life_ms: int = 6 * 3_600_000
    abandon_after_ms: int = 5 * 60_000


def _clean_config(seed: int, config: TrainConfig) -> GeneratorConfig:
    return GeneratorConfig(
        seed=seed, users=config.users, titles=config.titles, out_of_order_rate=0.0,
        late_rate=0.0, duplicate_rate=0.0, malformed_rate=0.0, bad_timestamp_rate=0.0,
    )  # fmt: skip


class _Replay:
    """In-order replay of engagement with exponential decay (the job's semantics)."""

    def __init__(self, cat: Catalogue, config: TrainConfig, weights: SignalWeights) -> None:
        self.cat = cat
        self.h = config.half_life_ms
        self.gap = config.abandon_after_ms
        self.w = weights
        # user -> ({genre: (value, t)}, {title: (value, t)})
        self.users: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
        self.plays: dict[str, list[Any]] = {}  # playback id -> [user, title, last_t, pos, open]
        self.deadlines: list[tuple[int, str]] = []

    def _add(self, user: str, amount: float, t: int, title_id: str, genre: str | None) -> None:
        genres, titles = self.users.setdefault(user, ({}, {}))
        keys: list[tuple[dict[str, list[float]], str]] = [(titles, title_id)]
        if genre is not None:
            keys.append((genres, genre))
        for table, key in keys:
            entry = table.setdefault(key, [0.0, float(t)])
            if t >= entry[1]:
                entry[0] = entry[0] * 2.0 ** (-(t - entry[1]) / self.h) + amount
                entry[1] = float(t)
            else:
                entry[0] += amount * 2.0 ** (-(entry[1] - t) / self.h)

    def values(self, user: str, now: int) -> tuple[dict[str, float], dict[str, float]]:
        """Decayed genre and title engagement of ``user`` at ``now``."""
        genres, titles = self.users.get(user, ({}, {}))
        h = self.h
        return (
            {g: v * 2.0 ** (-(now - t) / h) for g, (v, t) in genres.items()},
            {k: v * 2.0 ** (-(now - t) / h) for k, (v, t) in titles.items()},
        )

    def advance(self, now: int) -> None:
        """Declare playbacks quiet since ``abandon_after`` abandoned."""
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, pid = heapq.heappop(self.deadlines)
            play = self.plays.get(pid)
            if play is None or not play[4] or play[2] + self.gap != deadline:
                continue
            play[4] = False
            title = self.cat.get(play[1])
            assert title is not None
            amount = self.w.abandoned(completion_ratio(play[3], title.duration_ms))
            self._add(play[0], amount, play[2], title.title_id, title.genre)

    def event(self, stream: str, e: dict[str, Any]) -> None:
        """Count one event (interactions or playback)."""
        t, user = e["event_time_ms"], e["user_id"]
        if stream == "interactions":
            amount = self.w.interaction(e["event_type"], e["rating"])
            if e["title_id"] is not None and amount != 0.0:
                self._add(user, amount, t, e["title_id"], e["genre"])
            return
        title = self.cat.get(e["title_id"])
        if title is None:
            return
        pid, kind = e["playback_id"], e["event_type"]
        play = self.plays.setdefault(pid, [user, title.title_id, t, e["position_ms"], True])
        if play[4]:
            play[2], play[3] = t, e["position_ms"]
            if kind in ("stop", "error"):
                play[4] = False
            else:
                heapq.heappush(self.deadlines, (t + self.gap, pid))
        if kind == "start":
            self._add(user, self.w.play_start, t, title.title_id, title.genre)
        elif kind == "stop":
            ratio = completion_ratio(e["position_ms"], title.duration_ms)
            self._add(user, self.w.stop(ratio), t, title.title_id, title.genre)


def _intents(
    seed: int, config: TrainConfig, weights: SignalWeights
) -> Iterator[tuple[Catalogue, _Replay, str, int, str]]:
    """Replay generated traffic; yield ``(catalogue, replay, user, t, title)`` per play intent."""
    gen_config = _clean_config(seed, config)
    cat = Catalogue.of(catalogue(gen_config))
    replay = _Replay(cat, config, weights)
    for rec in Generator(gen_config).take(config.events):
        e = rec.value
        replay.advance(e["event_time_ms"])
        intent = rec.stream == "interactions" and e["event_type"] == "play_intent"
        if intent and cat.get(e["title_id"]) is not None:
            yield cat, replay, e["user_id"], e["event_time_ms"], e["title_id"]
        replay.event(rec.stream, e)


def _rows(
    genres: dict[str, float], titles: dict[str, float], cat: Catalogue, ids: list[str]
) -> list[list[float]]:
    total = sum(v for v in genres.values() if v > 0.0)
    rows = []
    for title_id in ids:
        title = cat.get(title_id)
        assert title is not None
        rows.append(
            feature_row(
                genres.get(title.genre, 0.0), total, titles.get(title_id, 0.0), title.popularity
            )
        )
    return rows


def _fit(x: Matrix, y: Matrix, l2: float) -> Matrix:
    """L2-penalised logistic regression by Newton's method (deterministic)."""
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0  # the bias is not shrunk
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + penalty * w
        hessian = (x.T * (p * (1.0 - p))) @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, grad)
        w -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return w


def train(config: TrainConfig = TrainConfig(), weights: SignalWeights = _DEFAULT_WEIGHTS) -> Model:
    """Train the model on generated traffic and evaluate it on a hold-out seed.

    Returns:
        The model, with the training setup and hold-out metrics in ``info``.
    """
    rng = np.random.default_rng(config.seed)
    xs: list[list[float]] = []
    ys: list[float] = []
    for cat, replay, user, t, title_id in _intents(config.seed, config, weights):
        genres, titles = replay.values(user, t)
        others = [i for i in rng.choice(len(cat), config.negatives + 1, replace=False)]
        ids = [title_id] + [
            cat.titles[i].title_id for i in others if cat.titles[i].title_id != title_id
        ][: config.negatives]
        xs.extend(_rows(genres, titles, cat, ids))
        ys.extend([1.0] + [0.0] * (len(ids) - 1))
    w = _fit(np.asarray(xs), np.asarray(ys), config.l2)
    coefficients = tuple(float(v) for v in w)
    info: dict[str, Any] = {"train": asdict(config), "rows": len(ys), "positives": int(sum(ys))}
    model = Model(coefficients, Model.version_of(coefficients), info)
    info["holdout"] = evaluate(model, config, weights)
    return model


def evaluate(model: Model, config: TrainConfig, weights: SignalWeights) -> dict[str, float]:
    """Hit rate at 10 and mean reciprocal rank on the hold-out seed, model vs popularity."""
    hits = {"model": 0, "popularity": 0}
    rr = {"model": 0.0, "popularity": 0.0}
    n = 0
    scorers: dict[int, tuple[Scorer, list[str]]] = {}
    for cat, replay, user, t, title_id in _intents(config.holdout_seed, config, weights):
        key = id(cat)
        if key not in scorers:
            by_pop = [x.title_id for x in sorted(cat.titles, key=lambda x: -x.popularity)]
            scorers[key] = (Scorer(model, cat), by_pop)
        scorer, by_pop = scorers[key]
        genres, titles = replay.values(user, t)
        ranked = [x for x, _, _ in scorer.top(genres, titles, len(cat))]
        for name, order in (("model", ranked), ("popularity", by_pop)):
            rank = order.index(title_id) + 1
            hits[name] += rank <= 10
            rr[name] += 1.0 / rank
        n += 1
    out: dict[str, float] = {"intents": float(n)}
    for name in hits:
        out[f"{name}_hit_rate_at_10"] = round(hits[name] / max(n, 1), 4)
        out[f"{name}_mrr"] = round(rr[name] / max(n, 1), 4)
    return out


def shipped_catalogue() -> Catalogue:
    """The catalogue shipped with the job: the generator's for its default seed."""
    return Catalogue.of(catalogue(GeneratorConfig(seed=CATALOGUE_SEED, titles=CATALOGUE_TITLES)))


def main(argv: list[str] | None = None) -> int:
    """Train, then write ``model.json`` and ``catalogue.json`` (or only report)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainConfig().seed)
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    model = train(TrainConfig(seed=args.seed))
    cat = shipped_catalogue()
    print(
        f"{model.version}: "
        + ", ".join(f"{f}={w:+.4f}" for f, w in zip(FEATURES, model.weights, strict=True))
    )
    print(f"hold-out: {model.info['holdout']}")
    if not args.dry_run:
        Path(MODEL_PATH).write_text(model.to_json(), encoding="utf-8")
        Path(CATALOGUE_PATH).write_text(
            cat.to_json(generator_seed=CATALOGUE_SEED, generator_titles=CATALOGUE_TITLES),
            encoding="utf-8",
        )
        print(f"wrote {MODEL_PATH.name} and {CATALOGUE_PATH.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
