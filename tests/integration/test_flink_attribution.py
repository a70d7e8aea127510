"""The attribution job (an interval join and a global table) on both engines, against
brute force.

One generated input (interactions and playback, two partitions each; duplicates and
disorder within the watermark bound, nothing late) and the generator's title catalogue
on a compacted topic, written before the job starts, plus one catalogue record whose key
is not UTF-8 text. The job runs on the native engine (one worker until its input is
quiet) and on Flink (a local mini cluster, bounded sources: the end of input fires every
timer and window; the table join reads the catalogue when its subtasks open). Both
outputs must equal the brute-force reference (``tests/reference/attribution.py``):
Flink's in full, the native engine's for every impression window due under its final
watermark (and any other it emitted). Each engine dead-letters that catalogue record
once.
"""

from __future__ import annotations

from pathlib import Path

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from jobs.attribution import job
from jobs.attribution.job import SETTLE_MS, WINDOW_MS
from runtime.generator import GeneratorConfig
from tests.integration.helpers import decoded, produce_generated, unique, write_catalogue
from tests.integration.test_flink_equality import FLINK_MARKS, recent_start_ms
from tests.integration.test_flink_reference_jobs import run_both
from tests.reference.attribution import reference_metrics, sort_metrics

pytestmark = FLINK_MARKS


def group_of(m: dict[str, object]) -> tuple[object, ...]:
    return (m["group_kind"], m["window_start_ms"], m["row_name"], m["rank"], m["genre"])


def test_attribution_on_both_engines_equals_reference(kafka: str, tmp_path: Path) -> None:
    interactions, playback, catalogue_t = unique("inter"), unique("play"), unique("catalogue")
    KafkaAdmin(kafka).ensure_topics([
        TopicSpec(interactions, 2), TopicSpec(playback, 2),
        TopicSpec(catalogue_t, 1, config={"cleanup.policy": "compact"}),
    ])  # fmt: skip
    config = GeneratorConfig(
        start_ms=recent_start_ms(),
        seed=12,
        users=20,
        late_rate=0.0,
        out_of_order_ms=2_000,
        duplicate_rate=0.02,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
    )
    catalogue = write_catalogue(kafka, catalogue_t, config)
    sink = KafkaSink(kafka)
    encode = codec_factory()("TitleCatalogEntry").encode
    sink.write(catalogue_t, b"\xff", encode(catalogue[0][1]), None)  # not UTF-8: a dead letter
    sink.flush()
    sent = produce_generated(
        kafka, {"interactions": interactions, "playback": playback}, config, 6_000
    )
    sources = {"interactions": interactions, "playback": playback, "title-catalogue": catalogue_t}
    worker, native, flink = run_both(
        kafka, tmp_path, job, sources, ["attribution-metrics", "attribution-late"]
    )
    want = reference_metrics(
        [r.value for r in sent if r.stream == "interactions"],
        [r.value for r in sent if r.stream == "playback"],
        {k.decode(): v for k, v in catalogue},
    )
    watermark = min(worker.last_watermarks.values())
    due = [m for m in want if m["window_start_ms"] + SETTLE_MS + WINDOW_MS <= watermark]
    assert len(due) > 100 and len(want) > len(due)
    results = {}
    for engine, out in (("native", native), ("flink", flink)):
        got = sort_metrics(decoded(out["attribution-metrics"], "AttributionMetric"))
        results[engine] = {group_of(m): m for m in got}
        if engine == "native":
            expected = [m for m in want if m in due or group_of(m) in results[engine]]
        else:
            expected = want  # the end of the bounded input settles every impression
        assert got == expected, engine
        assert decoded(out["attribution-late"], "") == [], engine
        letters = decoded(out["dead-letters"], "DeadLetter")
        bad = ("title-catalogue", "DecodeError", 0, len(catalogue))
        assert [(d["step"], d["error_class"], d["source_partition"], d["source_offset"])
                for d in letters] == [bad], engine  # fmt: skip
    assert results["native"].keys() <= results["flink"].keys()
    assert all(results["flink"][k] == m for k, m in results["native"].items())
