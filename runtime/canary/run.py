"""A canary run: the candidate in shadow beside the running baseline, then a judgement.

1. **Cut.** A savepoint of the running baseline (``runtime.savepoint``); while its
   workers hold at the cut, the ends of its sink topics are read: everything the
   baseline writes after them comes from input after the cut, as everything the
   candidate writes does.
2. **Shadow.** The candidate starts from that savepoint in its own consumer group
   (``<group>-canary``), on the same inputs, with every sink bound to a topic of its
   own (``<topic>.canary``; a sink bound to a URL goes to ``<group>-canary.<sink>``)
   and its own dead-letter topic: never the production sinks.
3. **Samples.** Once the candidate has caught up with where the baseline stood at the
   cut, both are sampled every ``interval`` for ``duration``: records committed,
   CPU seconds and resident memory of their workers (``runtime.canary.usage``, from the
   supervisors' state files), dead letters written. Per interval: ``throughput`` is
   records per CPU second (what a record costs, which wall-clock rates hide while
   both keep up), ``dead_letter_rate`` dead letters per record, ``rss_mb``.
4. **Outputs.** Each job's sink records after the cut, up to the lower of the two
   jobs' committed watermarks (of their inputs and their repartition topics), keyed by
   ``(sink, message key, event time)``: a window's result has one such identity, and
   per-record outputs are compared as the multiset of values under it.
5. **Judgement** (``runtime.canary.judge``) and, on request, promotion: the baseline
   stops with a savepoint and the candidate starts from it on the production bindings.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.kafka.admin import KafkaAdmin
from connectors.kafka.ranges import read_range
from runtime.api.bindings import Bindings
from runtime.api.errors import ConfigError, ConnectorError
from runtime.api.job import Job
from runtime.canary.judge import (
    DEFAULT_RULES,
    Judgement,
    MetricRule,
    compare_metric,
    compare_outputs,
    verdict,
)
from runtime.canary.usage import usage_of
from runtime.chaos.replay import partitions_of, sink_topics, span
from runtime.cli.supervisor import read_workers, service_urls, workers_file
from runtime.engine.topics import internal_topics

__all__ = ["CanaryOptions", "CanaryRun", "Samples", "candidate_bindings", "run_canary"]

TP = tuple[str, int]
Say = Callable[[str], None]

#: The metrics a canary measures from Kafka and the workers' processes alone.
MEASURED = ("throughput", "dead_letter_rate", "rss_mb")
#: The metrics it measures from the workers' HTTP service (``/metrics``) when both
#: jobs serve one (``shoal run --http``).
FROM_HTTP = ("late_rate", "checkpoint_ms", "latency_p99_ms")


@dataclass(frozen=True)
class Scrape:
    """Counters of a job's workers summed from their ``/metrics``."""

    late: float = 0.0
    checkpoint_sum: float = 0.0
    checkpoint_count: float = 0.0
    latency: tuple[tuple[float, float], ...] = ()  # (upper bound s, cumulative count)
    workers: int = 0


