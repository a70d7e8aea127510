"""The worker's service under attack never holds the job: exact output, ``/health`` ok.

``jobs.user_counts`` runs against the real broker with its HTTP service while, at the
same time: 64 hostile taps are held open (filters at the cost limit, readers that
never read, from eight client addresses because each may hold eight), and 50 threads
ask ``/state`` for random keys without pause. Input is produced in waves during the
attack. The test asserts that the job's progress counters (records read,
checkpoints) keep moving during the attack, that every ``/health`` answer is ``ok``,
that no request fails with a 500, and afterwards that the job's output equals a
brute-force count of the same events.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from jobs.user_counts import job as user_counts
from runtime.generator import GeneratedRecord, Generator, GeneratorConfig
from runtime.service.filters import MAX_NODES, compile_filter
from tests.integration.helpers import decoded, read_all, unique
from tests.integration.test_service import ServedJob, recent_start_ms
from tests.reference.counts import window_counts

pytestmark = pytest.mark.integration

PARTITIONS = 4
EVENTS = 40_000
WAVES = 10
TAPS = 64
CLIENTS = 8  # addresses 127.0.0.2 .. 127.0.0.9, eight taps each (the per-client limit)
STATE_THREADS = 50
SIZE_MS = 10_000


def costly_filter() -> str:
    """A filter right at the term limit that matches nothing (every term is evaluated)."""
    term = 'device_type == "no-such-device"'
    terms = (MAX_NODES + 1) // 4  # a comparison is 3 terms, each "or" one more
    return " or ".join([term] * terms)


class HostileTaps:
    """Keeps ``TAPS`` taps open from ``CLIENTS`` addresses; none of them ever reads.

    Half match every record (their server-side writes block once the socket buffers
    fill, and the idle timeout would disconnect them); half run a filter at the cost
    limit. A disconnected tap is opened again at once, so the count stays held.
    """

    def __init__(self, host: str, port: int, job: str) -> None:
        self.host, self.port, self.job = host, port, job
        self.opened = 0
        self.refused = 0
        self.statuses: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._hold, args=(i,), daemon=True) for i in range(TAPS)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _request(self, i: int) -> bytes:
        expr = "event_time_ms > 0" if i % 2 == 0 else costly_filter()
        query = urllib.parse.urlencode({"filter": expr})
        return (
            f"GET /streams/{self.job}/playback?{query} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n\r\n"
        ).encode()

    def _hold(self, i: int) -> None:
        source = f"127.0.0.{2 + i % CLIENTS}"
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                sock.bind((source, 0))
                sock.connect((self.host, self.port))
                sock.sendall(self._request(i))
                sock.settimeout(10)
                head = sock.recv(12)  # b"HTTP/1.1 200": then never read again
                self.statuses[head[9:12].decode(errors="replace")] += 1
                if head[9:12] != b"200":
                    self.refused += 1
                    self._stop.wait(0.5)
                    continue
                self.opened += 1
                sock.settimeout(None)
                # Wait until the server gives up on us (it closes the connection), or
                # the attack ends; never read what it sends.
                while not self._stop.wait(0.5):
                    try:
                        sock.send(b"")
                        if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                            break  # closed by the server
                    except BlockingIOError:
                        continue
                    except OSError:
                        break
            except OSError:
                self._stop.wait(0.2)
            finally:
                sock.close()


class StateFlood:
    """``STATE_THREADS`` threads asking ``/state`` for keys without pause."""

    def __init__(self, url: str, users: list[str]) -> None:
        self.url, self.users = url, users
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ask, args=(i,), daemon=True) for i in range(STATE_THREADS)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _ask(self, i: int) -> None:
        with httpx2.Client(timeout=30) as client:
            n = i
            while not self._stop.is_set():
                user = self.users[n % len(self.users)]
                n += STATE_THREADS
                try:
                    r = client.get(f"{self.url}/state/user_counts/counts_10s/{user}")
                except httpx2.HTTPError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[r.status_code] += 1
                if r.status_code not in (200, 404, 503):
                    with self._lock:
                        self.errors.append(f"{r.status_code}: {r.text[:200]}")
                elif r.headers.get("content-type", "").startswith("application/json"):
                    r.json()  # every answer is JSON, errors too


def produce(kafka: str, topic: str, records: list[GeneratedRecord]) -> None:
    encode = codec_factory()("PlaybackEvent").encode
    sink = KafkaSink(kafka)
    for rec in records:
        sink.write(topic, rec.key, encode(rec.value), None)
    sink.flush()


def close_all_windows(kafka: str, topic: str, after_ms: int, template: dict[str, Any]) -> None:
    """One far-later record per partition: every task's watermark passes every window."""
    encode = codec_factory()("PlaybackEvent").encode
    sink = KafkaSink(kafka)
    for p in range(PARTITIONS):
        value = {
            **template,
            "user_id": f"zz-sentinel-{p}",
            "event_id": f"sentinel-{p}",
            "event_time_ms": after_ms,
        }
        sink.write(topic, value["user_id"].encode(), encode(value), None, partition=p)
    sink.flush()


