"""``raw`` of W4: personalization as a hand-written confluent-kafka + fastavro loop.

The same computation as ``jobs.personalization`` on clean input, written for this one
job: batched ``consume`` of both topics, fastavro decode (one schema per topic), per
user a :class:`Viewer` in a dict: engagement per genre and per title with forward
decay (an amount at ``t`` is stored scaled by ``2**((t - landmark) / half_life)``, so
arrival order does not matter), the ids of contributing events (duplicates count
once), the playbacks for abandonment and the last record written. The model and the
signal amounts are the job's own pure pieces (``Scorer``, ``SignalWeights``,
``completion_ratio``), so the comparison is about everything around them.

Both topics are keyed by user with as many partitions, so partition ``p`` of each is
one task with its own watermark: the smaller of the two partitions' largest event
times minus 5 s, checked once per batch. A playback quiet for ``abandon_after`` of
event time is abandoned when its task's watermark passes the deadline (a heap per
task); a later event of it takes that back. After each contributing event (or
abandonment) the whole catalogue is scored; a ``PersonalizationScore`` (Avro single
object, keyed by user) is written when the top N or a score moved by more than
``min_change``, with ``updated_ms`` the event time of the latest contribution, as the
job does. Flush + commit every second (at-least-once).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from bench.checks import W4_PARAMS, ScoreParams, personalization_catalogue
from bench.common import BOUND_MS, HEADER_BYTES, Stopwatch, parse_args
from bench.rawloop import Committer, clients, finish, send, topic_schemas
from jobs.personalization import Catalogue, Model, Scorer, SignalWeights, completion_ratio

OUTPUT_SCHEMA = "PersonalizationScore.avsc"
NO_TIME = -(2**63)
#: The landmark moves when the scale would pass 2**60 (as the job's state does).
RELANDMARK_HALF_LIVES = 60
#: How long (event time) an ended playback and a contributing event id are remembered
#: (the job's defaults).
PLAY_RETENTION_MS = 3_600_000
DEDUP_HORIZON_MS = 3_600_000
OPEN, ENDED, ABANDONED = 0, 1, 2
TITLE, LAST_T, LAST_POS, STATUS, AMOUNT = range(5)


class Viewer:
    """One user's state."""

    __slots__ = ("genres", "landmark", "last", "now", "plays", "prune_at", "seen", "titles")

    def __init__(self) -> None:
        #: Forward-decay origin; ``None`` until the first contribution.
        self.landmark: int | None = None
        #: Latest contribution time: where scores are evaluated.
        self.now = NO_TIME
        self.prune_at = NO_TIME
        self.genres: dict[str, float] = {}
        self.titles: dict[str, float] = {}
        self.seen: dict[str, int] = {}
        #: playback id -> [title id, last event time, position then, status, amount]
        self.plays: dict[str, list[Any]] = {}
        self.last: tuple[list[tuple[str, float, str]], dict[str, float]] | None = None


def encoder(path: Path) -> Callable[[dict[str, Any]], bytes]:
    """``encode(record)``: Avro single-object encoding of the schema in ``path``."""
    doc = json.loads(path.read_text())
    schema = parse_schema(doc)
    # C3 01, then the CRC-64-AVRO fingerprint of the canonical form (fastavro's hex is
    # already in the little-endian byte order the encoding wants).
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(doc), "CRC-64-AVRO"))

    def encode(record: dict[str, Any]) -> bytes:
        buf = BytesIO()
        buf.write(header)
        schemaless_writer(buf, schema, record)
        return buf.getvalue()

    return encode


