"""deploy/grafana and deploy/prometheus use only metrics (and labels) that workers export.

The dashboard and the alert rules are parsed, every ``shoal_*`` metric name and every
``by (...)`` label in their PromQL is collected, and each must appear in a real
/metrics scrape of a worker that has read traffic, checkpointed and served a tap.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka.admin import KafkaAdmin, TopicSpec
from jobs.user_counts import job as user_counts
from runtime.generator import GeneratorConfig
from runtime.service.metrics import METRIC_NAMES
from tests.integration.helpers import produce_generated, unique
from tests.integration.test_service import ServedJob, recent_start_ms

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "shoal-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "shoal-rules.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRIC = re.compile(r"\bshoal_[a-z0-9_]+\b")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
DURATION = re.compile(r"^\d+[smhdw]$")


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def dashboard_queries() -> list[str]:
    """Every PromQL text of the dashboard: panel targets and template variables."""
    board = json.loads(DASHBOARD.read_text())
    out = [v for k, v in _walk(board) if k in ("expr", "definition") and isinstance(v, str)]
    return out


def rule_queries() -> list[str]:
    """Every alert expression."""
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def scrape(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Metric name -> label names, from a worker that did a bit of everything."""
    playback = unique("playback")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(playback, 2)])
    sj = ServedJob(
        kafka,
        user_counts,
        [
            f"playback={playback}",
            f"user-counts={unique('counts')}",
            f"dead-letters={unique('dead')}",
        ],
        tmp_path_factory.mktemp("deploy-state"),
    )
    try:
        sent = produce_generated(
            kafka,
            {"playback": playback},
            GeneratorConfig(seed=5, users=100, start_ms=recent_start_ms(), interaction_ratio=0.0),
            1500,
        )
        sj.wait_read(len(sent))
        # a tap that ends, so the tap families have samples too
        with httpx2.stream(
            "GET", f"{sj.url}/streams/user_counts/counts_10s?recent=1&limit=1", timeout=30
        ) as r:
            assert r.status_code == 200
        # Lag is known after the first checkpoint that followed the reads (from the
        # fetched partitions' ends): wait for it rather than scrape before it.
        deadline = time.monotonic() + 60
        while True:
            text = httpx2.get(f"{sj.url}/metrics", timeout=30).text
            if "shoal_consumer_lag_records{" in text or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        sj.close()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            names.setdefault(s.name, set()).update(s.labels)
    return names


def test_the_files_are_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
    rules = yaml.safe_load(RULES.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names))
    assert {"ShoalConsumerLagGrowing", "ShoalCheckpointsFailing", "ShoalDeadLetterRate"} <= set(
        names
    )
    for rule in alerts:
        assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == [RULES.name]
    # Shoal's label is shoal_job: Prometheus's own job label is left alone.
    assert not any(s.get("honor_labels") for s in config["scrape_configs"])


def test_every_metric_they_use_is_exported(scrape: dict[str, set[str]]) -> None:
    queries = dashboard_queries() + rule_queries()
    used = {m for q in queries for m in METRIC.findall(q)} - {"shoal_job"}  # a label
    assert len(used) >= 15, sorted(used)
    missing = sorted(used - set(scrape))
    assert not missing, f"used by deploy/ but not exported: {missing}"
    # and the collector's own list of names is what a scrape shows
    assert {n for n in scrape if n.startswith("shoal_")} == set(METRIC_NAMES)
    # beside them, the client's process, platform and garbage-collector families
    assert {
        "process_resident_memory_bytes",
        "python_info",
        "python_gc_objects_collected_total",
    } <= set(scrape)


def test_every_label_they_group_by_is_exported(scrape: dict[str, set[str]]) -> None:
    labels = set().union(*scrape.values())
    for query in dashboard_queries() + rule_queries():
        for group in BY.findall(query):
            wanted = {x.strip() for x in group.split(",") if x.strip()}
            assert wanted <= labels, (query, sorted(wanted - labels))
    legends = [v for k, v in _walk(json.loads(DASHBOARD.read_text())) if k == "legendFormat"]
    used = {m for legend in legends for m in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)}
    assert used <= labels | {"instance"}, sorted(used - labels)
