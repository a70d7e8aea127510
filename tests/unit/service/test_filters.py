"""The tap filter grammar: what parses, what it means, what is refused, and that it runs no code."""

from __future__ import annotations

import builtins
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.service.filters import (
    MAX_DEPTH,
    MAX_LENGTH,
    FilterSyntaxError,
    compile_filter,
    tokenize,
)

RECORD = {
    "cdn": "cdn-b",
    "country": "DE",
    "rebuffer_ratio": 0.031,
    "plays": 12,
    "live": True,
    "paused": False,
    "note": None,
    "empty": "",
    "group": {"cdn": "cdn-b", "tier": {"name": "gold"}},
    "top_titles": [{"title_id": "t0001", "score": 0.9}, {"title_id": "t0002", "score": 0.4}],
    "quote": 'say "hi"\n',
}
KEY = ("u-17", "tv")
TIME = 1_700_000_000_000


def holds(expr: str, value: Any = None, key: Any = KEY, t: int = TIME) -> bool:
    pred = compile_filter(expr)
    assert pred is not None
    return pred(key, RECORD if value is None else value, t)


@pytest.mark.parametrize(
    "expr,expected",
    [
        ('cdn == "cdn-b"', True),
        ("cdn == 'cdn-b'", True),
        ('cdn != "cdn-b"', False),
        ("rebuffer_ratio > 0.02", True),
        ("rebuffer_ratio >= 0.031", True),
        ("rebuffer_ratio < 3.1e-2", False),
        ("rebuffer_ratio <= 31E-3", True),
        ("plays == 12.0", True),  # numbers compare by value
        ("plays > -1", True),
        ("plays < .5", False),
        ('country in ["DE", "FR"]', True),
        ('country not in ["DE", "FR"]', False),
        ("plays in [1, 12, 40]", True),
        ("country in []", False),
        ('group.cdn == "cdn-b"', True),
        ('group.tier.name == "gold"', True),
        ('top_titles.0.title_id == "t0001"', True),
        ("top_titles.1.score < 0.5", True),
        ("top_titles.5.score < 0.5", False),  # out of range: null
        ('$key.0 == "u-17"', True),
        ('$key == ["u-17", "tv"]', True),  # a tuple key equals a list literal
        ("$time >= 1700000000000", True),
        ("live", True),
        ("paused", False),
        ("not paused", True),
        ("note == null", True),
        ("missing == null", True),
        ("missing != null", False),
        ("missing", False),
        ("empty", False),
        ("live == true and paused == false", True),
        ("live == 1", False),  # a bool is not a number
        ('plays == "12"', False),  # nor is a string
        ('country > "CH" and country < "FR"', True),  # strings order
        ('plays > "10"', False),  # a number and a string do not order
        ("note < 1", False),
        ("quote == 'say \"hi\"\\n'", True),  # escapes
        ('plays > 100 or cdn == "cdn-b" and country == "DE"', True),  # and binds tighter
        ('(plays > 100 or cdn == "cdn-b") and country == "FR"', False),
        ("not (plays > 100) and not not live", True),
        ("((((live))))", True),
        ("true", True),
        ("false or null", False),
        ("12 == plays", True),  # a value may stand left
        ("group.cdn == cdn", True),  # two fields
    ],
)
def test_meaning(expr: str, expected: bool) -> None:
    assert holds(expr) is expected


def test_paths_only_index_dicts_lists_and_tuples() -> None:
    class Obj:
        cdn = "cdn-b"

    # attributes are never reached: only dict keys and list/tuple positions are
    assert holds('cdn == "cdn-b"', value=Obj()) is False
    assert holds("cdn == null", value=Obj()) is True
    assert holds('__class__.__name__ == "dict"') is False
    assert holds("__class__ == null") is True
    assert holds("plays.0 == null") is True  # an int has no parts
    assert holds('cdn.0 == "c"') is False  # nor does a string
    assert holds("x == 1", value=[1, 2]) is False  # a list value has no fields


def test_blank_means_no_filter() -> None:
    assert compile_filter(None) is None
    assert compile_filter("   ") is None


