"""``python -m bench``: every implementation on the same broker and input, with ratios.

Starts a local Kafka broker in a temporary folder (or uses ``--bootstrap``), and
for each workload (``bench.workloads``) generates its input once, runs each
implementation in its own process (fresh consumer group, own output topics),
checks each output against the reference, prints a table and writes
``bench/results/latest.json``, ``latest.md`` and ``latest.png``.

Environment: ``BENCH_WORKLOADS`` (comma-separated, default all), ``BENCH_EVENTS``
(input size, default 1,000,000), ``BENCH_ONLY`` (comma-separated implementations),
``BENCH_ROUNDS`` (runs per implementation; the fastest counts), ``BENCH_TIMEOUT``
(seconds per run), ``BENCH_W4_SECONDS``, ``BENCH_W6_KEYS``, ``BENCH_W7_KEYS``.
Options override them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import report
from bench.runner import REPO, Context, Impl, Outcome, run_impl
from bench.scenarios import run_workload
from bench.w1 import print_progress
from bench.workloads import WORKLOADS, Setup, Workload, all_impl_names, select

RESULTS = Path(__file__).resolve().parent / "results"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").replace("_", "").replace(",", "")
    return int(raw) if raw else default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (defaults from BENCH_* variables)."""
    names = all_impl_names()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Shoal against a hand-written loop and peer frameworks "
        "on the same broker and input.",
        epilog="workloads: "
        + "; ".join(
            f"{w.name} ({w.title}): {', '.join(i.name for i in w.impls)}"
            for w in WORKLOADS.values()
        ),
    )
    p.add_argument(
        "--workloads",
        default=os.environ.get("BENCH_WORKLOADS", ""),
        help="comma-separated workloads (env BENCH_WORKLOADS; default all)",
    )
    p.add_argument(
        "--events",
        type=int,
        default=_env_int("BENCH_EVENTS", 1_000_000),
        help="input records (env BENCH_EVENTS; default 1,000,000)",
    )
    p.add_argument(
        "--only",
        default=os.environ.get("BENCH_ONLY", ""),
        help="comma-separated implementations to run (env BENCH_ONLY; default all)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=_env_int("BENCH_ROUNDS", 1),
        help="runs per implementation, the fastest is reported (env BENCH_ROUNDS; default 1)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=float(_env_int("BENCH_TIMEOUT", 0)) or None,
        help="seconds one run may take (env BENCH_TIMEOUT; default 120 + 1 ms per event)",
    )
    p.add_argument("--bootstrap", help="use this Kafka cluster instead of a temporary broker")
    p.add_argument("--partitions", type=int, default=8, help="input partitions (default 8)")
    p.add_argument("--users", type=int, default=1000, help="simulated users (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument(
        "--profile",
        default=os.environ.get("BENCH_PROFILE", ""),
        help="comma-separated implementations to run once more under cProfile; writes "
        "profile-<name>.txt next to the results (env BENCH_PROFILE)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the work folder (logs, state) and print it"
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="merge this run's workloads into the existing latest.json (the others keep "
        "their figures and measurement dates) instead of replacing it",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="folder for latest.json and latest.png (default bench/results)",
    )
    args = p.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        p.error(f"unknown implementation(s) {', '.join(unknown)}; known: {', '.join(names)}")
    try:
        args.selected = select(args.workloads)
    except ValueError as exc:
        p.error(str(exc))
    args.wanted = wanted
    profiled = [s.strip() for s in args.profile.split(",") if s.strip()]
    unknown = [w for w in profiled if w not in names]
    if unknown:
        p.error(f"cannot profile unknown implementation(s) {', '.join(unknown)}")
    args.profiled = profiled
    if args.events < 1 or args.rounds < 1:
        p.error("--events and --rounds must be positive")
    return args


def impls_of(workload: Workload, wanted: list[str]) -> list[Impl]:
    """The implementations of a workload to run: those named, else its default ones."""
    return [i for i in workload.impls if i.name in wanted or (not wanted and i.default)]


def _start_broker(home: Path) -> tuple[object, str]:
    from connectors.kafka.broker import LocalBroker
    from runtime.composition import broker_settings
    from runtime.settings import load_settings

    broker = LocalBroker(broker_settings(load_settings(), home=home))
    print("starting a local Kafka broker ...", flush=True)
    return broker, broker.start()


