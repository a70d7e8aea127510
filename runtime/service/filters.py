"""Filter expressions of live taps: a small grammar, parsed by hand, never evaluated as code.

A tap (``/streams/{job}/{step}?filter=...``) keeps the records for which the
expression is true. Examples::

    cdn == "cdn-b" and rebuffer_ratio > 0.02
    country in ["DE", "FR"] and not (device_type == "tv")
    top_titles.0.score >= 0.5 or $key.0 == "u-17"

Grammar (keywords are lower case)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand [cmp_op operand | ["not"] "in" list]
    operand    := path | literal | list | "(" expr ")"
    cmp_op     := "==" | "!=" | "<" | "<=" | ">" | ">="
    list       := "[" [literal ("," literal)*] "]"
    literal    := string | number | "true" | "false" | "null"
    path       := name ("." (name | digits))*      name := [A-Za-z_][A-Za-z0-9_]* | "$key" | "$time"

How values are found and compared:

* A path starts in the record's value (a dict): ``a.b`` is ``value["a"]["b"]``; a
  digits segment indexes a list or tuple (``top_titles.0``). ``$key`` is the record's
  key and ``$time`` its event time (epoch ms). Lookups only ever index dicts, lists
  and tuples: a path never reaches an attribute, so ``__class__`` or
  ``__import__`` are just field names that are missing.
* A missing field is ``null``: ``x == null`` matches records without ``x``.
* ``==``/``!=`` compare numbers by value (``1 == 1.0``), lists (and tuple keys)
  item by item (``$key == ["u-17", "tv"]``), and anything else by type and value
  (``true != 1``, ``"1" != 1``). ``<``, ``<=``, ``>``, ``>=`` hold only
  between two numbers or two strings; otherwise they are false.
* A bare operand is a test of truth: ``is_live`` holds when the field is present
  and neither ``false``, ``null``, ``0``, ``""`` nor empty.

Limits keep a hostile expression cheap to parse and to run on every record, and
are checked when the filter compiles (a 400 naming the limit): at most
:data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting,
:data:`MAX_NODES` terms (fields, values, operators), :data:`MAX_LIST_ITEMS` items
per ``in`` list, :data:`MAX_STRING` characters per string and
:data:`MAX_PATH_SEGMENTS` segments per field path. An ``in`` test is one set
look-up, whatever the list's size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_LIST_ITEMS",
    "MAX_NODES",
    "MAX_PATH_SEGMENTS",
    "MAX_STRING",
    "FilterSyntaxError",
    "Predicate",
    "compile_filter",
    "tokenize",
]

#: Longest accepted expression, in characters.
MAX_LENGTH = 2000
#: Deepest accepted nesting of parentheses and ``not``.
MAX_DEPTH = 32
#: Most terms (fields, values, lists, comparisons, ``and``/``or``/``not``) in one filter.
MAX_NODES = 100
#: Most items of one ``in [...]`` list.
MAX_LIST_ITEMS = 100
#: Longest string literal, in characters.
MAX_STRING = 200
#: Most segments of one field path (``a.b.0.c`` has 4).
MAX_PATH_SEGMENTS = 8

#: A compiled filter: ``predicate(key, value, event_time_ms) -> bool``.
Predicate = Callable[[Any, Any, int], bool]
_Getter = Callable[[Any, Any, int], Any]

_MISSING = None  # a missing field reads as null
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_META = frozenset({"$key", "$time"})
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "/": "/"}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<path>\$?[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|\d+))*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
  | (?P<quote>["'])
    """,
    re.VERBOSE,
)


class FilterSyntaxError(ConfigError):
    """A filter expression that does not parse.

    Attributes:
        column: 1-based position in the expression where the problem was found.
    """

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"filter: {message} at column {column}")
        self.column = column


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token: ``kind`` is number, string, path, keyword, op or end."""

    kind: str
    value: Any
    column: int


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens (the last one has kind ``end``).

    Raises:
        FilterSyntaxError: an unknown character, an unterminated string or a bad escape.
    """
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            hint = " (use == to compare)" if text[pos] == "=" else ""
            raise FilterSyntaxError(f"unexpected character {text[pos]!r}{hint}", pos + 1)
        kind = m.lastgroup
        if kind == "quote":
            value, end = _read_string(text, pos)
            tokens.append(Token("string", value, pos + 1))
            pos = end
            continue
        word = m.group()
        if kind == "number":
            number: float | int = float(word) if any(c in word for c in ".eE") else int(word)
            tokens.append(Token("number", number, pos + 1))
        elif kind == "path":
            tokens.append(_path_token(word, pos + 1))
        elif kind == "op":
            tokens.append(Token("op", word, pos + 1))
        pos = m.end()
    tokens.append(Token("end", None, len(text) + 1))
    return tokens


