"""Flink's window step against the brute-force reference, without a JVM.

The same generated scenarios as ``engine/test_windows_property.py`` (random
out-of-order batches of a few keys, late records, allowed lateness) run through
``runtime.flink.windows.WindowStep`` on a fake of Flink's keyed operator
(``flink_fakes``): state copied on every write, timers fired as the watermark
advances. Before each batch the watermark moves to the reference's (Flink's is one
lower); the end of input moves it to the end, as a bounded Flink source does. The
final view and the late output must equal the reference's, and every result must
carry its window's ``end - 1`` as its Flink timestamp. (The real Flink cluster runs
the window kinds in ``tests/integration/test_flink_equality.py``.)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings

from runtime.aggregates import Count, Sum
from runtime.api.graph import ErrorPolicy, default_window_output
from runtime.api.windows import WindowSpec
from runtime.flink.failures import Failures
from runtime.flink.windows import WindowStep
from tests.reference import windows as ref
from tests.unit.engine.test_windows_property import (
    KINDS,
    CollectIds,
    Scenario,
    api_spec,
    engine_view,
    scenarios,
)
from tests.unit.flink_fakes import LONG_MAX, FakeKeyedOperator

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:.*deprecated since version 2.1.0:DeprecationWarning:pyflink"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2"),
]

AGGREGATES = (
    ("count", Count(), ref.count),
    ("sum", Sum(of=lambda e: e["v"]), ref.total),
    ("ids", CollectIds(), ref.ids),
)


def run_on_fake_flink(sc: Scenario, spec: WindowSpec, aggregate: Any) -> FakeKeyedOperator:
    step = WindowStep(
        "w", spec, aggregate, default_window_output, Failures("j", "w", ErrorPolicy.FAIL)
    )
    op = FakeKeyedOperator(step)
    for batch, watermark in zip(
        sc.batches, ref.watermarks_before(sc.batches, sc.bound), strict=True
    ):
        if watermark != -math.inf:
            op.advance(int(watermark) - 1)
        for e in batch:
            op.element((e.key, e.as_record()), e.ts)
    op.advance(LONG_MAX)
    return op


@pytest.mark.parametrize("kind", KINDS)
def test_flink_window_step_matches_reference(kind: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(sc=scenarios(kind))
    def check(sc: Scenario) -> None:
        spec = api_spec(sc.spec)  # no early updates: the Flink engine refuses them
        expected_late = Counter(e.id for e in ref.late_events(sc.batches, sc.spec, sc.bound))
        for name, aggregate, reference in AGGREGATES:
            op = run_on_fake_flink(sc, spec, aggregate)
            results = [o for o in op.outputs if o.tag is None]
            view = engine_view([o.value[1] for o in results], sc.spec)
            assert view == ref.final_view(sc.batches, sc.spec, sc.bound, reference), name
            for o in results:
                if o.value[1]["value"] is not None:  # (a retraction carries the record's time)
                    assert o.timestamp == o.value[1]["window_end_ms"] - 1, name
            late = Counter(o.value[1]["id"] for o in op.outputs if o.tag == "w.late")
            assert late == expected_late, name
            assert not [o for o in op.outputs if o.tag not in (None, "w.late")], name
            assert not any(op.state.values()), "state left after the end of input"

    check()
