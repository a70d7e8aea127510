"""Declarative QoE alert rules and their small text form (parsed, never evaluated as code).

A rule watches one metric of ``QoeMetric`` records of one window kind, per group::

    Rule("cdn_rebuffering", metric="rebuffer_ratio", fire_above=0.02, resolve_below=0.01,
         for_windows=3, where_min={"plays_started": 50}, group_by=("cdn",),
         cooldown=timedelta(minutes=10))

The same rule as text (keywords in any case, clauses in any order after the condition)::

    cdn_rebuffering: rebuffer_ratio > 0.02 for 3 windows where plays_started >= 50
        group by cdn resolve < 0.01 cooldown 10m

Grammar::

    rule     := [name ":"] metric (">" | "<") number clause*
    clause   := "for" int ("window" | "windows")
              | "where" field ">=" number ("and" field ">=" number)*
              | "group" "by" dim ("," dim)*
              | "resolve" ("<" | ">") number ["for" int ("window" | "windows")]
              | "cooldown" duration                  (500ms, 30s, 10m, 2h)
              | "on" window_kind                     (tumbling_1m, hopping_5m, ...)

``metric > x`` fires above ``x`` and resolves below the ``resolve`` threshold (``<``
rules the other way round); without ``resolve`` it resolves on the fire threshold.

Which records a rule reads: those of its ``window_kind`` (default ``tumbling_1m``)
and its ``group_kind``: ``cdn`` when it groups by ``cdn`` alone, else the finest
grain ``title_device_country_cdn``. When ``group_by`` names fewer dimensions than
the grain (``cdn, country``), the records of one window and group are *rolled up*:
counters summed, ratios recomputed from the sums (``rebuffer_ratio``,
``rebuffers_per_hour``, ``failure_rate``, and ``avg_bitrate_kbps`` weighted by watch
time). Startup percentiles cannot be rolled up; a rule on them must group by the
grain's own dimensions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from runtime import ConfigError

__all__ = [
    "DIMENSIONS",
    "GRAINS",
    "ROLLUP_METRICS",
    "Rule",
    "RuleSyntaxError",
    "metric_values",
    "parse_rule",
    "parse_rules",
]

#: Group dimensions of ``QoeMetric``.
DIMENSIONS: tuple[str, ...] = ("title_id", "device_type", "country", "cdn")
#: ``group_kind`` of the QoE job -> the dimensions it groups by.
GRAINS: dict[str, tuple[str, ...]] = {
    "title_device_country_cdn": ("title_id", "device_type", "country", "cdn"),
    "cdn": ("cdn",),
}
_COUNTERS = (
    "plays_started", "watch_time_ms", "rebuffer_time_ms", "rebuffer_count",
    "bitrate_switches", "play_attempts", "play_failures", "concurrent_streams",
)  # fmt: skip
#: Metrics that can be computed for a coarser group from the grain's records.
ROLLUP_METRICS: frozenset[str] = frozenset(
    (*_COUNTERS, "rebuffer_ratio", "rebuffers_per_hour", "failure_rate", "avg_bitrate_kbps")
)
_DIRECT_ONLY = frozenset(("startup_p50_ms", "startup_p90_ms", "startup_p99_ms"))
#: Every metric a rule may watch or filter on.
METRICS: frozenset[str] = ROLLUP_METRICS | _DIRECT_ONLY
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_HOUR_MS = 3_600_000


class RuleSyntaxError(ConfigError):
    """A rule's text does not follow the grammar; the message shows where."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule (see the module docstring).

    Args:
        name: stable name; it keys the rule's state and names its alerts.
        metric: the ``QoeMetric`` field watched.
        fire_above: fire when the metric is above this (or use ``fire_below``).
        resolve_below: resolve when below this; default ``fire_above``.
        fire_below: fire when the metric is below this.
        resolve_above: resolve when above this; default ``fire_below``.
        for_windows: consecutive breaching windows needed to fire.
        resolve_windows: consecutive recovered windows needed to resolve.
        where_min: a window counts only if each of these fields is at least the value.
        group_by: dimensions of one alerting group.
        window_kind: which windows of the QoE output to read.
        group_kind: which grain of the QoE output to read; default from ``group_by``.
        cooldown: event time after a resolution during which the group cannot fire.

    Raises:
        ConfigError: an invalid combination, naming the rule.
    """

    name: str
    metric: str
    fire_above: float | None = None
    resolve_below: float | None = None
    fire_below: float | None = None
    resolve_above: float | None = None
    for_windows: int = 1
    resolve_windows: int = 1
    where_min: Mapping[str, float] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("cdn",)
    window_kind: str = "tumbling_1m"
    group_kind: str | None = None
    cooldown: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        def bad(why: str) -> ConfigError:
            return ConfigError(f"alert rule {self.name!r}: {why}")

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise bad("the name must be letters, digits, '_', '.', '-' (starting with a letter)")
        if self.metric not in METRICS:
            raise bad(f"unknown metric {self.metric!r} (known: {', '.join(sorted(METRICS))})")
        above = self.fire_above is not None
        if above == (self.fire_below is not None):
            raise bad("give exactly one of fire_above and fire_below")
        if (above and self.resolve_above is not None) or (
            not above and self.resolve_below is not None
        ):
            raise bad("resolve in the opposite direction of firing (fire_above with resolve_below)")
        fa, rb, fb, ra = self.fire_above, self.resolve_below, self.fire_below, self.resolve_above
        if fa is not None and rb is not None and rb > fa:
            raise bad("resolve_below must not be above fire_above")
        if fb is not None and ra is not None and ra < fb:
            raise bad("resolve_above must not be below fire_below")
        for what in ("for_windows", "resolve_windows"):
            n = getattr(self, what)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise bad(f"{what} must be a positive int, got {n!r}")
        unknown = [f for f in self.where_min if f not in METRICS]
        if unknown:
            raise bad(f"unknown where fields {unknown}")
        group = tuple(self.group_by)
        if len(set(group)) != len(group) or not set(group) <= set(DIMENSIONS):
            raise bad(f"group_by must be distinct dimensions of {DIMENSIONS}, got {group}")
        object.__setattr__(self, "group_by", group)
        object.__setattr__(self, "where_min", dict(self.where_min))
        if self.group_kind is None:
            object.__setattr__(
                self, "group_kind", "cdn" if group == ("cdn",) else "title_device_country_cdn"
            )
        if self.group_kind not in GRAINS:
            raise bad(f"group_kind must be one of {sorted(GRAINS)}, got {self.group_kind!r}")
        if not set(group) <= set(GRAINS[self.grain]):
            raise bad(f"group_kind {self.group_kind!r} has no dimensions {group}")
        if self.rolls_up:
            direct = sorted(f for f in (self.metric, *self.where_min) if f in _DIRECT_ONLY)
            if direct:
                raise bad(f"{direct} cannot be rolled up from {self.group_kind!r} to {group}")
        if not isinstance(self.cooldown, timedelta) or self.cooldown < timedelta(0):
            raise bad(f"cooldown must be a non-negative timedelta, got {self.cooldown!r}")

    @property
    def grain(self) -> str:
        """The ``group_kind`` this rule reads."""
        assert self.group_kind is not None
        return self.group_kind

    @property
    def rolls_up(self) -> bool:
        """Whether several records make one window of a group."""
        return set(self.group_by) != set(GRAINS[self.grain])

    @property
    def fires_above(self) -> bool:
        """True for ``metric > threshold`` rules."""
        return self.fire_above is not None

    @property
    def fire_threshold(self) -> float:
        """The threshold that fires."""
        value = self.fire_above if self.fire_above is not None else self.fire_below
        assert value is not None
        return float(value)

    @property
    def resolve_threshold(self) -> float:
        """The threshold that resolves (the fire threshold unless set)."""
        value = self.resolve_below if self.fires_above else self.resolve_above
        return self.fire_threshold if value is None else float(value)

    @property
    def cooldown_ms(self) -> int:
        """The cooldown in milliseconds."""
        return int(self.cooldown / timedelta(milliseconds=1))

    def fields(self) -> tuple[str, ...]:
        """The ``QoeMetric`` fields a window's records must keep for this rule."""
        if self.rolls_up:
            return (*_COUNTERS, "avg_bitrate_kbps")
        return tuple(dict.fromkeys((self.metric, *self.where_min)))

    def breaches(self, value: float) -> bool:
        """Whether ``value`` is past the fire threshold."""
        return value > self.fire_threshold if self.fires_above else value < self.fire_threshold

    def recovers(self, value: float) -> bool:
        """Whether ``value`` is past the resolve threshold, back on the good side."""
        t = self.resolve_threshold
        return value < t if self.fires_above else value > t


