"""The results: a table for the terminal, ``latest.json`` and a bar chart (PNG)."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.runner import Outcome


def ratios(outcomes: list[Outcome]) -> dict[str, float | None]:
    """Events/s of each implementation divided by ``raw``'s (``None`` without both)."""
    raw = next((o.events_per_s for o in outcomes if o.name == "raw"), None)
    return {o.name: (o.events_per_s / raw if raw and o.events_per_s else None) for o in outcomes}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def extra_columns(outcomes: list[Outcome]) -> list[str]:
    """The workload-specific columns that some outcome has a value for."""
    cols = []
    if any(o.latency_ms for o in outcomes):
        cols += ["p50 ms", "p99 ms"]
    if any(o.speedup is not None for o in outcomes):
        cols.append("speed-up")
    if any(o.recovery_s is not None for o in outcomes):
        cols += ["recovery s", "restore s"]
    if any("steady_events_per_s" in o.extra for o in outcomes):
        cols += ["steady events/s", "startup s"]
    return cols


def extra_cells(o: Outcome, cols: list[str]) -> tuple[str, ...]:
    """The values of :func:`extra_columns` for one outcome."""
    values = {
        "p50 ms": _fmt(o.latency_ms.get("p50"), ",.0f"),
        "p99 ms": _fmt(o.latency_ms.get("p99"), ",.0f"),
        "speed-up": _fmt(o.speedup, ".2f"),
        "recovery s": _fmt(o.recovery_s, ".2f"),
        "restore s": _fmt(o.extra.get("restore_s"), ".2f"),
        "steady events/s": _fmt(o.extra.get("steady_events_per_s"), ",.0f"),
        "startup s": _fmt(o.extra.get("startup_s"), ".1f"),
    }
    return tuple(values[c] for c in cols)


