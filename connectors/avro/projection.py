"""Fast schema resolution for the common evolutions: read as written, then reshape.

fastavro resolves a writer schema into a different reader schema by checking
the pair again for every record, which costs about twice a plain decode. Most
evolutions are simple: fields added with a scalar default, fields dropped or
renamed through aliases, numeric promotions, enum symbols added, the same
changes inside nested or optional records, arrays and maps. For those
:func:`compile_projection` builds, once per pair, a function that turns a value
decoded with the writer schema alone into the value the reader schema would
give, with fields in fastavro's order (the writer's, then the reader's new
ones). Anything else returns ``None`` and the caller lets fastavro resolve.

Two deliberate differences from fastavro's resolution: a default for a
``float``/``double`` field is a Python float even when the JSON says ``0``, and
an empty ``[]``/``{}`` default is a new object per record, not one shared
object that a job could mutate for every later record.

Example:
    >>> from connectors.avro.schema_tree import normalize
    >>> v1 = {"type": "record", "name": "E", "fields": [
    ...     {"name": "a", "type": "int"}, {"name": "gone", "type": "string"}]}
    >>> v2 = {"type": "record", "name": "E", "fields": [
    ...     {"name": "a", "type": "double"}, {"name": "b", "type": "string", "default": "x"}]}
    >>> project = compile_projection(normalize(v1), normalize(v2))
    >>> project({"a": 1, "gone": "y"})
    {'a': 1.0, 'b': 'x'}
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any, Final

from connectors.avro.schema_tree import PRIMITIVES, SchemaTree, kind, same_name

__all__ = ["Projector", "compile_projection", "identity"]

Projector = Callable[[Any], Any]

#: Scalar reader types whose JSON default is used as is.
_SCALAR_DEFAULTS: Final[dict[str, tuple[type, ...]]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "string": (str,),
    "enum": (str,),
}
#: (writer, reader) primitive pairs Avro promotes.
_PROMOTIONS: Final = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)
#: Keys of a primitive schema that change how values are read.
_READ_PROPS: Final = ("logicalType", "precision", "scale")


def identity(value: Any) -> Any:
    """The projection of a schema pair that reads the same: the value itself.

    Args:
        value: a decoded value.

    Returns:
        ``value``.
    """
    return value


class _Unsupported(Exception):
    """This pair needs fastavro's full resolution."""


def compile_projection(writer: SchemaTree, reader: SchemaTree) -> Projector | None:
    """Build the writer-to-reader projection, when the pair is simple enough.

    Args:
        writer: the normalized writer schema.
        reader: the normalized reader schema.

    Returns:
        :func:`identity` when the schemas read alike, a projector for simple
        evolutions, or ``None`` when fastavro must resolve the pair.
    """
    if _reading_form(writer.root) == _reading_form(reader.root):
        return identity
    try:
        return _Compiler(writer, reader).build(writer.root, reader.root)
    except _Unsupported:
        return None


