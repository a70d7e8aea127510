"""Encode + decode time of typical state values: the msgpack state codec against pickle.

Run: ``python -m bench.codec_speed``. Prints one row per value shape: CPU microseconds
per encode and per decode (best of five runs), and the encoded size. pickle is here
only as the yardstick of the format it replaced; nothing in the platform uses it.
"""

from __future__ import annotations

import pickle
import random
import time
import timeit
from collections.abc import Callable
from typing import Any

from runtime.api.aggregates import Quantiles
from runtime.engine.repartition import decode, encode_record
from runtime.state.codec import decode_value, encode_value
from runtime.state.records import WindowState

T0 = 1_700_000_000_000


def session_state(events: int, rng: random.Random) -> list[Any]:
    """The sessionization window state of one key: sessions of event tuples."""
    plays: dict[str, dict[str, tuple[Any, ...]]] = {}
    for i in range(events):
        playback = f"pb-{i // 8}"
        plays.setdefault(playback, {})[f"ev-{rng.getrandbits(48):x}"] = (
            T0 + i * 10_000,
            rng.randrange(5),
            rng.randrange(3_600_000),
            rng.choice([800, 1600, 3000, 6000]),
            None,
            f"title-{rng.randrange(500)}",
            rng.choice(["play", "pause", "seek", "heartbeat"]),
        )
    return [WindowState(T0, T0 + events * 10_000 + 1_800_000, {"p": plays, "i": {"i-1": T0}})]


def qoe_state(startups: int, rng: random.Random) -> list[Any]:
    """The QoE window accumulator: fact counts, a startup sketch, playback ids."""
    sketch = Quantiles(relative_accuracy=0.01).create()
    for _ in range(startups):
        sketch.add(rng.lognormvariate(6.5, 0.8))
    return [rng.randrange(10**6) for _ in range(8)] + [
        sketch,
        {f"pb-{rng.getrandbits(40):x}" for _ in range(startups)},
    ]


def shapes() -> dict[str, Any]:
    """The value shapes to time."""
    rng = random.Random(1)
    return {
        "int counter (W1)": 42,
        "mean [sum, n]": [12_345.5, 17],
        "process state (value, ms)": ({"u-1": 0.75, "u-2": 0.5}, T0),
        "session, 8 events (W2)": session_state(8, rng),
        "session, 40 events (W2)": session_state(40, rng),
        "QoE acc + sketch, 20 startups": qoe_state(20, rng),
    }


def best_us(fn: Callable[[], Any], number: int) -> float:
    """CPU microseconds per call, best of five runs (CPU time: other processes on a
    shared machine inflate wall time, not this)."""
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=5)) / number * 1e6


def main() -> None:
    """Print the table."""
    header = f"{'value':32} {'codec enc':>10} {'codec dec':>10} {'size':>6}"
    header += f" {'pickle enc':>11} {'pickle dec':>11} {'size':>6}"
    print(header)
    for name, value in shapes().items():
        data, old = encode_value(value), pickle.dumps(value, protocol=5)
        number = 20_000 if len(data) < 200 else 2_000
        row = [
            best_us(lambda v=value: encode_value(v), number),  # type: ignore[misc]
            best_us(lambda d=data: decode_value(d), number),  # type: ignore[misc]
            best_us(lambda v=value: pickle.dumps(v, protocol=5), number),  # type: ignore[misc]
            best_us(lambda d=old: pickle.loads(d), number),  # type: ignore[misc]
        ]
        print(
            f"{name:32} {row[0]:10.2f} {row[1]:10.2f} {len(data):6d}"
            f" {row[2]:11.2f} {row[3]:11.2f} {len(old):6d}"
        )
    event = {
        "event_id": "e-1",
        "event_time_ms": T0,
        "user_id": "u-1",
        "cdn": "cdn-a",
        "bitrate_kbps": 3000,
        "error_code": None,
    }
    record = encode_record("cdn-a", event, T0)
    old = pickle.dumps(("r", "cdn-a", event, T0), protocol=5)
    row = [
        best_us(lambda: encode_record("cdn-a", event, T0), 20_000),
        best_us(lambda: decode(record, 2), 20_000),
        best_us(lambda: pickle.dumps(("r", "cdn-a", event, T0), protocol=5), 20_000),
        best_us(lambda: pickle.loads(old), 20_000),
    ]
    print(
        f"{'repartition record (checked)':32} {row[0]:10.2f} {row[1]:10.2f} {len(record):6d}"
        f" {row[2]:11.2f} {row[3]:11.2f} {len(old):6d}"
    )


if __name__ == "__main__":
    main()