def scrape(urls: Sequence[str], token: str | None = None, timeout_s: float = 2.0) -> Scrape:
    """Read and sum the workers' metrics (unreachable workers are left out)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    late = ck_sum = ck_count = 0.0
    buckets: dict[float, float] = defaultdict(float)
    read = 0
    for url in urls:
        req = urllib.request.Request(f"{url}/metrics")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - our own loopback service
                text = resp.read().decode()
        except OSError:
            continue
        read += 1
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "shoal_step_records_late_total" or (
                    sample.name == "shoal_step_records_late"
                ):
                    late += sample.value
                elif sample.name == "shoal_checkpoint_seconds_sum":
                    ck_sum += sample.value
                elif sample.name == "shoal_checkpoint_seconds_count":
                    ck_count += sample.value
                elif sample.name == "shoal_event_to_sink_seconds_bucket":
                    buckets[float(sample.labels["le"])] += sample.value
    return Scrape(late, ck_sum, ck_count, tuple(sorted(buckets.items())), read)


Buckets = Sequence[tuple[float, float]]


def p99_ms(before: Buckets, after: Buckets) -> float | None:
    """The 99th percentile (bucket upper bound, ms) of what was observed in between."""
    old = dict(before)
    diffs = [(le, count - old.get(le, 0.0)) for le, count in after]
    if not diffs or diffs[-1][1] <= 0 or any(d < 0 for _, d in diffs):
        return None
    total = diffs[-1][1]
    for le, cum in diffs:
        if cum >= 0.99 * total:
            return None if math.isinf(le) else le * 1000
    return None


@dataclass(frozen=True)
class CanaryOptions:
    """What a canary run needs besides the two jobs."""

    group: str
    binds: tuple[str, ...]
    duration_s: float
    interval_s: float = 1.0
    workers: int = 1
    tolerance: float = 0.0
    min_agreement: float = 1.0
    pass_score: float = 90.0
    marginal_score: float = 75.0
    run_args: tuple[str, ...] = ()
    home: Path = Path(".")
    folder: Path = Path(".")
    catch_up_s: float = 300.0


@dataclass
class Samples:
    """Per-interval samples of one job, and its totals."""

    series: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    times: list[float] = field(default_factory=list)
    records: int = 0
    dead_letters: int = 0


@dataclass
class CanaryRun:
    """Everything a canary run found (for the report)."""

    baseline: Samples
    candidate: Samples
    judgement: Judgement
    compared_until_ms: int
    not_measured: tuple[str, ...]
    shadow_group: str
    candidate_log: Path


def candidate_bindings(bindings: Bindings, group: str) -> tuple[Bindings, list[str]]:
    """The shadow's bindings: the same inputs, a topic of its own for every sink.

    Returns:
        The bindings and the same as ``NAME=TOPIC`` arguments for ``shoal run``.
    """
    sinks = {
        name: f"{target}.canary" if "://" not in target else f"{group}-canary.{name}"
        for name, target in bindings.sinks.items()
    }
    dead = f"{group}-canary.dead-letters"
    shadow = Bindings(sources=dict(bindings.sources), sinks=sinks, dead_letters=dead)
    args = [f"{n}={t}" for n, t in {**shadow.sources, **shadow.sinks}.items()]
    return shadow, [*args, f"dead-letters={dead}"]


class _Job:
    """One side of the canary: where its records, dead letters and processes are."""

    def __init__(self, admin: KafkaAdmin, group: str, bindings: Bindings, home: Path) -> None:
        self.admin, self.group, self.bindings = admin, group, bindings
        self.inputs = sorted(set(bindings.sources.values()))
        self.pid_file = workers_file(home, group)
        self.samples = Samples()
        self._last: tuple[float, int, int, float] | None = None
        self._home = home
        self._scraped: Scrape | None = None
        self.served = False

    def urls(self) -> list[str]:
        return service_urls(self._home, self.group)

    def _sample_http(self, records: int) -> None:
        urls = self.urls()
        if not urls:
            return
        now = scrape(urls, os.environ.get("SHOAL_HTTP_TOKEN"))
        last, self._scraped = self._scraped, now
        if last is None or now.workers != len(urls) or last.workers != now.workers:
            return
        self.served = True
        series = self.samples.series
        late = now.late - last.late
        if records > 0 and late >= 0:
            series["late_rate"].append(late / records)
        count = now.checkpoint_count - last.checkpoint_count
        if count > 0 and now.checkpoint_sum >= last.checkpoint_sum:
            spent = now.checkpoint_sum - last.checkpoint_sum
            series["checkpoint_ms"].append(spent / count * 1000)
        p99 = p99_ms(last.latency, now.latency)
        if p99 is not None:
            series["latency_p99_ms"].append(p99)

    def committed(self) -> int:
        offsets = self.admin.group_offsets(self.group)
        return sum(o for tp, (o, _) in offsets.items() if tp[0] in self.inputs)

    def dead_letters(self) -> int:
        topic = self.bindings.dead_letters
        if not topic or topic not in self.admin.topics():
            return 0
        parts = partitions_of(self.admin, [topic])
        return sum(self.admin.end_offsets(parts).values())

    def pids(self) -> list[int]:
        workers = read_workers(self.pid_file).get("workers", {})
        return [int(p) for p in workers.values()]

    def sample(self, t: float) -> None:
        """Take one sample; the first only sets the origin of the next interval."""
        try:
            records, dead = self.committed(), self.dead_letters()
        except ConnectorError:
            return  # the coordinator moving: this interval is skipped
        use = usage_of(self.pids())
        self._sample_http(records - self._last[1] if self._last is not None else 0)
        if self._last is not None:
            _, r0, d0, c0 = self._last
            n, cpu = records - r0, use.cpu_s - c0
            if n > 0 and cpu > 0:
                self.samples.series["throughput"].append(n / cpu)
                self.samples.series["dead_letter_rate"].append(max(0, dead - d0) / n)
            self.samples.records += max(0, n)
            self.samples.dead_letters += max(0, dead - d0)
        if use.alive:
            self.samples.series["rss_mb"].append(use.rss_mb)
        self.samples.times.append(t)
        self._last = (t, records, dead, use.cpu_s)


def _sink_ends(admin: KafkaAdmin, bindings: Bindings) -> dict[TP, int]:
    topics = list(sink_topics(bindings).values())
    return admin.end_offsets(partitions_of(admin, topics)) if topics else {}


def _watermark(
    admin: KafkaAdmin, group: str, job: Job, inputs: Sequence[str], sinks: list[TP]
) -> int:
    """The lowest watermark the group's last checkpoints recorded on its inputs and on
    its repartition topics: a window downstream of a repartition fires when the marks
    that crossed the topic pass its end, one checkpoint or more after the inputs'
    watermark did, so only the lower of both says what the job has emitted."""
    parts = partitions_of(admin, [*inputs, *internal_topics(job, group)])
    where = span(admin, group, parts, sinks)
    if not where.watermarks or len(where.watermarks) < len(parts):
        raise ConfigError(f"group {group!r} has not checkpointed every input partition yet")
    return min(where.watermarks.values())


def _outputs(
    client: Any,
    job: Job,
    bindings: Bindings,
    codecs: Any,
    starts: Mapping[TP, int],
    ends: Mapping[TP, int],
    until_ms: int,
) -> list[tuple[tuple[str, str, int], list[Any]]]:
    """``((sink, key, event time), values)`` of the records between the offsets whose
    event time is below ``until_ms``; values sorted so that multisets compare."""
    schema = {s.name: s.schema for s in job.sinks}
    grouped: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
    for name, topic in sink_topics(bindings).items():
        codec = codecs.sink(name, schema[name])
        for (t, p), stop in ends.items():
            if t != topic:
                continue
            recs = [
                r
                for r in read_range(client, t, p, starts.get((t, p), 0), stop)
                if r.timestamp_ms < until_ms
            ]
            values, failures = codec.decode_batch([r.value for r in recs])
            bad = {i for i, _ in failures}
            good = iter(values)
            for i, r in enumerate(recs):
                value = r.value if i in bad else next(good)
                key = "" if r.key is None else r.key.decode("utf-8", "backslashreplace")
                grouped[(name, key, r.timestamp_ms)].append(value)
    return [
        (ident, sorted(vals, key=lambda v: json.dumps(v, sort_keys=True, default=str)))
        for ident, vals in grouped.items()
    ]


def _spawn_candidate(
    spec: str, savepoint: Path, group: str, binds: list[str], options: CanaryOptions, log: Path
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "runtime.cli.main", "run", spec,
        "--from-savepoint", str(savepoint), "--group", group,
        "--workers", str(options.workers),
        *[a for b in binds for a in ("--bind", b)],
        *options.run_args,
    ]  # fmt: skip
    out = log.open("ab")
    try:
        env = {**os.environ, "SHOAL_HOME": str(options.home)}
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    finally:
        out.close()


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM a supervisor (its workers checkpoint and leave), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_canary(
    client: Any,
    baseline: Job,
    candidate: Job,
    candidate_spec: str,
    codecs: Any,
    options: CanaryOptions,
    say: Say,
    rules: Sequence[MetricRule] = DEFAULT_RULES,
) -> tuple[CanaryRun, subprocess.Popen[bytes]]:
    """Cut, shadow, sample, compare and judge (see the module docstring).

    Returns:
        What was found, and the shadow's supervisor (still running: the caller stops
        it, or promotes).

    Raises:
        ConfigError: the baseline is not running here, the candidate does not start or
            does not catch up, or nothing could be measured.
    """
    from runtime.savepoint.coordinator import CommandOptions, Coordinator

    admin = KafkaAdmin(client)
    base_bind = Bindings.for_job(baseline, options.binds)
    shadow_group = f"{options.group}-canary"
    shadow_bind, shadow_args = candidate_bindings(base_bind, options.group)
    base = _Job(admin, options.group, base_bind, options.home)
    if not base.pids():
        raise ConfigError(
            f"no supervisor of group {options.group!r} runs here (SHOAL_HOME "
            f"{options.home}): start the baseline with shoal run --workers N"
        )
    shadow = _Job(admin, shadow_group, shadow_bind, options.home)
    options.folder.mkdir(parents=True, exist_ok=True)
    savepoint = options.folder / "savepoint"
    held: dict[str, Any] = {}

    def at_cut(manifest: Any) -> None:
        held["sinks"] = _sink_ends(admin, base_bind)
        held["committed"] = base.committed()

    coordinator = Coordinator(
        client, options.group, CommandOptions(answer_s=60.0, drain_s=60.0), echo=say
    )
    try:
        manifest = coordinator.savepoint(savepoint, on_hold=at_cut)
    finally:
        coordinator.close()
    cut_ms = min(
        (int(p["wm"]) for s in manifest.sources.values() for p in s["partitions"].values()
         if p.get("wm") is not None),
        default=0,
    )  # fmt: skip
    say(f"canary: baseline cut at its savepoint ({savepoint}), watermark {cut_ms}")
    log = options.folder / "candidate.log"
    if base.urls():  # the baseline serves its metrics: so does the shadow, for comparison
        options = replace(options, run_args=(*options.run_args, "--http", "127.0.0.1:0"))
    proc = _spawn_candidate(candidate_spec, savepoint, shadow_group, shadow_args, options, log)
    say(f"canary: candidate {candidate_spec} started in shadow as {shadow_group} (log {log})")
    try:
        deadline = time.monotonic() + options.catch_up_s
        target: int | None = None
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise ConfigError(
                    f"the candidate exited with code {proc.returncode}: {' | '.join(tail)}"
                )
            try:
                # Caught up: past where the baseline stood once the shadow's workers ran
                # (not just the cut: the baseline went on while the candidate started).
                if target is None and shadow.pids():
                    target = max(base.committed(), held["committed"])
                done = target is not None and shadow.committed() >= target
            except ConnectorError:
                done = False
            if done:
                break
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"the candidate did not catch up with the cut in {options.catch_up_s:.0f}s"
                )
            time.sleep(0.5)
        say(f"canary: candidate caught up with the cut; sampling both for {options.duration_s:g}s")
        t0 = time.monotonic()
        next_at = t0
        while True:
            now = time.monotonic()
            base.sample(now - t0)
            shadow.sample(now - t0)
            if now - t0 >= options.duration_s:
                break
            next_at += options.interval_s
            time.sleep(max(0.0, next_at - time.monotonic()))
            if proc.poll() is not None:
                raise ConfigError(f"the candidate exited with code {proc.returncode} (log {log})")
        base_sinks = list(held["sinks"])
        shadow_sinks = partitions_of(admin, list(sink_topics(shadow_bind).values()))
        until = min(
            _watermark(admin, options.group, baseline, base.inputs, base_sinks),
            _watermark(admin, shadow_group, candidate, shadow.inputs, shadow_sinks),
        )
        say(f"canary: comparing outputs with event time in [{cut_ms}, {until})")
        mine = _outputs(
            client, baseline, base_bind, codecs, held["sinks"], _sink_ends(admin, base_bind), until
        )
        theirs = _outputs(
            client, candidate, shadow_bind, codecs, {}, _sink_ends(admin, shadow_bind), until
        )
        agreement = compare_outputs(
            mine,
            theirs,
            lambda item: item[0],
            tolerance=options.tolerance,
            # one record per identity (a window's result): its fields, so that a numeric
            # field's systematic shift is tested; several: the sorted list of them
            compared=lambda item: item[1][0] if len(item[1]) == 1 else item[1],
        )
        results = []
        measured = MEASURED + (FROM_HTTP if base.served and shadow.served else ())
        not_measured = tuple(r.name for r in rules if r.name not in measured)
        for rule in rules:
            if rule.name not in measured:
                continue
            b, c = base.samples.series.get(rule.name), shadow.samples.series.get(rule.name)
            if rule.name in FROM_HTTP and (not b or not c):
                not_measured += (rule.name,)  # e.g. no checkpoint finished in an interval
                continue
            if not b or not c:
                raise ConfigError(
                    f"no {rule.name} samples for the "
                    f"{'baseline' if not b else 'candidate'}: did it read anything during "
                    f"the {options.duration_s:g}s?"
                )
            results.append(compare_metric(rule, b, c))
        judgement = verdict(
            results,
            agreement,
            min_agreement=options.min_agreement,
            pass_score=options.pass_score,
            marginal_score=options.marginal_score,
        )
    except BaseException:
        stop_process(proc)
        raise
    found = CanaryRun(
        base.samples, shadow.samples, judgement, until, not_measured, shadow_group, log
    )
    return found, proc