def table(workload: str, outcomes: list[Outcome], title: str = "") -> str:
    """A plain-text table: implementation, events/s, ratio to raw, CPU, RSS, correct, ..."""
    ratio = ratios(outcomes)
    cols = extra_columns(outcomes)
    head = (
        "implementation", "events/s", "x raw", "CPU s", "max RSS MB", "correct", "ev/CPU-s",
        *cols,
    )  # fmt: skip
    rows = []
    for o in outcomes:
        if o.unavailable is not None:
            rows.append((o.name, f"unavailable: {o.unavailable}", *[""] * (len(head) - 2)))
            continue
        correct = "n/a" if o.correct is None else ("yes" if o.correct else "NO")
        rows.append(
            (
                o.name,
                _fmt(o.events_per_s, ",.0f"),
                _fmt(ratio[o.name], ".2f"),
                _fmt(o.cpu_s, ".1f"),
                _fmt(o.max_rss_mb, ",.0f"),
                correct,
                _fmt(o.events_per_cpu_s, ",.0f"),
                *extra_cells(o, cols),
            )
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    # An "unavailable" reason spans the row; do not let it widen the other columns.
    widths[1] = max(len(r[1]) for r in [head, *rows] if not r[1].startswith("unavailable"))

    def line(r: tuple[str, ...]) -> str:
        if r[1].startswith("unavailable"):
            return f"{r[0]:<{widths[0]}}  {r[1]}"
        cells = [f"{r[0]:<{widths[0]}}"] + [
            f"{c:>{w}}" for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells)

    rule = "  ".join("-" * w for w in widths)
    heading = f"{workload}: {title}" if title else workload
    return "\n".join([heading, line(head), rule, *(line(r) for r in rows)])


def markdown(
    workload: str,
    outcomes: list[Outcome],
    document: dict[str, Any],
    *,
    events: int | None = None,
    title: str = "",
    target: str = "",
) -> str:
    """The table as Markdown, with the date, machine and input it was measured on."""
    ratio = ratios(outcomes)
    cols = extra_columns(outcomes)
    m, cfg = document["machine"], document["config"]
    name = f"{workload} ({title})" if title else workload
    lines = [
        f"{name}, {events if events is not None else cfg['events']:,} input records, "
        f"{cfg['partitions']} partitions, "
        f"measured {document.get('measured', {}).get(workload) or document['date']} on "
        f"{m.get('cpu') or 'unknown CPU'}, {m['cores']} cores, "
        f"{m.get('memory_gb', '?')} GB (load average before/after: "
        f"{m['load_average_before'][0]} / {m['load_average_after'][0]})"
        + (f". Target: {target}." if target else ""),
        "",
        "| implementation | events/s | x raw | CPU s | max RSS MB | correct | events/CPU-s |"
        + "".join(f" {c} |" for c in cols),
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |" + " ---: |" * len(cols),
    ]
    for o in outcomes:
        if o.unavailable is not None:
            lines.append(
                f"| {o.name} | unavailable: {o.unavailable} | | | | | |" + " |" * len(cols)
            )
            continue
        correct = "n/a" if o.correct is None else ("yes" if o.correct else "**no**")
        lines.append(
            f"| {o.name} | {_fmt(o.events_per_s, ',.0f')} | {_fmt(ratio[o.name], '.2f')} "
            f"| {_fmt(o.cpu_s, '.1f')} | {_fmt(o.max_rss_mb, ',.0f')} | {correct} "
            f"| {_fmt(o.events_per_cpu_s, ',.0f')} |"
            + "".join(f" {c} |" for c in extra_cells(o, cols))
        )
    return "\n".join(lines) + "\n"


def breakdown(outcomes: list[Outcome]) -> str:
    """Where one event's time goes, per phase of Shoal's worker loop, in microseconds
    per input record (``""`` when no outcome carries the loop's counters)."""
    # The phases in the order the worker reports them (``runtime.engine.stats.PHASES``).
    phases = [k[len("phase_") : -len("_s")] for o in outcomes for k in o.extra
              if k.startswith("phase_") and k.endswith("_s")]  # fmt: skip
    phases = list(dict.fromkeys(phases))
    rows = []
    for o in outcomes:
        spent = [o.extra.get(f"phase_{name}_s") for name in phases]
        if o.unavailable is not None or not o.records or not spent or None in spent:
            continue
        per = [1e6 * float(x) / o.records for x in spent if x is not None]
        rows.append(f"| {o.name} | " + " | ".join(f"{x:.2f}" for x in per) + f" | {sum(per):.2f} |")
    if not rows:
        return ""
    return "\n".join([
        "Where one event's time goes (microseconds per input record, wall clock, from the "
        "worker loop's counters, `shoal_phase_seconds_total`; `fetch` includes waiting "
        "for input, `operators` the job's steps with their state and timers, `state` "
        "changelog writes and local state at checkpoints, `commit` the transaction). The "
        "peers have no such counters.",
        "",
        "| implementation | " + " | ".join(phases) + " | total |",
        "| --- |" + " ---: |" * (len(phases) + 1),
        *rows,
    ]) + "\n"  # fmt: skip


def markdown_all(sections: list[Any], document: dict[str, Any]) -> str:
    """One Markdown section per workload."""
    parts = []
    for workload, outcomes, info in sections:
        parts.append(f"## {workload.name}\n\n")
        parts.append(
            markdown(
                workload.name,
                outcomes,
                document,
                events=info.get("events"),
                title=workload.title,
                target=workload.target,
            )
        )
        split = breakdown(outcomes)
        if split:
            parts.append("\n" + split)
        parts.append("\n")
    return "".join(parts)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (how shared the machine was)."""
    return [round(x, 2) for x in os.getloadavg()]


def as_json(outcomes: list[Outcome]) -> dict[str, Any]:
    """``{implementation: {events_per_s, cpu_s, max_rss_mb, ratio_to_raw, correct, ...}}``."""
    ratio = ratios(outcomes)
    out: dict[str, Any] = {}
    for o in outcomes:
        entry = o.as_json()
        if o.unavailable is None:
            entry["ratio_to_raw"] = ratio[o.name]
            entry["correct"] = o.correct
            for k in ("events_per_s", "events_per_cpu_s"):
                if entry.get(k) is not None:
                    entry[k] = round(entry[k])
            for k in (
                "cpu_s",
                "max_rss_mb",
                "elapsed_s",
                "cpu_measured_s",
                "recovery_s",
                "speedup",
            ):
                if entry.get(k) is not None:
                    entry[k] = round(entry[k], 3)
            if entry.get("ratio_to_raw") is not None:
                entry["ratio_to_raw"] = round(entry["ratio_to_raw"], 3)
            if entry.get("latency_ms"):
                entry["latency_ms"] = {k: round(v, 1) for k, v in entry["latency_ms"].items()}
        out[o.name] = entry
    return out


def outcomes_from_json(entries: dict[str, Any]) -> list[Outcome]:
    """Outcomes back from their JSON form (``as_json``; the ratio is recomputed)."""
    known = {f.name for f in fields(Outcome)}
    return [
        Outcome(name=name, **{k: v for k, v in entry.items() if k in known})
        for name, entry in entries.items()
    ]


def merge_previous(path: Path, document: dict[str, Any], sections: list[Any]) -> list[Any]:
    """Add the workloads of the results at ``path`` that this run did not measure to
    ``document`` (with their own input size and measurement date); returns every
    section in registry order."""
    from bench.workloads import WORKLOADS

    if not path.exists():
        return sections
    previous = json.loads(path.read_text())
    ran = {w.name for w, _, _ in sections}
    by_name = {w.name: (w, o, i) for w, o, i in sections}
    inputs = document["config"]["input_records"]
    measured = document["measured"]
    old_inputs = previous.get("config", {}).get("input_records", {})
    old_measured = previous.get("measured", {})
    for name, workload in WORKLOADS.items():
        if name in ran or name not in previous:
            continue
        document[name] = previous[name]
        events = old_inputs.get(name, previous.get("config", {}).get("events"))
        inputs[name] = events
        measured[name] = old_measured.get(name, previous.get("date"))
        by_name[name] = (workload, outcomes_from_json(previous[name]), {"events": events})
    return [by_name[n] for n in WORKLOADS if n in by_name]


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def now_utc() -> str:
    """The current time, ISO 8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def chart_all(path: Path, sections: list[Any], document: dict[str, Any]) -> None:
    """One horizontal bar chart of events/s per workload, stacked in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [0.5 * max(len(outcomes), 2) + 1.6 for _, outcomes, _ in sections]
    fig, axes = plt.subplots(
        len(sections), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes = axes if len(sections) > 1 else [axes]
    m = document["machine"]
    for ax, (workload, outcomes, info) in zip(axes, sections, strict=True):
        subtitle = f"{info.get('events', 0):,} input records"
        _bars(ax, f"{workload.name}: {workload.title}", outcomes, subtitle)
    fig.suptitle(f"Shoal bench, {document['date']}, {m['cores']} cores", fontsize=11)
    # Room at the top for the title, above the first workload's own two-line title.
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.5 / sum(heights)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax: Any, title: str, outcomes: list[Outcome], subtitle: str) -> None:
    """Events/s bars of one workload; wrong answers hatched; extras in the labels."""
    from matplotlib.ticker import FuncFormatter

    ratio = ratios(outcomes)
    # The client limit dwarfs every bar: it goes in the title instead.
    limit = next((o for o in outcomes if o.name == "count" and o.events_per_s), None)
    shown = [o for o in outcomes if o.unavailable is None and o.events_per_s and o is not limit]
    missing = [o for o in outcomes if o not in shown and o is not limit]
    names = [o.name for o in shown][::-1]
    rates = [o.events_per_s or 0.0 for o in shown][::-1]
    colours = []
    for o in shown[::-1]:
        if o.correct is False:
            colours.append("#d62728")
        elif o.name.startswith("shoal"):
            colours.append("#1f77b4")
        elif o.name in ("raw", "count"):
            colours.append("#7f7f7f")
        else:
            colours.append("#ff7f0e")
    bars = ax.barh(names, rates, color=colours)
    for bar, o in zip(bars, shown[::-1], strict=True):
        r = ratio[o.name]
        label = f" {o.events_per_s:,.0f}/s" + (f"  ({r:.2f}x raw)" if r is not None else "")
        if o.latency_ms:
            p50, p99 = o.latency_ms.get("p50", 0), o.latency_ms.get("p99", 0)
            label += f"  p50 {p50:,.0f} ms, p99 {p99:,.0f} ms"
        if o.speedup is not None:
            label += f"  {o.speedup:.2f}x one worker"
        if o.recovery_s is not None:
            label += f"  recovery {o.recovery_s:.1f} s"
        if "steady_events_per_s" in o.extra:
            steady, startup = o.extra["steady_events_per_s"], o.extra.get("startup_s", 0)
            label += f"  steady {steady:,.0f}/s, startup {startup:.0f} s"
        if o.max_rss_mb is not None and "RocksDB state" in title:
            label += f"  RSS {o.max_rss_mb:,.0f} MB"
        if o.correct is False:
            label += "  WRONG"
            bar.set_hatch("//")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=9)
    ax.set_xlabel("events per second (higher is better)", fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
    ax.set_xlim(0, max(rates or [1.0]) * 1.9)
    if limit is not None and limit.events_per_s:
        subtitle += f"; client limit (count, consume only): {limit.events_per_s:,.0f}/s"
    if missing:
        note = "; ".join(f"{o.name}: {o.unavailable or 'no result'}" for o in missing)
        subtitle += f"\nnot shown: {note}"[:200]
    ax.set_title(f"{title}\n{subtitle}", fontsize=9)
