"""The Kafka connectors against the real local broker: exact counts and contents."""

from __future__ import annotations

from collections import Counter

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from runtime.generator import GeneratorConfig
from tests.integration.helpers import decoded, produce_generated, read_all, unique


def test_admin_creates_topics_idempotently(kafka: str) -> None:
    admin = KafkaAdmin(kafka)
    name = unique("admin")
    compacted = unique("compacted")
    specs = [TopicSpec(name, 3), TopicSpec(compacted, 2, config={"cleanup.policy": "compact"})]
    assert sorted(admin.ensure_topics(specs)) == sorted([name, compacted])
    assert admin.ensure_topics(specs) == []
    topics = admin.topics()
    assert topics[name] == 3 and topics[compacted] == 2
    admin.delete_topics([name, compacted])


def test_avro_events_round_trip_exactly(kafka: str) -> None:
    playback, interactions = unique("playback"), unique("interactions")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 3), TopicSpec(interactions, 2)])
    config = GeneratorConfig(seed=7, users=200, malformed_rate=0.0, bad_timestamp_rate=0.0)
    sent = produce_generated(kafka, {"playback": playback, "interactions": interactions},
                             config, 6000)
    got_playback = decoded(read_all(kafka, playback), "PlaybackEvent")
    got_inter = decoded(read_all(kafka, interactions), "InteractionEvent")

    def ids(values: list[dict]) -> Counter[str]:
        return Counter(v["event_id"] for v in values)

    want_playback = [r.value for r in sent if r.stream == "playback"]
    want_inter = [r.value for r in sent if r.stream == "interactions"]
    assert len(got_playback) == len(want_playback) and len(got_inter) == len(want_inter)
    assert ids(got_playback) == ids(want_playback)
    assert ids(got_inter) == ids(want_inter)
    # contents, not just ids: every field survives the trip
    by_id = {v["event_id"]: v for v in want_playback}
    assert all(by_id[v["event_id"]] == v for v in got_playback)


def test_records_keep_key_order_within_a_partition(kafka: str) -> None:
    topic = unique("ordered")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(topic, 2)])
    sink = KafkaSink(kafka)
    codec = codec_factory()("")
    for i in range(3000):
        sink.write(topic, f"k{i % 7}".encode(), codec.encode({"i": i}), None)
    sink.flush()
    msgs = read_all(kafka, topic)
    assert len(msgs) == 3000
    per_key: dict[bytes, list[int]] = {}
    for m in msgs:
        per_key.setdefault(m.key(), []).append(codec.decode_batch([m.value()])[0][0]["i"])
    assert len(per_key) == 7
    assert all(v == sorted(v) for v in per_key.values())