def _profile(impl: Impl, ctx: Context, results: Path) -> None:
    """Run ``impl`` under cProfile and write its top functions to ``profile-<name>.txt``."""
    import io
    import pstats

    print(f"profiling {impl.name} ...", flush=True)
    stats_file = ctx.workdir / f"{impl.name}.prof"
    o = run_impl(impl, ctx, profile=stats_file)
    if o.unavailable or not stats_file.exists():
        print(f"  no profile: {o.unavailable}", flush=True)
        return
    text = io.StringIO()
    text.write(
        f"cProfile of {impl.name} over {ctx.events:,} {ctx.name} events "
        f"({o.events_per_s or 0:,.0f} events/s under the profiler)\n\n"
    )
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)
    results.mkdir(parents=True, exist_ok=True)
    suffix = "" if ctx.name == "W1" else f"-{ctx.name.lower()}"
    out = results / f"profile-{impl.name}{suffix}.txt"
    # The statistics file lives in the temporary work folder: do not name it.
    out.write_text(text.getvalue().replace(str(ctx.workdir), "<work folder>"))
    print(f"  wrote {out.name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    # librdkafka's transient warnings (e.g. a coordinator still loading) are noise here.
    logging.getLogger("shoal.kafka.client").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    broker = None
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
    load_before = report.load_average()
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            broker, bootstrap = _start_broker(workdir / "broker")
        setup = Setup(
            bootstrap=bootstrap,
            run_id=run_id,
            events=args.events,
            partitions=args.partitions,
            seed=args.seed,
            users=args.users,
            progress=print_progress,
        )
        sections: list[tuple[Workload, list[Outcome], dict[str, int]]] = []
        for workload in args.selected:
            impls = impls_of(workload, args.wanted)
            if not impls:
                continue
            started = time.monotonic()
            prepared = workload.prepare(setup)
            print(
                f"{workload.name} input: {prepared.summary} ({time.monotonic() - started:.0f}s)",
                flush=True,
            )
            ctx = Context(
                bootstrap=bootstrap,
                topic=next(iter(prepared.inputs.values())),
                events=prepared.events,
                partitions=args.partitions,
                run_id=run_id,
                workdir=workdir,
                timeout_s=args.timeout or 120 + prepared.events / 1000,
                reference=prepared.reference,
                workload=workload,
                inputs=prepared.inputs,
                ends=prepared.ends,
                settings=prepared.settings,
            )
            outcomes = run_workload(workload, impls, ctx, args.rounds)
            for impl in impls:
                if impl.name in args.profiled:
                    _profile(impl, ctx, args.results)
            sections.append((workload, outcomes, {"events": prepared.events}))
            # The reference can be large (W2, W3): let it go before the next workload.
            ctx.reference = prepared.reference = None
        if not sections:
            print("nothing to run: no implementation of the selected workloads was named")
            return 2
        load_after = report.load_average()
        machine = report.machine_info()
        machine["load_average_before"] = load_before
        machine["load_average_after"] = load_after
        now = report.now_utc()
        document: dict[str, object] = {
            "date": now,
            "machine": machine,
            "config": {
                "events": args.events,
                "partitions": args.partitions,
                "users": args.users,
                "seed": args.seed,
                "rounds": args.rounds,
                "broker": "local single-node Apache Kafka (KRaft)" if broker else bootstrap,
            },
        }
        print()
        for workload, outcomes, _info in sections:
            print(report.table(workload.name, outcomes, workload.title))
            print()
            document[workload.name] = report.as_json(outcomes)
        document["config"]["input_records"] = {  # type: ignore[index]
            w.name: info["events"] for w, _, info in sections
        }
        document["measured"] = {w.name: now for w, _, _ in sections}
        if args.update:
            sections = report.merge_previous(args.results / "latest.json", document, sections)
        report.write_json(args.results / "latest.json", document)
        (args.results / "latest.md").write_text(report.markdown_all(sections, document))
        report.chart_all(args.results / "latest.png", sections, document)
        rel = args.results.resolve()
        with contextlib.suppress(ValueError):
            rel = rel.relative_to(REPO)
        print(f"wrote {rel / 'latest.json'}, {rel / 'latest.md'} and {rel / 'latest.png'}")
        wrong = [o.name for _, outcomes, _ in sections for o in outcomes if o.correct is False]
        return 1 if wrong else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if broker is not None:
            broker.stop()  # type: ignore[attr-defined]
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
