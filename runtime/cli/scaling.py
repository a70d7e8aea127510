"""Autoscaling a supervisor's workers on consumer lag: the rule, apart from the processes.

Every ``interval_s`` the supervisor samples the job group's lag on its inputs (records
produced but not yet committed by the group, read_committed) and asks :class:`LagRule`
what to do. The rule, in full:

* **up** by one worker when the lag is above ``up_lag`` records per running worker and
  did not fall since the previous sample (a backlog the current workers are not
  draining);
* **down** by one worker when the lag stayed below ``down_lag`` records for
  ``quiet_samples`` samples in a row (the workers are idle);
* never below ``min_workers``, never above ``max_workers`` nor the input partition count
  (a worker without a partition would only idle), and never twice within ``cooldown_s``
  (a rebalance and its restores must settle before the lag means anything again).

The same rule is written for Kubernetes as a KEDA ``ScaledObject`` with its Kafka
scaler (``deploy/kubernetes``): ``lagThreshold`` is ``up_lag``, ``cooldownPeriod`` the
cool-down, ``maxReplicaCount`` at most the partition count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Decision", "LagRule"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rule decided: ``change`` is -1, 0 or +1 worker, and why."""

    change: int
    reason: str


@dataclass
class LagRule:
    """The scaling rule of the module docstring (it keeps the samples it has seen)."""

    min_workers: int
    max_workers: int
    partitions: int
    up_lag: int = 5_000
    down_lag: int = 100
    quiet_samples: int = 3
    cooldown_s: float = 20.0
    _last_lag: int | None = field(default=None, init=False)
    _quiet: int = field(default=0, init=False)
    _last_change_s: float | None = field(default=None, init=False)

    def decide(self, lag: int, workers: int, now_s: float) -> Decision:
        """One sample: the group's ``lag`` with ``workers`` running at time ``now_s``."""
        previous, self._last_lag = self._last_lag, lag
        self._quiet = self._quiet + 1 if lag < self.down_lag else 0
        ceiling = min(self.max_workers, self.partitions)
        cooling = self._last_change_s is not None and now_s - self._last_change_s < self.cooldown_s
        if workers < self.min_workers:
            return self._change(+1, f"below --min-workers {self.min_workers}", now_s)
        if workers > ceiling:
            return self._change(-1, f"above the ceiling {ceiling}", now_s)
        if cooling:
            return Decision(0, "cooling down")
        growing = previous is None or lag >= previous
        if lag > self.up_lag * workers and growing and workers < ceiling:
            return self._change(+1, f"lag {lag} > {self.up_lag} per worker and not falling", now_s)
        if self._quiet >= self.quiet_samples and workers > self.min_workers:
            self._quiet = 0
            return self._change(
                -1, f"lag below {self.down_lag} for {self.quiet_samples} samples", now_s
            )
        return Decision(0, "steady")

    def _change(self, change: int, reason: str, now_s: float) -> Decision:
        self._last_change_s = now_s
        return Decision(change, reason)