class _Compiler:
    def __init__(self, writer: SchemaTree, reader: SchemaTree) -> None:
        self._w = writer
        self._r = reader
        self._open: set[tuple[str, str]] = set()

    def build(self, w: Any, r: Any) -> Projector:
        w, r = self._w.deref(w), self._r.deref(r)
        w_kind, r_kind = kind(w), kind(r)
        if w_kind in PRIMITIVES and r_kind in PRIMITIVES:
            return _primitive(w, r, w_kind, r_kind)
        if r_kind == "union" and w_kind != "union":
            # fastavro reads a plain value as the first reader branch it matches.
            branch = next((b for b in r if self._matches(w, b)), None)
            if branch is None:
                raise _Unsupported
            return self.build(w, branch)
        if w_kind != r_kind:
            raise _Unsupported
        if w_kind == "union":
            return self._union(w, r)
        if w_kind == "array":
            items = self.build(w["items"], r["items"])
            return identity if items is identity else _each(items)
        if w_kind == "map":
            values = self.build(w["values"], r["values"])
            return identity if values is identity else _each_value(values)
        if not same_name(w, r):
            raise _Unsupported
        if w_kind == "enum":
            return _enum(w, r)
        if w_kind == "fixed":
            if w["size"] != r["size"] or _props(w) != _props(r):
                raise _Unsupported
            return identity
        return self._record(w, r)

    def _union(self, w: list[Any], r: list[Any]) -> Projector:
        # Only the same branch kinds in the same order: then branch i reads as i.
        if len(w) != len(r):
            raise _Unsupported
        for index, branch in enumerate(w):
            # fastavro reads a writer branch as the first reader branch it matches.
            first = next(i for i, rb in enumerate(r) if i == index or self._matches(branch, rb))
            if first != index:
                raise _Unsupported
        parts = [self.build(wb, rb) for wb, rb in zip(w, r, strict=True)]
        if all(part is identity for part in parts):
            return identity
        kinds = [kind(self._w.deref(branch)) for branch in w]
        others = [p for k, p in zip(kinds, parts, strict=True) if k != "null"]
        if len(w) == 2 and "null" in kinds and len(others) == 1:
            return _nullable(others[0])
        raise _Unsupported

    def _matches(self, w: Any, r: Any) -> bool:
        """Whether a writer branch can be read as a reader branch (Avro's union rule)."""
        w, r = self._w.deref(w), self._r.deref(r)
        w_kind, r_kind = kind(w), kind(r)
        if w_kind in PRIMITIVES and r_kind in PRIMITIVES:
            return w_kind == r_kind or (w_kind, r_kind) in _PROMOTIONS
        if w_kind != r_kind:
            return False
        if w_kind == "array":
            return self._matches(w["items"], r["items"])
        if w_kind == "map":
            return self._matches(w["values"], r["values"])
        return w_kind == "union" or same_name(w, r)

    def _record(self, w: dict[str, Any], r: dict[str, Any]) -> Projector:
        pair = (w["name"], r["name"])
        if pair in self._open:
            raise _Unsupported  # recursive types: leave them to fastavro
        self._open.add(pair)
        by_name = {field["name"]: field for field in r["fields"]}
        by_alias = {alias: f for f in r["fields"] for alias in f.get("aliases", [])}
        steps: list[tuple[str, Projector]] = []
        same = True
        # fastavro's order: the writer's fields it keeps, then the reader's new ones.
        for source in w["fields"]:
            field = by_name.get(source["name"]) or by_alias.get(source["name"])
            if field is None:
                same = False  # dropped
                continue
            if any(name == field["name"] for name, _ in steps):
                raise _Unsupported  # two writer fields feed one reader field
            part = self.build(source["type"], field["type"])
            same = same and part is identity and field["name"] == source["name"]
            steps.append((field["name"], _field(source["name"], part)))
        kept = {name for name, _ in steps}
        for field in r["fields"]:
            if field["name"] not in kept:
                steps.append((field["name"], self._default(field)))
                same = False
        self._open.discard(pair)
        return identity if same else _record(tuple(steps))

    def _default(self, field: dict[str, Any]) -> Projector:
        if "default" not in field:
            raise _Unsupported  # fastavro reports the error per record
        default = field["default"]
        schema = self._r.deref(field["type"])
        if kind(schema) == "union":
            schema = self._r.deref(schema[0])  # a union's default is for its first branch
        type_ = kind(schema)
        if isinstance(schema, dict) and any(key in schema for key in _READ_PROPS):
            raise _Unsupported
        if type_ in ("float", "double") and isinstance(default, int | float):
            value = float(default)
            return lambda _record: value
        if type_ in ("array", "map") and not default:
            # A fresh empty one per record: values are mutable.
            return (lambda _record: []) if type_ == "array" else (lambda _record: {})
        allowed = _SCALAR_DEFAULTS.get(type_)
        if allowed is None or not isinstance(default, allowed):
            raise _Unsupported
        if type_ in ("int", "long") and isinstance(default, bool):
            raise _Unsupported
        return lambda _record: default


def _reading_form(schema: Any) -> Any:
    """The parts of a normalized schema that decide how bytes read (no docs, defaults)."""
    if isinstance(schema, list):
        return [_reading_form(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: schema[key] for key in ("type", "name", "symbols", "size") if key in schema}
    out.update(zip(_READ_PROPS, _props(schema), strict=True))
    if "fields" in schema:
        out["fields"] = [(f["name"], _reading_form(f["type"])) for f in schema["fields"]]
    for key in ("items", "values"):
        if key in schema:
            out[key] = _reading_form(schema[key])
    return out


def _props(schema: Any) -> tuple[Any, ...]:
    if not isinstance(schema, dict):
        return ()
    return tuple(schema.get(key) for key in _READ_PROPS)


def _primitive(w: Any, r: Any, w_kind: str, r_kind: str) -> Projector:
    if _props(w) != _props(r):
        raise _Unsupported  # a logical type appears or changes: fastavro converts
    if w_kind == r_kind or (w_kind, r_kind) in (("int", "long"), ("float", "double")):
        return identity
    if r_kind in ("float", "double") and w_kind in ("int", "long"):
        return float
    if (w_kind, r_kind) == ("string", "bytes"):
        return _to_bytes
    if (w_kind, r_kind) == ("bytes", "string"):
        return _to_str
    raise _Unsupported


def _to_bytes(value: str) -> bytes:
    return value.encode("utf-8")


def _to_str(value: bytes) -> str:
    return value.decode("utf-8")


def _enum(w: dict[str, Any], r: dict[str, Any]) -> Projector:
    symbols = frozenset(r["symbols"])
    if symbols.issuperset(w["symbols"]):
        return identity
    if "default" not in r:
        raise _Unsupported  # fastavro raises for the records that carry a lost symbol
    default = r["default"]
    return lambda symbol: symbol if symbol in symbols else default


def _each(part: Projector) -> Projector:
    return lambda items: [part(item) for item in items]


def _each_value(part: Projector) -> Projector:
    return lambda values: {key: part(value) for key, value in values.items()}


def _nullable(part: Projector) -> Projector:
    return lambda value: None if value is None else part(value)


def _field(source: str, part: Projector) -> Projector:
    if part is identity:
        return itemgetter(source)
    return lambda record: part(record[source])


def _record(steps: tuple[tuple[str, Projector], ...]) -> Projector:
    # One getter per reader field, in the reader's order (as fastavro returns it).
    def project(record: dict[str, Any]) -> dict[str, Any]:
        return {name: get(record) for name, get in steps}

    return project
