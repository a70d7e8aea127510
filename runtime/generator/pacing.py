"""How generated event time relates to the wall clock: when each record may be sent.

The simulation itself has no clock: it yields events in event-time order from its
origin (``GeneratorConfig.start_ms``). A :class:`Pacer` decides when each one goes out:

* **Catching up.** While a record's event time is behind the wall clock (an origin in
  the past: ``--lookback``), records go as fast as allowed: the past is replayed.
* **Following.** From the moment event time reaches the wall clock, it advances
  ``speedup`` times as fast as the clock from there: ``1`` is real time (a record goes
  out when the clock reaches its event time, never earlier), ``30`` plays half an hour
  a minute. ``None`` never waits: event time runs as far ahead as the producing rate
  takes it. An origin in the future (``origin_ms``) starts at once and stays that far
  ahead.

It also says when event time has run further ahead of the wall clock than a job accepts
by default (:meth:`Pacer.too_far_ahead`), once.

>>> clock = [1_000_000]
>>> pacer = Pacer(speedup=1.0, now_ms=lambda: clock[0])
>>> pacer.wait_ms(999_000)        # in the past: at once
0
>>> pacer.wait_ms(1_000_500)      # caught up: half a second ahead of the clock waits
500
>>> clock[0] += 500
>>> pacer.wait_ms(1_000_500)
0
"""

from __future__ import annotations

from collections.abc import Callable

#: Jobs dead-letter event times more than this ahead of their clock by default
#: (``WatermarkStrategy``'s ``max_future``); the generator says so when it gets there.
DEFAULT_SKEW_LIMIT_MS = 10 * 60 * 1000


class Pacer:
    """When a generated record may be sent (see the module docstring).

    Args:
        speedup: event-time milliseconds per wall-clock millisecond once event time has
            reached the clock; ``None``: never wait.
        now_ms: the wall clock, UTC epoch milliseconds (injected; manual in tests).
        skew_limit_ms: how far ahead of the clock event time may get before
            :meth:`too_far_ahead` reports it.
        origin_ms: where event time starts; in the future, it follows the clock from
            there at once (otherwise from the clock, once it has caught up).

    Raises:
        ValueError: ``speedup`` is not positive.
    """

    def __init__(
        self,
        speedup: float | None,
        now_ms: Callable[[], int],
        skew_limit_ms: int = DEFAULT_SKEW_LIMIT_MS,
        origin_ms: int | None = None,
    ) -> None:
        if speedup is not None and not speedup > 0:
            raise ValueError(f"speedup must be positive, got {speedup!r}")
        self.speedup = speedup
        self.now_ms = now_ms
        self.skew_limit_ms = skew_limit_ms
        # (event time, wall time) from which event time follows the clock
        self._anchor: tuple[int, int] | None = None
        now = now_ms()
        if origin_ms is not None and origin_ms > now:
            self._anchor = (origin_ms, now)
        self._warned = False

    @property
    def caught_up(self) -> bool:
        """Whether event time has reached the wall clock (it then follows it)."""
        return self._anchor is not None

    def wait_ms(self, event_time_ms: int) -> int:
        """How long to wait before sending a record of ``event_time_ms`` (0: now).

        The first record at or past the wall clock ties event time to the clock from
        then on; records before that (and every record without a speedup) never wait.
        """
        now = self.now_ms()
        if self._anchor is None:
            if event_time_ms < now:
                return 0
            self._anchor = (now, now)
        if self.speedup is None:
            return 0
        event0, wall0 = self._anchor
        due = wall0 + (event_time_ms - event0) / self.speedup
        return max(0, int(due - now + 0.999))

    def ahead_ms(self, event_time_ms: int) -> int:
        """How far ``event_time_ms`` is ahead of the wall clock (negative: behind)."""
        return event_time_ms - self.now_ms()

    def too_far_ahead(self, event_time_ms: int) -> bool:
        """True the first time a record is more than the skew limit ahead of the clock."""
        if self._warned or self.ahead_ms(event_time_ms) <= self.skew_limit_ms:
            return False
        self._warned = True
        return True


def behind_watermarks(start_ms: int, watermarks: dict[str, int]) -> list[tuple[str, int]]:
    """Jobs whose watermark is past ``start_ms``: ``(job group, how far behind, ms)``,
    furthest first. Their windows and timers see such records as late.

    >>> behind_watermarks(1_000, {"a": 500, "b": 61_000, "c": 4_000})
    [('b', 60000), ('c', 3000)]
    """
    behind = [(group, wm - start_ms) for group, wm in watermarks.items() if wm > start_ms]
    return sorted(behind, key=lambda item: (-item[1], item[0]))
