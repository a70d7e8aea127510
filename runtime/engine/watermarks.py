"""Event-time progress of a task: per-partition watermarks, idleness, the task minimum."""

from __future__ import annotations

from runtime.api.errors import InvariantError
from runtime.api.watermarks import WatermarkStrategy

NO_WATERMARK = -(2**63)


class PartitionClock:
    """Watermark state of one source partition."""

    __slots__ = ("bound_ms", "idle_timeout_ms", "last_active_ms", "max_ts")

    def __init__(self, strategy: WatermarkStrategy, now_ms: int) -> None:
        self.bound_ms = strategy.max_out_of_order_ms
        self.idle_timeout_ms = strategy.idle_timeout_ms
        self.max_ts = NO_WATERMARK
        self.last_active_ms = now_ms

    @property
    def watermark(self) -> int:
        """max event time seen - allowed disorder."""
        return self.max_ts - self.bound_ms if self.max_ts != NO_WATERMARK else NO_WATERMARK

    def idle(self, now_ms: int) -> bool:
        """True once the partition has been quiet for its idle timeout."""
        return (
            self.idle_timeout_ms is not None
            and now_ms - self.last_active_ms >= self.idle_timeout_ms
        )


class MarkerClock(PartitionClock):
    """A partition of an internal topic: its watermark is the minimum of the markers
    of all ``upstream`` tasks that write to it (missing ones hold it back)."""

    __slots__ = ("marks", "upstream")

    def __init__(self, upstream: int, now_ms: int) -> None:
        super().__init__(WatermarkStrategy(idle_timeout_ms=None), now_ms)
        self.upstream = upstream
        self.marks: dict[int, int] = {}

    @property
    def watermark(self) -> int:
        """The slowest upstream task's marker."""
        marks = self.marks
        if len(marks) < self.upstream:
            return NO_WATERMARK
        return min(marks.values())

    def idle(self, now_ms: int) -> bool:
        """Never idle: markers keep flowing while upstream tasks make progress."""
        return False