def metric_values(rule: Rule, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The values a window of one group has for ``rule``'s metric and where fields.

    Args:
        rule: the rule.
        parts: the kept fields (``Rule.fields``) of each record of the window and group.

    Returns:
        field -> value (``None`` where the window has no value).
    """
    if not rule.rolls_up:
        (only,) = parts
        return only
    sums = {c: sum(p[c] for p in parts) for c in _COUNTERS}
    watch, stalled = sums["watch_time_ms"], sums["rebuffer_time_ms"]
    weighted = [(p["avg_bitrate_kbps"], p["watch_time_ms"]) for p in parts]
    bitrate_watch = sum(w for a, w in weighted if a is not None)
    return {
        **sums,
        "rebuffer_ratio": stalled / (watch + stalled) if watch + stalled else 0.0,
        "rebuffers_per_hour": sums["rebuffer_count"] * _HOUR_MS / watch if watch else 0.0,
        "failure_rate": (
            sums["play_failures"] / sums["play_attempts"] if sums["play_attempts"] else 0.0
        ),
        "avg_bitrate_kbps": (
            sum(a * w for a, w in weighted if a is not None) / bitrate_watch
            if bitrate_watch
            else None
        ),
    }


# -- the text form -------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<duration>\d+(?:ms|s|m|h)\b)|(?P<number>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.-]*)|(?P<op>>=|<=|[<>,:]))"
)
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.items: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise self.error(
                    pos + len(text[pos:]) - len(text[pos:].lstrip()), "unexpected text"
                )
            kind = m.lastgroup
            assert kind is not None
            self.items.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def error(self, pos: int, why: str) -> RuleSyntaxError:
        return RuleSyntaxError(
            f"{why} at column {pos + 1}: {self.text[:pos]}<here>{self.text[pos:]}"
        )

    def peek(self) -> tuple[str, str, int] | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def next(self, what: str) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise self.error(len(self.text), f"expected {what}, found the end")
        self.i += 1
        return tok

    def expect(self, kind: str, what: str, *, value: str | None = None) -> str:
        k, v, pos = self.next(what)
        if k != kind or (value is not None and v.lower() != value):
            raise self.error(pos, f"expected {what}, found {v!r}")
        return v

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() in words:
            self.i += 1
            return tok[1].lower()
        return None

    def number(self, what: str) -> float:
        return float(self.expect("number", what))

    def count(self) -> int:
        k, v, pos = self.next("a number of windows")
        if k != "number" or not v.isdigit() or int(v) < 1:
            raise self.error(pos, f"expected a positive whole number of windows, found {v!r}")
        if self.keyword("window", "windows") is None:
            tok = self.peek()
            raise self.error(tok[2] if tok else len(self.text), "expected 'windows'")
        return int(v)


def parse_rule(text: str, *, name: str | None = None) -> Rule:
    """Parse one rule from its text form (see the module docstring).

    Args:
        text: the rule.
        name: its name, unless the text starts with ``name:``.

    Raises:
        RuleSyntaxError: the text does not follow the grammar.
        ConfigError: the rule is invalid (unknown metric, inverted thresholds, ...).
    """
    toks = _Tokens(text)
    if len(toks.items) > 1 and toks.items[1][:2] == ("op", ":"):
        name = toks.expect("word", "a rule name")
        toks.next(":")
    metric = toks.expect("word", "a metric name")
    k, op, pos = toks.next("'>' or '<'")
    if k != "op" or op not in (">", "<"):
        raise toks.error(pos, f"expected '>' or '<', found {op!r}")
    threshold = toks.number("a threshold")
    args: dict[str, Any] = {"fire_above" if op == ">" else "fire_below": threshold}
    seen: set[str] = set()
    while (tok := toks.peek()) is not None:
        word = toks.keyword("for", "where", "group", "resolve", "cooldown", "on")
        if word is None:
            raise toks.error(
                tok[2],
                "expected a clause (for, where, group by, resolve, cooldown, on), "
                f"found {tok[1]!r}",
            )
        if word in seen:
            raise toks.error(tok[2], f"clause {word!r} given twice")
        seen.add(word)
        if word == "for":
            args["for_windows"] = toks.count()
        elif word == "where":
            where: dict[str, float] = {}
            while True:
                field_name = toks.expect("word", "a field name")
                toks.expect("op", "'>='", value=">=")
                where[field_name] = toks.number("a minimum")
                if toks.keyword("and") is None:
                    break
            args["where_min"] = where
        elif word == "group":
            toks.expect("word", "'by'", value="by")
            dims = [toks.expect("word", "a dimension")]
            while (nxt := toks.peek()) is not None and nxt[:2] == ("op", ","):
                toks.next(",")
                dims.append(toks.expect("word", "a dimension"))
            args["group_by"] = tuple(dims)
        elif word == "resolve":
            k, rop, pos = toks.next("'<' or '>'")
            want = "<" if op == ">" else ">"
            if k != "op" or rop != want:
                raise toks.error(pos, f"a '{op}' rule resolves with '{want}', found {rop!r}")
            args["resolve_below" if op == ">" else "resolve_above"] = toks.number("a threshold")
            if toks.keyword("for") is not None:
                args["resolve_windows"] = toks.count()
        elif word == "cooldown":
            k, v, pos = toks.next("a duration such as 10m")
            if k != "duration":
                raise toks.error(pos, f"expected a duration such as 30s or 10m, found {v!r}")
            digits = v.rstrip("mshMSH")
            args["cooldown"] = timedelta(milliseconds=int(digits) * _UNITS_MS[v[len(digits) :]])
        else:
            args["window_kind"] = toks.expect("word", "a window kind")
    if name is None:
        name = "_".join((metric, *args.get("group_by", ("cdn",))))
    return Rule(name, metric, **args)


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Parse one rule per non-empty line (``#`` starts a comment); names must be unique.

    Raises:
        RuleSyntaxError: naming the line.
        ConfigError: a rule is invalid or two rules share a name.
    """
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        try:
            rules.append(parse_rule(body))
        except RuleSyntaxError as exc:
            raise RuleSyntaxError(f"line {number}: {exc}") from exc
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"alert rule names must be unique, got {names}")
    return tuple(rules)
