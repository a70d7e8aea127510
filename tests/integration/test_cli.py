"""The shoal command as a user meets it: help, one-line errors, the broker, the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shoal(
    *args: str,
    home: Path | None = None,
    timeout: float = 120,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ if env is None else env)
    if home is not None:
        env["SHOAL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line or environment mentions ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_help_lists_every_command() -> None:
    out = shoal("--help")
    assert out.returncode == 0
    for command in ("broker", "demo", "generate", "run", "tail", "topics"):
        assert re.search(rf"^\s+{command}\s", out.stdout, re.M), command


def test_wrong_arguments_give_one_line() -> None:
    for args in (["--bogus"], ["run"], ["generate", "--events", "-5"], ["run", "no.such:job"]):
        out = shoal(*args)
        assert out.returncode in (1, 2), args
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_broker_start_status_stop_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    start = shoal("broker", "start", home=home)
    assert start.returncode == 0, start.stderr
    assert re.fullmatch(r"127\.0\.0\.1:\d+", start.stdout.strip())
    assert shoal("broker", "status", home=home).returncode == 0
    stop = shoal("broker", "stop", home=home)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert shoal("broker", "status", home=home).returncode == 3
    assert not processes_mentioning(str(home))


def test_the_broker_lives_in_the_users_data_folder_and_is_found_from_any_folder(
    tmp_path: Path,
) -> None:
    """Without SHOAL_HOME the broker's home is $XDG_DATA_HOME/shoal: started in one
    folder, status and stop from others find it and say where it lives."""
    data = tmp_path / "xdg-data"
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_HOME"}
    env["XDG_DATA_HOME"] = str(data)
    where = str(data / "shoal" / "broker")
    folders = [tmp_path / name for name in ("one", "two", "three")]
    for folder in folders:
        folder.mkdir()
    try:
        start = shoal("broker", "start", cwd=folders[0], env=env)
        assert start.returncode == 0, start.stderr
        assert where in start.stderr, start.stderr
        status = shoal("broker", "status", cwd=folders[1], env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith(f"running at {start.stdout.strip()} ")
        assert where in status.stdout
        assert not any((f / ".shoal").exists() for f in folders)
    finally:
        stop = shoal("broker", "stop", cwd=folders[2], env=env)
    assert stop.returncode == 0 and stop.stdout.startswith("broker stopped"), stop.stdout
    gone = shoal("broker", "status", cwd=folders[0], env=env)
    assert gone.returncode == 3 and where in gone.stdout
    assert not processes_mentioning(str(data))


def _demo(home: Path) -> str:
    """One demo run: a fast simulated pace (1,000 users), ten minutes of simulated past.

    1,000 users at 3,000 records/s simulate more than a minute per second: unthrottled,
    75 s of demo would put event time more than an hour ahead of where it started and
    past the wall clock by more than the hour the broker accepts by default.
    """
    out = shoal(
        "demo", "--seconds", "75", "--rate", "3000", "--users", "1000", "--lookback", "600",
        home=home, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


def _totals(text: str, pattern: str) -> list[int]:
    return [int(m.replace(",", "")) for m in re.findall(pattern, text)]


def test_demo_runs_live_past_the_brokers_limit_and_a_second_run_starts_fresh(
    tmp_path: Path,
) -> None:
    home = tmp_path / "demo-home"
    for run in (1, 2):
        text = _demo(home)
        assert "live page http://127.0.0.1:" in text
        rates = [int(m.replace(",", "")) for m in re.findall(r"in: playback ([\d,]+)/s", text)]
        assert rates and max(rates) > 0, text[-3000:]
        # no worker failed: no error from the broker, no stack, nobody exited early
        for bad in ("Traceback", "INVALID_TIMESTAMP", "KafkaError", "Erroneous state",
                    "checkpoint transaction failed", "a process exited"):  # fmt: skip
            assert bad not in text, (run, bad, text[-3000:])
        # simulated time reached the wall clock and then followed it: outputs kept coming
        caught = "generator: event time caught up with the wall clock"
        assert caught in text, text[-3000:]
        after = text[text.index(caught) :]
        read = _totals(after, r"\[playback_health +\d+s\] in: playback [\d,]+/s \(([\d,]+)\)")
        scores = _totals(after, r"personalization-scores [\d,]+/s \(([\d,]+)\)")
        assert len(read) >= 3 and read[-1] > read[0], after[-3000:]
        assert len(scores) >= 3 and scores[-1] > scores[0], after[-3000:]
        assert "ALERT FIRED: demo_cdn_rebuffering [cdn=cdn-b]" in text, text[-3000:]
        assert "sessions closed:" in text or "playback errors seen:" in text
        assert "demo: stopped everything it started" in text
        # the broker (home in its command line) and every job and generator (home in
        # their environment) are gone
        assert not processes_mentioning(str(home)), "the demo left processes behind"
        if run == 2:
            # the second run removed the first one's topics and groups and started over
            assert re.search(r"demo: deleted [1-9]\d* topics and \d+ consumer groups", text), text[
                :2000
            ]
        # the traffic is not late for the jobs (a run that resumed an earlier run's state
        # saw most of it as late)
        stopped = re.search(
            r"stopped sessionization: read ([\d,]+) records, .* late ([\d,]+)", text
        )
        assert stopped, text[-3000:]
        read_total, late = (int(g.replace(",", "")) for g in stopped.groups())
        assert read_total > 0 and late * 100 < read_total, (run, read_total, late)


def test_demo_with_chaos_kills_workers_and_gives_a_verdict(tmp_path: Path) -> None:
    """``make demo DEMO_ARGS=--chaos``: workers of the sessionization job are killed on
    the way, and the demo ends with the chaos verdict over everything the job read."""
    home = tmp_path / "chaos-home"
    out = shoal(
        "demo", "--seconds", "40", "--rate", "3000", "--users", "1000", "--lookback", "600",
        "--chaos", "--chaos-every", "5", home=home, timeout=400,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    kills = re.findall(r"\[chaos +[\d.]+s\] killed \S+ \(SIGKILL\)", out.stderr)
    line = re.search(
        r"chaos: kills=(\d+) broker_pauses=0 sink_stalls=0 events=(\d+) outputs=(\d+) "
        r"lost=(\d+) duplicated=(\d+) verdict=(pass|fail)",
        out.stderr,
    )
    assert line is not None, out.stderr[-4000:]
    assert int(line.group(1)) == len(kills) >= 3, line.group(0)
    assert int(line.group(2)) > 10_000 and int(line.group(3)) > 0, line.group(0)
    assert line.groups()[3:] == ("0", "0", "pass"), line.group(0)
    assert not processes_mentioning(str(home)), "the demo left processes behind"