class Personalizer:
    """Every user's state, the abandonment deadlines per task and the records to write.

    Args:
        scorer: the model over the catalogue.
        encode: turns a ``PersonalizationScore`` into bytes.
        params: half-life, top N, abandonment and change threshold.
    """

    def __init__(
        self,
        scorer: Scorer,
        encode: Callable[[dict[str, Any]], bytes],
        params: ScoreParams = W4_PARAMS,
    ) -> None:
        self.scorer = scorer
        self.encode = encode
        self.params = params
        self.weights = SignalWeights()
        self.version = scorer.model.version
        self.catalogue = {t.title_id: t for t in scorer.catalogue.titles}
        self.viewers: dict[str, Viewer] = {}
        #: task -> heap of (due, user, playback id); stale entries are skipped or moved.
        self.due: dict[int, list[tuple[int, str, str]]] = {}
        #: (user, encoded record) written since the last drain.
        self.out: list[tuple[str, bytes]] = []

    def viewer(self, user_id: str) -> Viewer:
        """The user's state (created empty)."""
        v = self.viewers.get(user_id)
        if v is None:
            v = self.viewers[user_id] = Viewer()
        return v

    # -- events ---------------------------------------------------------------------
    def interaction(self, e: dict[str, Any]) -> None:
        """Fold one InteractionEvent; write a record if the scores moved."""
        title_id = e["title_id"]
        amount = self.weights.interaction(e["event_type"], e["rating"])
        if title_id is None or amount == 0.0:
            return
        user_id = e["user_id"]
        v = self.viewer(user_id)
        event_id = e["event_id"]
        if event_id in v.seen:
            return
        t = e["event_time_ms"]
        v.seen[event_id] = t
        genre = e["genre"]
        if genre is None:
            title = self.catalogue.get(title_id)
            genre = title.genre if title is not None else None
        self._add(v, amount, t, title_id, genre)
        self._emit(user_id, v)

    def playback(self, e: dict[str, Any], task: int) -> None:
        """Fold one PlaybackEvent of ``task``; write a record if the scores moved."""
        title = self.catalogue.get(e["title_id"])
        if title is None:
            return  # no genre and no duration: nothing to score it by
        user_id, kind, t = e["user_id"], e["event_type"], e["event_time_ms"]
        v = self.viewer(user_id)
        changed = self._track(v, user_id, e, title.genre, task)
        if kind == "start":
            amount = self.weights.play_start
        elif kind == "stop":
            amount = self.weights.stop(completion_ratio(e["position_ms"], title.duration_ms))
        else:
            amount = 0.0
        if amount != 0.0 and e["event_id"] not in v.seen:
            v.seen[e["event_id"]] = t
            self._add(v, amount, t, title.title_id, title.genre)
            changed = True
        if changed:
            self._emit(user_id, v)

    def _track(self, v: Viewer, user_id: str, e: dict[str, Any], genre: str, task: int) -> bool:
        """Update the playback's entry; True if an abandonment was taken back."""
        pid, t = e["playback_id"], e["event_time_ms"]
        play = v.plays.get(pid)
        retracted = False
        if play is None:
            play = v.plays[pid] = [e["title_id"], t, e["position_ms"], OPEN, 0.0]
            self._due(task, t + self.params.abandon_after_ms, user_id, pid)
        elif play[STATUS] == ENDED:
            return False
        elif t > play[LAST_T]:
            if play[STATUS] == ABANDONED:
                self._add(v, -play[AMOUNT], play[LAST_T], play[TITLE], genre)
                play[STATUS], play[AMOUNT] = OPEN, 0.0
                retracted = True
                self._due(task, t + self.params.abandon_after_ms, user_id, pid)
            play[LAST_T], play[LAST_POS] = t, e["position_ms"]
        if e["event_type"] in ("stop", "error"):
            if play[STATUS] == ABANDONED:
                self._add(v, -play[AMOUNT], play[LAST_T], play[TITLE], genre)
                retracted = True
            play[STATUS], play[AMOUNT] = ENDED, 0.0
        return retracted

    def _due(self, task: int, due: int, user_id: str, pid: str) -> None:
        heap = self.due.get(task)
        if heap is None:
            heap = self.due[task] = []
        heapq.heappush(heap, (due, user_id, pid))

    # -- event time -----------------------------------------------------------------
    def advance(self, task: int, watermark: int) -> None:
        """Abandon the task's playbacks quiet since ``abandon_after``; forget old ones."""
        heap = self.due.get(task)
        if not heap:
            return
        gap, keep = self.params.abandon_after_ms, PLAY_RETENTION_MS
        changed: dict[str, Viewer] = {}
        while heap and heap[0][0] <= watermark:
            _, user_id, pid = heapq.heappop(heap)
            v = self.viewers[user_id]
            play = v.plays.get(pid)
            if play is None:
                continue
            last_t = play[LAST_T]
            if play[STATUS] == OPEN:
                if last_t + gap > watermark:
                    heapq.heappush(heap, (last_t + gap, user_id, pid))  # moved on since
                    continue
                title = self.catalogue[play[TITLE]]
                amount = self.weights.abandoned(completion_ratio(play[LAST_POS], title.duration_ms))
                play[STATUS], play[AMOUNT] = ABANDONED, amount
                self._add(v, amount, last_t, title.title_id, title.genre)
                changed[user_id] = v
                heapq.heappush(heap, (last_t + keep, user_id, pid))
            elif last_t + keep <= watermark:
                del v.plays[pid]
            else:
                heapq.heappush(heap, (last_t + keep, user_id, pid))
        for user_id, v in changed.items():
            self._emit(user_id, v)

    # -- engagement and output ------------------------------------------------------
    def _add(self, v: Viewer, amount: float, t: int, title_id: str, genre: str | None) -> None:
        h = self.params.half_life_ms
        if v.landmark is None:
            v.landmark, v.now, v.prune_at = t, t, t + DEDUP_HORIZON_MS
        elif t - v.landmark > RELANDMARK_HALF_LIVES * h:
            factor = 2.0 ** (-(t - v.landmark) / h)
            v.titles = {k: x * factor for k, x in v.titles.items()}
            v.genres = {k: x * factor for k, x in v.genres.items()}
            v.landmark = t
        w = amount * 2.0 ** ((t - v.landmark) / h)
        v.titles[title_id] = v.titles.get(title_id, 0.0) + w
        if genre is not None:
            v.genres[genre] = v.genres.get(genre, 0.0) + w
        if t > v.now:
            v.now = t
        if v.now >= v.prune_at:
            oldest = v.now - DEDUP_HORIZON_MS
            v.seen = {k: s for k, s in v.seen.items() if s >= oldest}
            v.prune_at = v.now + DEDUP_HORIZON_MS

    def _emit(self, user_id: str, v: Viewer) -> None:
        assert v.landmark is not None
        factor = 2.0 ** (-(v.now - v.landmark) / self.params.half_life_ms)
        genres = {g: x * factor for g, x in v.genres.items()}
        titles = {k: x * factor for k, x in v.titles.items()}
        top = self.scorer.top(genres, titles, self.params.top_n)
        if not self._moved(v.last, top, genres):
            return
        v.last = (top, genres)
        record = {
            "user_id": user_id,
            "updated_ms": v.now,
            "model_version": self.version,
            "top_titles": [{"title_id": t, "score": p, "genre": g} for t, p, g in top],
            "genre_affinity": genres,
        }
        self.out.append((user_id, self.encode(record)))

    def _moved(
        self,
        last: tuple[list[tuple[str, float, str]], dict[str, float]] | None,
        top: list[tuple[str, float, str]],
        genres: dict[str, float],
    ) -> bool:
        """Whether the scores differ enough from the last record to write another."""
        if last is None:
            return True
        eps = self.params.min_change
        last_top, last_genres = last
        if len(top) != len(last_top) or genres.keys() != last_genres.keys():
            return True
        for (t, p, _), (u, q, _) in zip(top, last_top, strict=True):
            if t != u or abs(p - q) > eps:
                return True
        return any(
            abs(x - last_genres[g]) > eps * max(1.0, abs(last_genres[g])) for g, x in genres.items()
        )

    def drain(self) -> list[tuple[str, bytes]]:
        """The records written since the last call."""
        out, self.out = self.out, []
        return out


