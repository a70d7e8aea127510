"""Engagement signals: how much one event says a user likes a title and its genre.

Every contributing event adds one signed *amount*, dated at its event time, to the
user's engagement with the event's title and with the title's genre:

==========================  ==================================================
event                       amount
==========================  ==================================================
``impression``              ``impression`` (weak: the title was only shown)
``hover``                   ``hover``
``play_intent``             ``play_intent``
``add_to_list``             ``add_to_list``
``remove_from_list``        ``remove_from_list`` (negative)
``thumbs_up``/``_down``     ``thumbs_up`` / ``thumbs_down`` (negative)
``rating`` (1-5 stars)      ``rating_per_star * (stars - 3)``
playback ``start``          ``play_start``
playback ``stop``           ``completion * c``, ``c = position_ms / duration_ms``
abandoned playback          ``completion * c + abandonment``, ``c`` at its last event
==========================  ==================================================

``c`` (the completion ratio) is clamped to ``[0, 1]``; the title's duration comes from
the catalogue. A playback is *abandoned* when it sends neither ``stop`` nor ``error``
and nothing else for ``abandon_after`` of event time (decided in the job with an
event-time timer). Searches, errors, heartbeats and the other player events add
nothing: they change no score.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SignalWeights", "completion_ratio"]


@dataclass(frozen=True, slots=True)
class SignalWeights:
    """The amount each kind of event adds to engagement (see the module docstring)."""

    impression: float = 0.05
    hover: float = 0.3
    play_intent: float = 1.0
    add_to_list: float = 2.0
    remove_from_list: float = -1.0
    thumbs_up: float = 3.0
    thumbs_down: float = -3.0
    rating_per_star: float = 1.0
    play_start: float = 0.5
    completion: float = 2.0
    abandonment: float = -1.0

    def interaction(self, event_type: str, rating: int | None) -> float:
        """The amount of one interaction event; 0.0 for events that say nothing.

        Args:
            event_type: the ``InteractionEvent.event_type``.
            rating: the star rating of ``rating`` events.
        """
        if event_type == "rating":
            return 0.0 if rating is None else self.rating_per_star * (rating - 3)
        amount = _INTERACTION_FIELDS.get(event_type)
        return 0.0 if amount is None else float(getattr(self, amount))

    def stop(self, completion: float) -> float:
        """The amount of a playback that stopped at ``completion`` (0..1)."""
        return self.completion * completion

    def abandoned(self, completion: float) -> float:
        """The amount of a playback abandoned at ``completion`` (0..1)."""
        return self.completion * completion + self.abandonment


_INTERACTION_FIELDS = {
    "impression": "impression",
    "hover": "hover",
    "play_intent": "play_intent",
    "add_to_list": "add_to_list",
    "remove_from_list": "remove_from_list",
    "thumbs_up": "thumbs_up",
    "thumbs_down": "thumbs_down",
}


def completion_ratio(position_ms: int, duration_ms: int) -> float:
    """``position_ms / duration_ms`` clamped to ``[0, 1]`` (0 for a non-positive duration)."""
    if duration_ms <= 0:
        return 0.0
    return min(1.0, max(0.0, position_ms / duration_ms))