def _path_token(word: str, column: int) -> Token:
    if word in _KEYWORDS:
        return Token("keyword", word, column)
    parts = word.split(".")
    if parts[0].startswith("$") and parts[0] not in _META:
        raise FilterSyntaxError(
            f"unknown name {parts[0]!r} (record fields are plain names; "
            "$key and $time are the key and the event time)",
            column,
        )
    if parts[0] in _KEYWORDS:
        raise FilterSyntaxError(f"keyword {parts[0]!r} cannot start a field path", column)
    if len(parts) > MAX_PATH_SEGMENTS:
        raise FilterSyntaxError(
            f"field path of {len(parts)} segments (the limit is {MAX_PATH_SEGMENTS})", column
        )
    segments = tuple(int(p) if p.isdigit() else p for p in parts)
    return Token("path", segments, column)


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            if len(out) > MAX_STRING:
                raise FilterSyntaxError(
                    f"string of {len(out)} characters (the limit is {MAX_STRING})", start + 1
                )
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= len(text):
                break
            esc = text[i + 1]
            if esc not in _ESCAPES:
                raise FilterSyntaxError(f"unknown escape \\{esc} in a string", i + 1)
            out.append(_ESCAPES[esc])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise FilterSyntaxError("unterminated string", start + 1)


# -- evaluation helpers (all total: they never raise on odd data) -----------------------


def _lookup(root: Any, segments: tuple[str | int, ...]) -> Any:
    cur = root
    for seg in segments:
        if isinstance(cur, dict):
            cur = cur.get(seg, _MISSING) if isinstance(seg, str) else cur.get(str(seg), _MISSING)
        elif isinstance(cur, list | tuple) and isinstance(seg, int):
            cur = cur[seg] if seg < len(cur) else _MISSING
        else:
            return _MISSING
        if cur is None:
            return _MISSING
    return cur


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b):
        # tuples (keys) and lists (literals) compare as sequences
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _ordered(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _truthy(v: Any) -> bool:
    try:
        return bool(v)
    except Exception:
        return False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": lambda a, b: _ordered(a, b) and a < b,
    "<=": lambda a, b: _ordered(a, b) and a <= b,
    ">": lambda a, b: _ordered(a, b) and a > b,
    ">=": lambda a, b: _ordered(a, b) and a >= b,
}


def _path_getter(segments: tuple[str | int, ...]) -> _Getter:
    head, rest = segments[0], segments[1:]
    if head == "$key":
        return lambda k, v, t: _lookup(k, rest) if rest else k
    if head == "$time":
        return lambda k, v, t: _MISSING if rest else t
    if not rest:
        name = head

        def field(k: Any, v: Any, t: int) -> Any:
            if isinstance(v, dict):
                return v.get(name)
            return _MISSING

        return field
    return lambda k, v, t: _lookup(v, segments)


