"""Real-time personalization: decayed engagement, a pre-trained model, top-N titles per user.

Sources ``playback`` (PlaybackEvent) and ``interactions`` (InteractionEvent), both keyed
by user id, so keying by user needs no repartition; the two topics must therefore have
the same number of partitions (a user's events then meet in the same task). One
keyed ``process()`` step (``scores``, see ``jobs.personalization.scores``) keeps each
user's time-decayed engagement per genre and per title, applies the model of
``model.json`` to every catalogue title and writes ``PersonalizationScore`` records to
``personalization-scores`` whenever the top N change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs.personalization.catalogue import Catalogue
from jobs.personalization.model import Model, Scorer
from jobs.personalization.scores import PersonalizationFunction, ScoreSettings
from jobs.personalization.signals import SignalWeights
from runtime import Avro, ConfigError, Job, WatermarkStrategy

__all__ = ["SINK", "build", "job"]

#: The output the scores go to.
SINK = "personalization-scores"
_DEFAULT_WEIGHTS = SignalWeights()


def _ms(value: timedelta, what: str, *, positive: bool = True) -> int:
    if not isinstance(value, timedelta):
        raise ConfigError(f"personalization: {what} must be a timedelta, got {value!r}")
    ms = int(value / timedelta(milliseconds=1))
    if ms < 0 or (positive and ms == 0):
        raise ConfigError(f"personalization: {what} must be positive, got {value}")
    return ms


def build(
    half_life: timedelta = timedelta(hours=6),
    top_n: int = 10,
    *,
    catalogue: Catalogue | None = None,
    model: Model | None = None,
    weights: SignalWeights = _DEFAULT_WEIGHTS,
    abandon_after: timedelta = timedelta(minutes=5),
    play_retention: timedelta = timedelta(hours=1),
    dedup_horizon: timedelta = timedelta(hours=1),
    min_change: float = 0.01,
    max_out_of_order: timedelta = timedelta(seconds=5),
    idle_timeout: timedelta = timedelta(seconds=10),
    name: str = "personalization",
) -> Job:
    """Build the personalization job.

    Args:
        half_life: event time after which an engagement counts half.
        top_n: titles per ``PersonalizationScore``.
        catalogue: candidate titles; default: the shipped ``catalogue.json``.
        model: scoring model; default: the shipped ``model.json``.
        weights: engagement amount per kind of event.
        abandon_after: event time without any event after which a playback that
            neither stopped nor failed counts as abandoned.
        play_retention: event time an ended or abandoned playback is remembered, so
            its late events are recognised.
        dedup_horizon: event time a contributing event's id is remembered for dropping
            duplicates.
        min_change: smallest score (or relative affinity) change that emits a record.
        max_out_of_order: the sources' allowed disorder (watermarks).
        idle_timeout: processing time after which a quiet partition stops holding
            the watermark back.
        name: the job's name.

    Returns:
        The job; its sink is :data:`SINK`.

    Raises:
        ConfigError: on a non-positive duration, ``top_n`` or a negative ``min_change``.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ConfigError(f"personalization: top_n must be a positive int, got {top_n!r}")
    if not min_change >= 0:
        raise ConfigError(f"personalization: min_change must be >= 0, got {min_change!r}")
    settings = ScoreSettings(
        half_life_ms=_ms(half_life, "half_life"),
        top_n=top_n,
        abandon_after_ms=_ms(abandon_after, "abandon_after"),
        play_retention_ms=_ms(play_retention, "play_retention"),
        dedup_horizon_ms=_ms(dedup_horizon, "dedup_horizon"),
        min_change=float(min_change),
        weights=weights,
    )
    if settings.play_retention_ms < settings.abandon_after_ms:
        raise ConfigError("personalization: play_retention must be at least abandon_after")
    scorer = Scorer(model or Model.load(), catalogue or Catalogue.load())
    watermarks = WatermarkStrategy.bounded(max_out_of_order, idle_timeout=idle_timeout)
    job = Job(name)
    playback = job.source(
        "playback", schema="PlaybackEvent", timestamp=_event_time, watermarks=watermarks
    )
    interactions = job.source(
        "interactions", schema="InteractionEvent", timestamp=_event_time, watermarks=watermarks
    )
    (
        playback.merge(interactions, name="events")
        .key_by("by_user", _user, repartition=False)
        .process("scores", PersonalizationFunction(settings, scorer))
        .sink(SINK, Avro("PersonalizationScore"))
    )
    return job


def _event_time(e: dict[str, Any]) -> int:
    return int(e["event_time_ms"])


def _user(e: dict[str, Any]) -> str:
    return str(e["user_id"])


job = build()
