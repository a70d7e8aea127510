"""Field expressions: functions of a record that Shoal can read.

``field("user_id")`` is the record's ``user_id``; comparisons (``==``, ``!=``, ``<``,
``<=``, ``>``, ``>=``), ``is_in``, ``is_null`` and ``not_null`` make predicates, and
``&``, ``|`` and ``~`` combine them. An expression is a function of a record, so it
goes wherever a lambda does (``key_by``, ``filter``, ``map``, a source's
``timestamp``, an aggregate's ``of``) and gives exactly what the Python expression it
stands for gives, errors included (a missing field is a ``KeyError``, dead-lettered as
a lambda's would be). Unlike a lambda, Shoal can see what it reads (:attr:`Expr.fields`)
and what it does (``str(expr)``): the engine calls the plain function behind it
(:func:`function_of`, no wrapper per record), and a job made of expressions is one the
engine can evaluate without calling Python per record.

>>> is_rebuffer = field("event_type") == "rebuffer_start"
>>> is_rebuffer({"event_type": "rebuffer_start", "cdn": "a"})
True
>>> slow = (field("buffer_ms") > 2000) & field("cdn").is_in({"cdn-a", "cdn-b"})
>>> slow({"buffer_ms": 2500, "cdn": "cdn-b"}), sorted(slow.fields)
(True, ['buffer_ms', 'cdn'])
>>> str(slow)
"(field('buffer_ms') > 2000) & field('cdn').is_in(['cdn-a', 'cdn-b'])"
>>> field("device.os")({"device": {"os": "tv-os"}})
'tv-os'
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

__all__ = ["Expr", "field", "function_of", "path_of"]

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class Expr:
    """A function of a record that says what it reads and does.

    Attributes:
        fields: the record's top-level fields it reads.
        path: for a plain field (``field("a.b")``), its path (``("a", "b")``); else
            ``None``.
    """

    __slots__ = ("_atomic", "_fn", "_text", "fields", "path")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        text: str,
        fields: frozenset[str],
        atomic: bool = True,
        path: tuple[str, ...] | None = None,
    ) -> None:
        self._fn = fn
        self._text = text
        self.fields = fields
        self.path = path
        # Shown without parentheses inside a larger expression (a field, a method call).
        self._atomic = atomic

    def _grouped(self) -> str:
        return self._text if self._atomic else f"({self._text})"

    def __call__(self, record: Any) -> Any:
        """The expression's value for ``record``."""
        return self._fn(record)

    @property
    def function(self) -> Callable[[Any], Any]:
        """The plain function behind the expression (what the engine calls)."""
        return self._fn

    def __repr__(self) -> str:
        return self._text

    __hash__ = object.__hash__

    def __bool__(self) -> NoReturn:
        raise TypeError(
            f"{self._text} has no truth value: combine expressions with &, | and ~ "
            "(not and, or, not) and pass them to a step"
        )

    # -- comparisons --------------------------------------------------------------
    def _compare(self, symbol: str, other: Any) -> Expr:
        op = _COMPARISONS[symbol]
        get = self._fn
        if isinstance(other, Expr):
            right = other._fn
            return Expr(
                lambda r: op(get(r), right(r)),
                f"{self._grouped()} {symbol} {other._grouped()}",
                self.fields | other.fields,
                atomic=False,
            )
        return Expr(
            lambda r: op(get(r), other),
            f"{self._grouped()} {symbol} {other!r}",
            self.fields,
            atomic=False,
        )

    def __eq__(self, other: object) -> Expr:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: object) -> Expr:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: Any) -> Expr:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Expr:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Expr:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Expr:
        return self._compare(">=", other)

    def is_in(self, values: Iterable[Any]) -> Expr:
        """Whether the value is one of ``values`` (hashable values, kept as a set)."""
        options = frozenset(values)
        get = self._fn
        shown = sorted(options, key=repr)
        return Expr(lambda r: get(r) in options, f"{self._text}.is_in({shown!r})", self.fields)

    def is_null(self) -> Expr:
        """Whether the value is ``None`` (an Avro null)."""
        get = self._fn
        return Expr(lambda r: get(r) is None, f"{self._text}.is_null()", self.fields)

    def not_null(self) -> Expr:
        """Whether the value is not ``None``."""
        get = self._fn
        return Expr(lambda r: get(r) is not None, f"{self._text}.not_null()", self.fields)

    # -- logic --------------------------------------------------------------------
    def _combine(self, symbol: str, other: Expr, fn: Callable[[Any], Any]) -> Expr:
        return Expr(
            fn,
            f"{self._grouped()} {symbol} {other._grouped()}",
            self.fields | other.fields,
            atomic=False,
        )

    def __and__(self, other: Expr) -> Expr:
        left, right = self._fn, _expr(other, "&")._fn
        return self._combine("&", other, lambda r: bool(left(r)) and bool(right(r)))

    def __or__(self, other: Expr) -> Expr:
        left, right = self._fn, _expr(other, "|")._fn
        return self._combine("|", other, lambda r: bool(left(r)) or bool(right(r)))

    def __invert__(self) -> Expr:
        inner = self._fn
        return Expr(lambda r: not inner(r), f"~{self._grouped()}", self.fields)


def _expr(value: Any, symbol: str) -> Expr:
    if not isinstance(value, Expr):
        raise TypeError(f"{symbol} combines expressions, got {type(value).__name__}")
    return value


def field(name: str) -> Expr:
    """The record's field ``name``; ``"a.b"`` is field ``b`` of the record in field ``a``.

    Raises:
        TypeError: ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name or "" in name.split("."):
        raise TypeError(f"field() takes a field name like 'user_id' or 'device.os', got {name!r}")
    path = name.split(".")
    if len(path) == 1:
        return Expr(
            operator.itemgetter(name), f"field({name!r})", frozenset(path[:1]), path=tuple(path)
        )
    getters = [operator.itemgetter(part) for part in path]

    def nested(record: Any) -> Any:
        for get in getters:
            record = get(record)
        return record

    return Expr(nested, f"field({name!r})", frozenset(path[:1]), path=tuple(path))


def path_of(fn: Any) -> tuple[str, ...] | None:
    """The field path of a plain field expression, else ``None`` (a lambda, a
    comparison, anything else)."""
    return fn.path if isinstance(fn, Expr) else None


def function_of(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The plain function to call per record: an expression's own, else ``fn``."""
    return fn.function if isinstance(fn, Expr) else fn
