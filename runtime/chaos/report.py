"""The report of a chaos run: ``chaos.md`` and ``timeline.png`` in one folder.

The timeline draws lag and throughput (committed input records per second, sampled
each second) over the run, with the faults as markers. matplotlib comes with
``pip install 'shoal[chaos]'``; without it the Markdown is still written and says so.
"""

from __future__ import annotations

from pathlib import Path

from runtime.chaos.campaign import Record
from runtime.chaos.verdict import Comparison

_MARKERS = {
    "kill": ("x", "tab:red"),
    "broker_pause": ("s", "tab:purple"),
    "sink_stall": ("D", "tab:orange"),
}


def write_report(
    folder: Path,
    job: str,
    settings: dict[str, str],
    record: Record,
    comparison: Comparison | None,
    line: str,
    cannot_judge: str | None = None,
) -> list[Path]:
    """Write ``chaos.md`` (and ``timeline.png`` when matplotlib is there); return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    png = folder / "timeline.png"
    plotted = plot_timeline(png, job, record)
    if plotted:
        written.append(png)
    md = folder / "chaos.md"
    md.write_text(_markdown(job, settings, record, comparison, line, cannot_judge, plotted))
    written.insert(0, md)
    return written


def _markdown(
    job: str,
    settings: dict[str, str],
    record: Record,
    comparison: Comparison | None,
    line: str,
    cannot_judge: str | None,
    plotted: bool,
) -> str:
    out = [f"# Chaos run of `{job}`", "", "```", line, "```", ""]
    if cannot_judge:
        out += [f"**Verdict: cannot judge** - {cannot_judge}", ""]
    elif comparison is not None:
        verdict = "pass" if comparison.passed else "fail"
        out += [
            f"**Verdict: {verdict}**: {comparison.expected:,} outputs expected from the "
            f"job's own graph over the same input, {comparison.outputs:,} committed; "
            f"{comparison.lost:,} lost, {comparison.duplicated:,} duplicated.",
            "",
        ]
        if comparison.examples:
            out += ["Differences (first few):", ""]
            out += [f"- `{e}`" for e in comparison.examples]
            out.append("")
    out += ["## Settings", "", "| setting | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in settings.items()]
    out += ["", "## Faults", "", "| time (s) | fault | target | done |", "|---:|---|---|---|"]
    out += [
        f"| {d.at_s:.1f} | {d.kind} | {d.detail} | {'yes' if d.ok else 'no'} |" for d in record.done
    ]
    lags = [s.lag for s in record.samples if s.lag is not None]
    rates = [s.rate for s in record.samples if s.rate is not None]
    out += [
        "",
        "## Lag and throughput",
        "",
        f"{len(record.samples)} samples, one a second; highest lag {max(lags, default=0):,} "
        f"records; throughput up to {max(rates, default=0.0):,.0f} records/s.",
        "",
        "![timeline](timeline.png)" if plotted else "(no timeline: matplotlib is not installed)",
        "",
    ]
    return "\n".join(out)


def plot_timeline(path: Path, job: str, record: Record) -> bool:
    """Draw lag and throughput with fault markers; ``False`` without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lag_ax, rate_ax) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    at = [s.at_s for s in record.samples]
    lag_ax.plot(at, [s.lag if s.lag is not None else float("nan") for s in record.samples])
    lag_ax.set_ylabel("lag (records)")
    rate_ax.plot(at, [s.rate if s.rate is not None else float("nan") for s in record.samples])
    rate_ax.set_ylabel("committed records/s")
    rate_ax.set_xlabel("seconds since chaos started")
    for kind, (marker, color) in _MARKERS.items():
        times = [d.at_s for d in record.done if d.kind == kind and d.ok]
        if not times:
            continue
        for ax in (lag_ax, rate_ax):
            for t in times:
                ax.axvline(t, color=color, alpha=0.25, linewidth=1)
        lag_ax.scatter(times, [0] * len(times), marker=marker, color=color, label=kind, zorder=3)
    if record.done:
        lag_ax.legend(loc="upper right")
    lag_ax.set_title(f"chaos: {job}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