def health(url: str) -> dict[str, Any]:
    r = httpx2.get(f"{url}/health", timeout=30)
    body: dict[str, Any] = r.json()
    assert r.status_code == 200 and body["status"] == "ok", body
    return body


def test_hostile_taps_and_a_state_flood_never_hold_the_job(kafka: str, tmp_path: Path) -> None:
    assert compile_filter(costly_filter()) is not None  # at the limit, accepted
    playback, out, dead = unique("attack-in"), unique("attack-out"), unique("attack-dead")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, PARTITIONS)])
    config = GeneratorConfig(
        seed=77,
        users=600,
        start_ms=recent_start_ms(),
        late_rate=0.0,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
        interaction_ratio=0.0,
    )
    records = [r for r in Generator(config).take(EVENTS) if r.stream == "playback"]
    users = sorted({r.value["user_id"] for r in records})
    sj = ServedJob(
        kafka,
        user_counts,
        [f"playback={playback}", f"user-counts={out}", f"dead-letters={dead}"],
        tmp_path,
        idle_timeout_s=2.0,
    )
    host, port = urllib.parse.urlsplit(sj.url).hostname, urllib.parse.urlsplit(sj.url).port
    assert host is not None and port is not None
    taps = HostileTaps(host, port, "user_counts")
    flood = StateFlood(sj.url, users)
    try:
        produce(kafka, playback, records[: len(records) // WAVES])
        before = health(sj.url)
        taps.start()
        flood.start()
        seen: list[tuple[int, int]] = [(before["records_read"], before["checkpoints"])]
        wave = len(records) // WAVES
        for w in range(1, WAVES):
            produce(kafka, playback, records[w * wave : (w + 1) * wave if w < WAVES - 1 else None])
            deadline = time.monotonic() + 120
            while True:  # this wave is read and checkpointed while the attack goes on
                body = health(sj.url)
                sj.check()
                seen.append((body["records_read"], body["checkpoints"]))
                if body["records_read"] >= min(len(records), (w + 1) * wave):
                    break
                assert time.monotonic() < deadline, f"the job is stuck at {body['records_read']}"
                time.sleep(0.3)
        during = health(sj.url)
        attack_taps = sj.service.worker_handle.taps
        tapped = attack_taps.stats()["playback"]
    finally:
        flood.stop()
        taps.stop()
    # The counters moved through the attack, wave after wave.
    reads = [r for r, _ in seen]
    assert reads == sorted(reads) and reads[-1] == len(records) > reads[0]
    assert len(set(reads)) >= WAVES
    assert during["checkpoints"] > before["checkpoints"]
    # The attack was real: taps held and served, state answered, readers dropped.
    assert taps.opened >= TAPS and flood.statuses[200] > 0, (taps.statuses, flood.statuses)
    assert not flood.errors, flood.errors[:5]
    subscribers, queued, _ = tapped
    # Held to the last (the costly ones are never idle), and fed off the worker thread.
    assert subscribers >= TAPS // 2 and queued > 0
    assert sj.worker.calls.stats.served > 0

    close_all_windows(
        kafka, playback, records[-1].value["event_time_ms"] + 600_000, records[0].value
    )
    try:
        # Read and committed (the lag is measured at each commit): the windows that
        # the sentinels closed were written in the same transactions.
        sj.wait_read(len(records) + PARTITIONS)
        health(sj.url)
    finally:
        sj.close()
    got = {
        (row["user_id"], row["window_start_ms"]): row["count"]
        for row in decoded(read_all(kafka, out), "")
    }
    assert got == window_counts([r.value for r in records], SIZE_MS)
    assert not decoded(read_all(kafka, dead, first_wait_s=3), "DeadLetter")
