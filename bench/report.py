"""The results: a table for the terminal, ``latest.json`` and a bar chart (PNG)."""

from __future__ import annotations

import json
import os
import platform
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


def table(workload: str, outcomes: list[Outcome]) -> str:
    """A plain-text table: implementation, events/s, ratio to raw, CPU, RSS, correct."""
    ratio = ratios(outcomes)
    head = ("implementation", "events/s", "x raw", "CPU s", "max RSS MB", "correct", "ev/CPU-s")
    rows = []
    for o in outcomes:
        if o.unavailable is not None:
            rows.append((o.name, f"unavailable: {o.unavailable}", "", "", "", "", ""))
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
    return "\n".join([workload, line(head), rule, *(line(r) for r in rows)])


def markdown(workload: str, outcomes: list[Outcome], document: dict[str, Any]) -> str:
    """The table as Markdown, with the date, machine and input it was measured on."""
    ratio = ratios(outcomes)
    m, cfg = document["machine"], document["config"]
    lines = [
        f"{workload}, {cfg['events']:,} events, {cfg['partitions']} partitions, "
        f"measured {document['date']} on {m.get('cpu') or 'unknown CPU'}, {m['cores']} cores, "
        f"{m.get('memory_gb', '?')} GB (load average before/after: "
        f"{m['load_average_before'][0]} / {m['load_average_after'][0]})",
        "",
        "| implementation | events/s | x raw | CPU s | max RSS MB | correct | events/CPU-s |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for o in outcomes:
        if o.unavailable is not None:
            lines.append(f"| {o.name} | unavailable: {o.unavailable} | | | | | |")
            continue
        correct = "n/a" if o.correct is None else ("yes" if o.correct else "**no**")
        lines.append(
            f"| {o.name} | {_fmt(o.events_per_s, ',.0f')} | {_fmt(ratio[o.name], '.2f')} "
            f"| {_fmt(o.cpu_s, '.1f')} | {_fmt(o.max_rss_mb, ',.0f')} | {correct} "
            f"| {_fmt(o.events_per_cpu_s, ',.0f')} |"
        )
    return "\n".join(lines) + "\n"


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
            for k in ("cpu_s", "max_rss_mb", "elapsed_s", "cpu_measured_s"):
                if entry.get(k) is not None:
                    entry[k] = round(entry[k], 3)
            if entry.get("ratio_to_raw") is not None:
                entry["ratio_to_raw"] = round(entry["ratio_to_raw"], 3)
        out[o.name] = entry
    return out


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def now_utc() -> str:
    """The current time, ISO 8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def chart(path: Path, workload: str, outcomes: list[Outcome], subtitle: str) -> None:
    """A horizontal bar chart of events/s; wrong answers hatched, unavailable ones listed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    ratio = ratios(outcomes)
    # The client limit dwarfs every bar: it goes in the title instead.
    limit = next((o for o in outcomes if o.name == "count" and o.events_per_s), None)
    shown = [o for o in outcomes if o.unavailable is None and o.events_per_s and o is not limit]
    missing = [o for o in outcomes if o not in shown and o is not limit]
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(len(shown), 3) + 1.8))
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
        if o.correct is False:
            label += "  WRONG"
            bar.set_hatch("//")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=9)
    ax.set_xlabel("events per second (higher is better)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
    ax.set_xlim(0, max(rates or [1.0]) * 1.45)
    title = f"{workload}: per-user count, 10 s tumbling event-time windows"
    if limit is not None and limit.events_per_s:
        subtitle += f"\nclient limit (count, consume only): {limit.events_per_s:,.0f}/s"
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    if missing:
        note = "; ".join(f"{o.name}: {o.unavailable or 'no result'}" for o in missing)
        fig.text(0.01, 0.01, f"not shown — {note}"[:220], fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04 if missing else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