def fetched(consumer: Any, most: int) -> list[Any]:
    """Up to ``most`` messages already fetched; waits (up to 0.1 s) only when there are none.

    The client's own call would wait for ``most`` messages or the timeout, which holds
    back results of a trickling input (the paced run).
    """
    msgs: list[Any] = consumer.consume(num_messages=most, timeout=0)
    if not msgs:
        msgs = consumer.consume(num_messages=1, timeout=0.1)
        if msgs and most > 1:
            msgs.extend(consumer.consume(num_messages=most - 1, timeout=0))
    return msgs


def main() -> None:
    """Personalize ``--events`` records."""
    args = parse_args(__doc__ or "")
    settings = args.settings
    inputs: dict[str, str] = settings["inputs"]
    out_topic = settings["outputs"]["personalization-scores"]
    folder = Path(args.schema).parent
    schemas = topic_schemas(args, inputs)
    playback_topic = inputs["playback"]
    titles = personalization_catalogue(
        int(settings.get("seed", 1)), int(settings.get("users", 1000))
    )
    scores = Personalizer(
        Scorer(Model.load(), Catalogue.of(titles)), encoder(folder / OUTPUT_SCHEMA)
    )
    ready = Path(settings["ready"]) if settings.get("ready") else None

    def on_assign(_consumer: Any, _partitions: Any) -> None:
        if ready is not None:
            ready.touch()  # a paced producer starts now

    # Idempotent (a user's records stay in order), and the linger of Shoal's worker.
    consumer, producer = clients(
        args, list(inputs.values()),
        consumer={"partition.assignment.strategy": "range"},
        producer={"linger.ms": 10, "enable.idempotence": True},
        on_assign=on_assign,
    )  # fmt: skip
    part_max = {(t, p): NO_TIME for t in inputs.values() for p in range(args.partitions)}
    watermarks = dict.fromkeys(range(args.partitions), NO_TIME)
    topics = list(inputs.values())
    watch = Stopwatch()
    wanted, n, outputs = args.events, 0, 0
    committer = Committer(consumer, producer)
    while n < wanted:
        msgs = fetched(consumer, 10_000)
        if not msgs:
            continue
        watch.start()
        touched: set[int] = set()
        for m in msgs:
            if m.error() is not None:
                continue
            n += 1
            topic, p = m.topic(), m.partition()
            e: Any = schemaless_reader(BytesIO(m.value()[HEADER_BYTES:]), schemas[topic], None)
            t = e["event_time_ms"]
            if t > part_max[(topic, p)]:
                part_max[(topic, p)] = t
                touched.add(p)
            if topic == playback_topic:
                scores.playback(e, p)
            else:
                scores.interaction(e)
        for p in touched:
            watermark = min(part_max[(name, p)] for name in topics) - BOUND_MS
            if watermark > watermarks[p]:
                watermarks[p] = watermark
                scores.advance(p, watermark)
        for user_id, value in scores.drain():
            send(producer, out_topic, value, user_id.encode())
            outputs += 1
        committer.tick()
    finish(consumer, producer, watch, n, args.report, outputs=outputs, users=len(scores.viewers))


if __name__ == "__main__":
    main()
