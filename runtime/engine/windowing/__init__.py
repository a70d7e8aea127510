"""Windows for both engines: assigners per window kind, and the one window operator.

* :mod:`~runtime.engine.windowing.assigner`: the assigner interface and the registry
  of window kinds (spec type -> assigner);
* one module per kind: :mod:`~runtime.engine.windowing.tumbling`,
  :mod:`~runtime.engine.windowing.hopping`, :mod:`~runtime.engine.windowing.session`,
  :mod:`~runtime.engine.windowing.cumulative`;
* :mod:`~runtime.engine.windowing.logic`: the window operator's rules over any
  assigner and any ``AggregateFunction``, on a key-value view of state and a
  scheduler of firing times. The native engine runs it in
  ``runtime.engine.windows`` (its state stores, a firing index), the Flink engine in
  ``runtime.flink.windows`` (keyed state, event-time timers).

A new window kind is a spec in ``runtime.api.windows``, one assigner module here and
its import below (the registration).
"""

from runtime.engine.windowing import (  # noqa: F401  (registrations)
    cumulative,
    hopping,
    session,
    tumbling,
)
from runtime.engine.windowing.assigner import ASSIGNERS, WindowAssigner, assigner_for, register
from runtime.engine.windowing.logic import MISSING, Changes, Emission, WindowLogic

__all__ = [
    "ASSIGNERS",
    "MISSING",
    "Changes",
    "Emission",
    "WindowAssigner",
    "WindowLogic",
    "assigner_for",
    "register",
]
