"""The canary's report: ``canary.md`` (settings, metrics, outputs, verdict) and
``canary.png`` (each measured metric over the run, baseline beside candidate)."""

from __future__ import annotations

from pathlib import Path

from runtime.canary.run import CanaryRun

__all__ = ["write_report"]


def write_report(folder: Path, baseline: str, candidate: str, run: CanaryRun) -> list[Path]:
    """Write the report into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    judged = run.judgement
    lines = [
        f"# Canary: {candidate} against {baseline}",
        "",
        f"**{judged.line()}**",
        "",
        f"Shadow group `{run.shadow_group}`; outputs compared up to event time "
        f"{run.compared_until_ms}; candidate log `{run.candidate_log.name}`.",
        "",
        "## Metrics",
        "",
        "| metric | worse when | baseline (median) | candidate (median) | change | p | outcome |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for m in judged.metrics:
        lines.append(
            f"| {m.rule.name} | {m.rule.worse} | {m.baseline:,.4g} | {m.candidate:,.4g} "
            f"| {m.change:+.1%} | {m.p_value:.4f} | {m.outcome} |"
        )
    if run.not_measured:
        missing = ", ".join(run.not_measured)
        lines += ["", f"Not measured: {missing} (need the workers' HTTP service)."]
    lines += [
        "",
        "Throughput is records per CPU second of the job's workers (what a record costs);",
        "the dead-letter rate is dead letters per record; both per sampling interval.",
        "",
        "## Outputs",
        "",
    ]
    if judged.outputs is None:
        lines.append("Not compared.")
    else:
        lines.append(judged.outputs.line())
        for ident, b, c in judged.outputs.examples:
            lines.append(f"- `{ident}`: baseline `{b}`, candidate `{c}`")
    if judged.reasons:
        lines += ["", "## Why", "", *[f"- {r}" for r in judged.reasons]]
    md = folder / "canary.md"
    md.write_text("\n".join(lines) + "\n")
    written = [md]
    png = _plot(folder / "canary.png", run)
    if png is not None:
        written.append(png)
    return written


def _plot(path: Path, run: CanaryRun) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None  # the chaos/canary extra brings matplotlib; the Markdown says it all
    names = [m.rule.name for m in run.judgement.metrics]
    if not names:
        return None
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.4 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for label, samples in (("baseline", run.baseline), ("candidate", run.candidate)):
            values = samples.series.get(name, [])
            ax.plot(range(len(values)), values, marker=".", label=label)
        ax.set_title(name)
        ax.set_xlabel("sample")
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