class WatermarkTracker:
    """The watermark of a task: minimum over its live partitions, never backwards.

    Partitions are identified by ``(source name, partition number)``. A partition that
    has been quiet for its strategy's idle timeout stops holding the task back; if
    every partition is idle the watermark stays where it is.
    """

    def __init__(self) -> None:
        self._clocks: dict[tuple[str, int], PartitionClock] = {}
        self._current = NO_WATERMARK
        self._forced = NO_WATERMARK

    @property
    def current(self) -> int:
        """The task's watermark (epoch ms; ``NO_WATERMARK`` before any progress)."""
        return self._current

    def add_partition(
        self, source: str, partition: int, strategy: WatermarkStrategy, now_ms: int
    ) -> None:
        """Start tracking a partition (on assignment)."""
        if (source, partition) not in self._clocks:
            self._clocks[(source, partition)] = PartitionClock(strategy, now_ms)

    def add_marker_partition(self, source: str, partition: int, upstream: int, now_ms: int) -> None:
        """Start tracking an internal-topic partition fed by ``upstream`` tasks."""
        if (source, partition) not in self._clocks:
            self._clocks[(source, partition)] = MarkerClock(upstream, now_ms)

    def mark(self, source: str, partition: int, upstream_task: int, watermark: int) -> None:
        """A watermark marker of an upstream task arrived on an internal partition."""
        clock = self._clocks[(source, partition)]
        if not isinstance(clock, MarkerClock):
            raise InvariantError(f"{source}[{partition}] is not an internal partition")
        if watermark > clock.marks.get(upstream_task, NO_WATERMARK):
            clock.marks[upstream_task] = watermark

    def remove_partition(self, source: str, partition: int) -> None:
        """Stop tracking a partition (on revocation)."""
        self._clocks.pop((source, partition), None)

    def tracks(self, source: str, partition: int) -> bool:
        """Whether a partition is tracked."""
        return (source, partition) in self._clocks

    def partitions(self) -> list[tuple[str, int]]:
        """The tracked partitions."""
        return list(self._clocks)

    def observe(self, source: str, partition: int, max_ts: int, now_ms: int) -> None:
        """Record the largest event time of a batch from one partition."""
        clock = self._clocks[(source, partition)]
        if max_ts > clock.max_ts:
            clock.max_ts = max_ts
        clock.last_active_ms = now_ms

    def touch(self, source: str, partition: int, now_ms: int) -> None:
        """Mark a partition active without an event time (e.g. only bad records)."""
        self._clocks[(source, partition)].last_active_ms = now_ms

    def force(self, watermark_ms: int) -> None:
        """Advance the watermark by hand (test driver, end of bounded input)."""
        self._forced = max(self._forced, watermark_ms)

    def partition_watermark(self, source: str, partition: int) -> int:
        """The watermark of one partition."""
        return self._clocks[(source, partition)].watermark

    def advance(self, now_ms: int) -> int:
        """Recompute the task watermark; returns it (never lower than before)."""
        live = [c.watermark for c in self._clocks.values() if not c.idle(now_ms)]
        candidate = min(live) if live else NO_WATERMARK
        candidate = max(candidate, self._forced)
        if candidate > self._current:
            self._current = candidate
        return self._current

    def partition_max_ts(self, source: str, partition: int) -> int:
        """Largest event time seen on one partition (``NO_WATERMARK`` if none)."""
        clock = self._clocks.get((source, partition))
        return clock.max_ts if clock is not None else NO_WATERMARK

    def restore_partition(
        self, source: str, partition: int, max_ts: int | None, watermark: int | None
    ) -> None:
        """Apply checkpointed progress of one (already added) partition and the task."""
        clock = self._clocks.get((source, partition))
        if isinstance(clock, MarkerClock) and watermark is not None:
            # Every upstream task had reached at least this when it was checkpointed.
            for task in range(clock.upstream):
                if clock.marks.get(task, NO_WATERMARK) < watermark:
                    clock.marks[task] = int(watermark)
        elif clock is not None and max_ts is not None and max_ts > clock.max_ts:
            clock.max_ts = int(max_ts)
        # The task had reached this watermark before the checkpoint: never go back.
        # (An internal partition's marks hold its own watermark: forcing the stage to
        # the furthest of them would run ahead of the others.)
        if not isinstance(clock, MarkerClock) and watermark is not None:
            self._forced = max(self._forced, int(watermark))

    def resume(self) -> int:
        """After a restore: take up the watermark reached at the checkpoint, no further.

        A task's external partitions were checkpointed with the task's watermark (the
        forced floor :meth:`restore_partition` set); internal partitions with the
        marks they had received, whose minimum was the stage's watermark. Returns the
        watermark; nothing moves it past that here, so nothing due later is skipped.
        """
        marks = [c.watermark for c in self._clocks.values() if isinstance(c, MarkerClock)]
        wm = max(min(marks) if marks else NO_WATERMARK, self._forced)
        if wm > self._current:
            self._current = wm
        return self._current

    def snapshot(self) -> dict[str, object]:
        """Checkpointable state: per-partition max event time and the task watermark."""
        return {
            "current": self._current,
            "forced": self._forced,
            "max_ts": {f"{s}\x00{p}": c.max_ts for (s, p), c in self._clocks.items()},
        }

    def restore(self, snap: dict[str, object]) -> None:
        """Apply a snapshot taken by ``snapshot`` (partitions must be added first)."""
        self._current = int(snap["current"])  # type: ignore[call-overload]
        self._forced = int(snap["forced"])  # type: ignore[call-overload]
        max_ts = snap["max_ts"]
        if not isinstance(max_ts, dict):
            raise InvariantError(f"a watermark snapshot's max_ts is a {type(max_ts).__name__}")
        for name, ts in max_ts.items():
            source, _, part = name.partition("\x00")
            clock = self._clocks.get((source, int(part)))
            if clock is not None:
                clock.max_ts = max(clock.max_ts, int(ts))
