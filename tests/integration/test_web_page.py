"""The live page in headless Chromium while generated traffic flows through the QoE job.

Debian's ``chromium`` driven by Playwright for Python (never a downloaded browser:
``executable_path`` points at the system one; ``.ci/run`` installs it). The page
must show numbers, and the numbers must change as traffic flows.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from connectors.codecs import codec_factory
from connectors.kafka.admin import KafkaAdmin, TopicSpec
from connectors.kafka.sink import KafkaSink
from jobs import personalization, sessionization
from jobs.attribution import job as attribution_job
from jobs.qoe import job as qoe_job
from jobs.qoe.alerts import build_alerts
from jobs.qoe.alerts_rules import parse_rules
from runtime.generator import Degradation, Generator, GeneratorConfig
from tests.integration.helpers import unique, write_catalogue
from tests.integration.test_service import ServedJob, recent_start_ms

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MINUTE = 60_000


class Trickle:
    """Produces generated traffic in small chunks on a thread, until stopped.

    Few users, so event time moves about a minute per second: 1-minute windows close
    all the time. CDN ``cdn-b`` degrades from minute 5 to minute 40.
    """

    CONFIG = GeneratorConfig(
        seed=7,
        users=300,
        start_ms=recent_start_ms() - 60 * MINUTE,
        interaction_ratio=0.2,
        late_rate=0.0,
        malformed_rate=0.0,
        bad_timestamp_rate=0.0,
        degradations=(Degradation("cdn-b", 5 * MINUTE, 40 * MINUTE),),
    )

    def __init__(self, kafka: str, topics: dict[str, str], per_second: int = 2000) -> None:
        self.topics = topics
        self.sink = KafkaSink(kafka)
        codecs = codec_factory()
        self.codecs = {
            "playback": codecs("PlaybackEvent"),
            "interactions": codecs("InteractionEvent"),
        }
        self.records = iter(Generator(self.CONFIG))
        self.per_second = per_second
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trickle", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        chunk = self.per_second // 10
        while not self._stop.is_set():
            for rec in [next(self.records) for _ in range(chunk)]:
                data = self.codecs[rec.stream].encode(rec.value)
                self.sink.write(self.topics[rec.stream], rec.key, data, None)
            self.sink.flush()
            self.sent += chunk
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        self.sink.close()


@pytest.fixture(scope="module")
def topics(kafka: str) -> Iterator[dict[str, str]]:
    """Fresh input topics with traffic flowing into them."""
    names = {"playback": unique("playback"), "interactions": unique("interactions")}
    KafkaAdmin(kafka).ensure_topics([TopicSpec(t, 4) for t in names.values()])
    trickle = Trickle(kafka, names)
    try:
        yield names
    finally:
        trickle.stop()


@pytest.fixture(scope="module")
def qoe_served(
    kafka: str, topics: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedJob, str]]:
    """The QoE job served on a free port; yields it and its metrics topic."""
    metrics = unique("qoe")
    sj = ServedJob(
        kafka,
        qoe_job,
        [
            f"playback={topics['playback']}",
            f"qoe-metrics={metrics}",
            f"qoe-excluded-events={unique('excluded')}",
            f"dead-letters={unique('dead')}",
        ],
        tmp_path_factory.mktemp("qoe-state"),
    )
    try:
        yield sj, metrics
        sj.check()
    finally:
        sj.close()


@pytest.fixture(scope="module")
def qoe_page(qoe_served: tuple[ServedJob, str]) -> str:
    """The QoE job's page."""
    return qoe_served[0].url


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    """A page of Debian's Chromium, headless."""
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is missing: apt-get install chromium (see .ci/run) - tests never skip"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1500})
            yield page
        finally:
            browser.close()


def number(text: str) -> float:
    """The first number in ``text`` (thousands separators allowed)."""
    m = re.search(r"-?\d[\d,]*(\.\d+)?", text)
    assert m, f"no number in {text!r}"
    return float(m.group().replace(",", ""))


def changes(page: Page, selector: str, timeout_s: float = 30.0) -> tuple[str, str]:
    """Wait until the text of ``selector`` changes; return (before, after)."""
    before = page.locator(selector).text_content() or ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        after = page.locator(selector).text_content() or ""
        if after != before:
            return before, after
    raise AssertionError(f"{selector} stayed {before!r} for {timeout_s}s")