@pytest.mark.parametrize(
    "expr,column,says",
    [
        ('cdn = "cdn-b"', 5, "use =="),
        ("cdn ==", 7, "expected a field, a value or '('"),
        ("(cdn == 1", 10, "expected ')'"),
        ("cdn == 1)", 9, "expected 'and', 'or' or the end"),
        ("cdn == 1 plays == 2", 10, "expected 'and', 'or' or the end"),
        ("a == b == c", 8, "expected 'and', 'or' or the end"),
        ("cdn in 1", 8, "expected '[' to start a list"),
        ("cdn in [country]", 9, "expected a field, a value or '('"),
        ("cdn == [1, [2]]", 12, "expected a field, a value or '('"),
        ('cdn in ["a" "b"]', 13, "expected ',' or ']'"),
        ("cdn not == 1", 9, "expected 'in' after 'not'"),
        ("$foo == 1", 1, "unknown name '$foo'"),
        ("and == 1", 1, "expected a field, a value or '('"),
        ("'open", 1, "unterminated string"),
        ('"a\\q"', 3, "unknown escape"),
        ("a && b", 3, "unexpected character '&'"),
        ("a == 1;", 7, "unexpected character ';'"),
        ("", None, None),
        ("not", 4, "expected a field, a value or '('"),
        ("in.x == 1", 1, "cannot start a field path"),
    ],
)
def test_syntax_errors_name_the_column(expr: str, column: int | None, says: str | None) -> None:
    if column is None:
        assert compile_filter(expr) is None
        return
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(expr)
    assert info.value.column == column, str(info.value)
    assert says is not None and says in str(info.value)
    assert str(info.value).startswith("filter: ")


def test_limits_keep_hostile_input_cheap() -> None:
    with pytest.raises(FilterSyntaxError, match="longer than"):
        compile_filter("a == 1 or " * (MAX_LENGTH // 10) + "a == 1")
    deep = "(" * (MAX_DEPTH + 1) + "live" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterSyntaxError, match="nested deeper"):
        compile_filter(deep)
    nots = "not " * (MAX_DEPTH + 1) + "live"
    with pytest.raises(FilterSyntaxError, match="nested deeper"):
        compile_filter(nots)
    ok = "(" * MAX_DEPTH + "live" + ")" * MAX_DEPTH
    assert holds(ok) is True


@pytest.mark.parametrize(
    "expr",
    [
        '__import__("os").system("touch /tmp/shoal-pwned")',
        "open('/etc/passwd')",
        "(lambda: 1)()",
        "[x for x in ()]",
        "plays.__class__.__bases__[0].__subclasses__()",
        "eval('1')",
        "a if b else c",
        "plays + 1 == 13",
        "f'{plays}'",
    ],
)
def test_python_is_not_in_the_grammar(expr: str) -> None:
    with pytest.raises(FilterSyntaxError):
        compile_filter(expr)


def test_dunder_names_are_just_missing_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the filter must never evaluate code")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    monkeypatch.setattr(builtins, "compile", refuse)
    monkeypatch.setattr(builtins, "__import__", refuse)
    pred = compile_filter('__import__ == "os" or __builtins__.eval != null or __class__')
    assert pred is not None
    assert pred(None, RECORD, 0) is False
    assert pred(None, {"__import__": "os"}, 0) is True  # a field like any other


def test_tokens() -> None:
    kinds = [(t.kind, t.value) for t in tokenize('a.b.0 >= -2.5e3 and $key in ["x", 1]')]
    assert kinds == [
        ("path", ("a", "b", 0)),
        ("op", ">="),
        ("number", -2500.0),
        ("keyword", "and"),
        ("path", ("$key",)),
        ("keyword", "in"),
        ("op", "["),
        ("string", "x"),
        ("op", ","),
        ("number", 1),
        ("op", "]"),
        ("end", None),
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
_ATOMS = [
    "cdn",
    "plays",
    "group.tier",
    "$key",
    "$time",
    "x.0.y",
    '"s"',
    "1",
    "2.5",
    "true",
    "null",
    "(",
    ")",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "[",
    "]",
    ",",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ATOMS), max_size=12), json_values)
def test_any_token_soup_parses_or_is_refused_and_never_raises_on_data(
    atoms: list[str], value: Any
) -> None:
    expr = " ".join(atoms)
    try:
        pred = compile_filter(expr)
    except FilterSyntaxError:
        return
    if pred is not None:
        assert pred(("k", 1), value, 5) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_only_ever_raises_filter_syntax_errors(text: str) -> None:
    try:
        pred = compile_filter(text)
    except FilterSyntaxError:
        return
    if pred is not None:
        assert pred(None, RECORD, 0) in (True, False)
