"""``python -m bench``: every implementation on the same broker and input, with ratios.

Starts a local Kafka broker in a temporary folder (or uses ``--bootstrap``),
generates the input once, runs each implementation in its own process (fresh
consumer group, own output topic), checks each output against the reference,
prints a table and writes ``bench/results/latest.json`` and ``latest.png``.

Environment: ``BENCH_EVENTS`` (input size, default 1,000,000), ``BENCH_ONLY``
(comma-separated implementations), ``BENCH_ROUNDS`` (runs per implementation; the
fastest counts), ``BENCH_TIMEOUT`` (seconds per run). Options override them.
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
from bench.runner import REPO, W1_IMPLS, Context, Impl, Outcome, run_impl
from bench.topics import create_topics
from bench.w1 import print_progress, produce_input

RESULTS = Path(__file__).resolve().parent / "results"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").replace("_", "").replace(",", "")
    return int(raw) if raw else default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (defaults from BENCH_* variables)."""
    names = [i.name for i in W1_IMPLS]
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Shoal against a hand-written loop and peer frameworks "
        "on the same broker and input (workload W1).",
        epilog=f"implementations: {', '.join(names)}",
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
    args.impls = [i for i in W1_IMPLS if i.name in wanted or (not wanted and i.default)]
    profiled = [s.strip() for s in args.profile.split(",") if s.strip()]
    unknown = [w for w in profiled if w not in names]
    if unknown:
        p.error(f"cannot profile unknown implementation(s) {', '.join(unknown)}")
    args.profiled = [i for i in W1_IMPLS if i.name in profiled]
    if args.events < 1 or args.rounds < 1:
        p.error("--events and --rounds must be positive")
    if args.timeout is None:
        args.timeout = 120 + args.events / 1000
    return args


def _start_broker(home: Path) -> tuple[object, str]:
    from connectors.kafka.broker import LocalBroker
    from runtime.settings import broker_settings, load_settings

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
        f"cProfile of {impl.name} over {ctx.events:,} W1 events "
        f"({o.events_per_s or 0:,.0f} events/s under the profiler)\n\n"
    )
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"profile-{impl.name}.txt"
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
        topic = f"bench-{run_id}-w1-input"
        create_topics(bootstrap, [topic], args.partitions)
        started = time.monotonic()
        ref = produce_input(
            bootstrap,
            topic,
            args.events,
            partitions=args.partitions,
            seed=args.seed,
            users=args.users,
            progress=print_progress(f"generating W1 input into {topic}"),
        )
        print(
            f"input: {ref.events:,} PlaybackEvents, {len(ref.counts):,} (user, window) pairs, "
            f"{len(ref.closed()):,} of them closed by the end "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )
        ctx = Context(
            bootstrap=bootstrap,
            topic=topic,
            events=ref.events,
            partitions=args.partitions,
            run_id=run_id,
            workdir=workdir,
            timeout_s=args.timeout,
            reference=ref,
        )
        outcomes: list[Outcome] = []
        for impl in args.impls:
            best: Outcome | None = None
            for r in range(args.rounds):
                print(f"running {impl.name} (round {r + 1}/{args.rounds}) ...", flush=True)
                o = run_impl(impl, ctx, r)
                if o.unavailable:
                    print(f"  unavailable: {o.unavailable}", flush=True)
                    best = best or o
                    break
                print(
                    f"  {o.events_per_s or 0:,.0f} events/s, {o.cpu_s:.1f} CPU s, "
                    f"{o.max_rss_mb:,.0f} MB; {o.check or 'no output to check'}",
                    flush=True,
                )
                if (
                    best is None
                    or best.unavailable
                    or (o.events_per_s or 0) > (best.events_per_s or 0)
                ):
                    best = o
            assert best is not None
            outcomes.append(best)
        load_after = report.load_average()
        for impl in args.profiled:
            _profile(impl, ctx, args.results)
        print()
        print(report.table("W1", outcomes))
        machine = report.machine_info()
        machine["load_average_before"] = load_before
        machine["load_average_after"] = load_after
        document = {
            "date": report.now_utc(),
            "machine": machine,
            "config": {
                "events": ref.events,
                "partitions": args.partitions,
                "users": args.users,
                "seed": args.seed,
                "rounds": args.rounds,
                "broker": "local single-node Apache Kafka (KRaft)" if broker else bootstrap,
            },
            "W1": report.as_json(outcomes),
        }
        report.write_json(args.results / "latest.json", document)
        (args.results / "latest.md").write_text(report.markdown("W1", outcomes, document))
        subtitle = (
            f"{ref.events:,} events, {args.partitions} partitions; {machine['cores']} cores; "
            f"{document['date']}"
        )
        report.chart(args.results / "latest.png", "W1", outcomes, subtitle)
        rel = args.results.resolve()
        with contextlib.suppress(ValueError):
            rel = rel.relative_to(REPO)
        print(f"\nwrote {rel / 'latest.json'}, {rel / 'latest.md'} and {rel / 'latest.png'}")
        wrong = [o.name for o in outcomes if o.correct is False]
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