def test_live_page_shows_changing_numbers(
    qoe_page: str, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(qoe_page + "/")
    try:
        check_page(page)
    finally:
        page.screenshot(path=str(tmp_path / "live-page.png"), full_page=True)
    assert not errors, errors


def check_page(page: Page) -> None:
    """What a person looking at the QoE page should see."""
    expect(page.locator("#job-name")).to_have_text("qoe", timeout=15_000)
    expect(page.locator("#health")).to_have_text("healthy", timeout=15_000)

    # header counters: a number that grows
    expect(page.locator("#stat-records")).to_have_text(re.compile(r"^[1-9][\d,]*$"), timeout=30_000)
    before, after = changes(page, "#stat-records")
    assert number(after) > number(before)
    expect(page.locator("#stat-rate")).to_have_text(re.compile(r"/s$"))

    # topology: every step drawn, live rates on it
    steps = [s.name for s in qoe_job.nodes]
    expect(page.locator("[data-step-rate]")).to_have_count(len(steps))
    expect(page.locator('[data-step-rate="playback"]')).to_have_text(re.compile(r"^[\d,]+/s"))
    changes(page, '[data-step-rate="playback"]')

    # QoE per CDN: a row per CDN with numbers, and the window moves on
    expect(page.locator("#qoe-table tbody tr")).to_have_count(4, timeout=60_000)
    cells = page.locator('#qoe-table tbody tr[data-cdn="cdn-b"] td').all_inner_texts()
    assert cells[0].strip() == "cdn-b" and cells[2].endswith("%") and number(cells[4]) > 0
    expect(page.locator("#qoe-chart polyline")).to_have_count(4)
    changes(page, "#qoe-window", timeout_s=60)
    # QoE per country: bars with percentages
    expect(page.locator("#country-bars .bar-row").first).to_be_visible()
    assert page.locator("#country-bars .bar-row").count() >= 3
    assert "%" in page.inner_text("#country-bars")

    # panels this job does not feed say so
    for panel in ("#panel-alerts", "#panel-sessions", "#panel-scores"):
        expect(page.locator(panel)).to_have_class(re.compile(r"\babsent\b"))
        assert page.get_attribute(panel, "data-absent").startswith("not in this job")

    # the live tap panel: a bad filter is explained, a good one streams matching records
    page.select_option("#tap-step", "qoe-metrics")
    page.fill("#tap-filter", 'group_kind = "cdn"')
    page.click("#tap-toggle")
    expect(page.locator("#tap-note")).to_contain_text("column", timeout=10_000)
    page.fill("#tap-filter", 'group_kind == "cdn" and cdn in ["cdn-a", "cdn-b"]')
    page.click("#tap-toggle")
    expect(page.locator("#tap-records")).to_contain_text('"group_kind":"cdn"', timeout=60_000)
    lines = page.inner_text("#tap-records").splitlines()
    assert lines and all('"cdn":"cdn-a"' in x or '"cdn":"cdn-b"' in x for x in lines)
    changes(page, "#tap-note", timeout_s=60)  # the count of received records goes up
    page.click("#tap-toggle")


@pytest.fixture(scope="module")
def other_pages(
    kafka: str,
    topics: dict[str, str],
    qoe_served: tuple[ServedJob, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Sessionization (2-minute gap), personalization, QoE alerts and attribution (with
    the generator's title catalogue on a compacted topic), each with its page."""
    inputs = [f"playback={topics['playback']}", f"interactions={topics['interactions']}"]
    catalogue = unique("catalogue")
    KafkaAdmin(kafka).ensure_topics([TopicSpec(catalogue, 1, config={"cleanup.policy": "compact"})])
    write_catalogue(kafka, catalogue, Trickle.CONFIG)
    sessions_job = sessionization.build(gap=timedelta(minutes=2), allowed_lateness=timedelta(0))
    # Thresholds this small traffic reaches: cdn-b is degraded from minute 5.
    rules = parse_rules(
        "cdn_rebuffering: rebuffer_ratio > 0.01 for 2 windows group by cdn resolve < 0.005"
    )
    served = {
        "sessions": ServedJob(
            kafka,
            sessions_job,
            [
                *inputs,
                f"sessions={unique('sessions')}",
                f"session-retractions={unique('retr')}",
                f"sessions-late-events={unique('late')}",
                f"dead-letters={unique('dead')}",
            ],
            tmp_path_factory.mktemp("sessions-state"),
        ),
        "scores": ServedJob(
            kafka,
            personalization.build(),
            [
                *inputs,
                f"personalization-scores={unique('scores')}",
                f"dead-letters={unique('dead')}",
            ],
            tmp_path_factory.mktemp("scores-state"),
        ),
        "alerts": ServedJob(
            kafka,
            build_alerts(rules),
            [
                f"qoe-metrics={qoe_served[1]}",
                f"qoe-alerts={unique('alerts')}",
                f"dead-letters={unique('dead')}",
            ],
            tmp_path_factory.mktemp("alerts-state"),
        ),
        "attribution": ServedJob(
            kafka,
            attribution_job,
            [
                *inputs,
                f"title-catalogue={catalogue}",
                f"attribution-metrics={unique('attribution')}",
                f"attribution-late={unique('attribution-late')}",
                f"dead-letters={unique('dead')}",
            ],
            tmp_path_factory.mktemp("attribution-state"),
        ),
    }
    try:
        yield {name: sj.url for name, sj in served.items()}
        for sj in served.values():
            sj.check()
    finally:
        for sj in served.values():
            sj.close()


def test_sessions_scores_alerts_and_attribution_panels(
    other_pages: dict[str, str], browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(other_pages["sessions"] + "/")
    try:
        expect(page.locator("#job-name")).to_have_text("sessionization", timeout=15_000)
        expect(page.locator("#panel-qoe")).to_have_class(re.compile(r"\babsent\b"))
        expect(page.locator("#sessions-list li").first).to_be_visible(timeout=60_000)
        before, after = changes(page, "#sessions-count", timeout_s=60)
        assert number(after) > number(before) > 0
        assert re.search(r"u\d+ · .+ · \d+ titles", page.inner_text("#sessions-list"))
    finally:
        page.screenshot(path=str(tmp_path / "sessions-page.png"), full_page=True)

    page.goto(other_pages["scores"] + "/")
    try:
        expect(page.locator("#job-name")).to_have_text("personalization", timeout=15_000)
        chip = page.locator("#user-chips button").first
        expect(chip).to_be_visible(timeout=60_000)
        user = chip.inner_text()
        page.fill("#user-id", user)
        page.click("#user-form button")
        expect(page.locator("#user-note")).to_contain_text(user, timeout=15_000)
        expect(page.locator("#user-titles li").first).to_be_visible(timeout=15_000)
        titles = page.locator("#user-titles li").all_inner_texts()
        assert all(re.match(r"t\d+", t) and re.search(r"\d\.\d{3}$", t) for t in titles), titles
        page.screenshot(path=str(tmp_path / "scores-titles.png"), full_page=True)
        # typing an unknown user says so
        page.fill("#user-id", "nobody-at-all")
        page.click("#user-form button")
        expect(page.locator("#user-note")).to_contain_text("no state for nobody-at-all")
    finally:
        page.screenshot(path=str(tmp_path / "scores-page.png"), full_page=True)

    page.goto(other_pages["alerts"] + "/")
    try:
        expect(page.locator("#job-name")).to_have_text("qoe_alerts", timeout=15_000)
        expect(page.locator("#alerts-recent li").first).to_be_visible(timeout=90_000)
        # the incident fired before the page opened: the step's kept history shows it
        expect(page.locator("#alerts-recent")).to_contain_text("fired", timeout=15_000)
        recent = page.inner_text("#alerts-recent")
        assert "cdn_rebuffering" in recent and "cdn=cdn-b" in recent
    finally:
        page.screenshot(path=str(tmp_path / "alerts-page.png"), full_page=True)

    page.goto(other_pages["attribution"] + "/")
    try:
        expect(page.locator("#job-name")).to_have_text("attribution", timeout=15_000)
        expect(page.locator("#panel-qoe")).to_have_class(re.compile(r"\babsent\b"))
        # Windows settle 40 minutes of event time after they start (about 40 s here).
        expect(page.locator("#attribution-rows tbody tr").first).to_be_visible(timeout=120_000)
        head = page.inner_text("#attribution-window")
        m = re.search(r"([\d,]+) impressions, ([\d,]+) attributed plays, CTR ([\d.]+)%", head)
        assert m, head
        impressions, plays, ctr = number(m[1]), number(m[2]), float(m[3])
        assert impressions > 0 and 0 <= plays <= impressions
        assert abs(ctr - 100 * plays / impressions) < 0.01
        for row in page.locator("#attribution-rows tbody tr").all_inner_texts():
            cells = row.split("\t")
            assert len(cells) == 5 and number(cells[3]) <= number(cells[2]), row
        expect(page.locator("#attribution-genres .bar-row").first).to_be_visible()
    finally:
        page.screenshot(path=str(tmp_path / "attribution-page.png"), full_page=True)
    assert not errors, errors