class _Parser:
    """Recursive descent over the tokens; builds closures, never source code."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.nodes = 0

    # -- token helpers --
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == kind and (value is None or tok.value == value)

    def expect(self, kind: str, value: Any, what: str) -> Token:
        if not self.at(kind, value):
            self.fail(f"expected {what}")
        return self.take()

    def fail(self, message: str) -> None:
        tok = self.peek()
        found = "the end" if tok.kind == "end" else repr(_show(tok))
        raise FilterSyntaxError(f"{message}, found {found}", tok.column)

    def count(self, column: int) -> None:
        """One more term; refuse a filter beyond :data:`MAX_NODES` of them."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterSyntaxError(f"more than {MAX_NODES} terms (the limit)", column)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(f"nested deeper than {MAX_DEPTH}", self.peek().column)

    # -- grammar --
    def parse(self) -> Predicate:
        if self.at("end"):
            self.fail("expected an expression")
        pred = self.expr()
        if not self.at("end"):
            self.fail("expected 'and', 'or' or the end")
        return pred

    def expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.at("keyword", "or"):
            self.count(self.take().column)
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda k, v, t: any(p(k, v, t) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.at("keyword", "and"):
            self.count(self.take().column)
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda k, v, t: all(p(k, v, t) for p in parts)

    def not_expr(self) -> Predicate:
        if self.at("keyword", "not"):
            self.count(self.take().column)
            self.nest()
            inner = self.not_expr()
            self.depth -= 1
            return lambda k, v, t: not inner(k, v, t)
        return self.comparison()

    def comparison(self) -> Predicate:
        left, is_pred = self.operand()
        tok = self.peek()
        if tok.kind == "op" and tok.value in _COMPARE:
            self.count(self.take().column)
            right, _ = self.operand()
            cmp = _COMPARE[tok.value]
            return lambda k, v, t: cmp(left(k, v, t), right(k, v, t))
        negate = False
        if self.at("keyword", "not"):
            self.take()
            if not self.at("keyword", "in"):
                self.fail("expected 'in' after 'not'")
            negate = True
        if self.at("keyword", "in"):
            self.count(self.take().column)
            members = _members(self.literal_list())
            if negate:
                return lambda k, v, t: _tag(left(k, v, t)) not in members
            return lambda k, v, t: _tag(left(k, v, t)) in members
        if is_pred:
            return left  # a parenthesised expression is already a predicate
        return lambda k, v, t: _truthy(left(k, v, t))

    def operand(self) -> tuple[_Getter, bool]:
        """A value getter, and whether it is a parenthesised predicate."""
        tok = self.peek()
        self.count(tok.column)
        if tok.kind == "op" and tok.value == "(":
            self.take()
            self.nest()
            inner = self.expr()
            self.depth -= 1
            self.expect("op", ")", "')'")
            return inner, True
        if tok.kind == "path":
            self.take()
            return _path_getter(tok.value), False
        if tok.kind == "op" and tok.value == "[":
            items = self.literal_list()
            return (lambda k, v, t: items), False
        value = self.literal()
        return (lambda k, v, t: value), False

    def literal(self) -> Any:
        tok = self.peek()
        if tok.kind in ("number", "string"):
            self.take()
            return tok.value
        if tok.kind == "keyword" and tok.value in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[tok.value]
        self.fail("expected a field, a value or '('")
        raise AssertionError("unreachable")

    def literal_list(self) -> tuple[Any, ...]:
        start = self.expect("op", "[", "'[' to start a list")
        items: list[Any] = []
        if not self.at("op", "]"):
            items.append(self.literal())
            while self.at("op", ","):
                self.take()
                items.append(self.literal())
                if len(items) > MAX_LIST_ITEMS:
                    raise FilterSyntaxError(
                        f"list of more than {MAX_LIST_ITEMS} items (the limit)", start.column
                    )
        self.expect("op", "]", "',' or ']'")
        return tuple(items)


def _tag(value: Any) -> tuple[str, Any]:
    """A hashable stand-in of a value that is equal exactly when ``==`` holds in a filter.

    Numbers are equal by value (``1 == 1.0``, whose hashes agree), anything else by
    type and value; a list, dict or tuple never equals a list item (items are literals).
    """
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("other", id(value))


def _members(items: tuple[Any, ...]) -> frozenset[tuple[str, Any]]:
    return frozenset(_tag(item) for item in items)


def _show(tok: Token) -> str:
    if tok.kind == "path":
        return ".".join(str(s) for s in tok.value)
    if tok.kind == "string":
        return f'"{tok.value}"'
    return str(tok.value)


def compile_filter(text: str | None) -> Predicate | None:
    """Parse a filter expression into a predicate; ``None`` or blank means no filter.

    >>> keep = compile_filter('cdn == "cdn-b" and rebuffer_ratio > 0.02')
    >>> keep(None, {"cdn": "cdn-b", "rebuffer_ratio": 0.05}, 0)
    True
    >>> keep(None, {"cdn": "cdn-a", "rebuffer_ratio": 0.05}, 0)
    False

    Raises:
        FilterSyntaxError: the expression does not parse (the message names the column).
    """
    if text is None or not text.strip():
        return None
    return _Parser(tokenize(text)).parse()
