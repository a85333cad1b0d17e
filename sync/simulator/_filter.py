"""The ``filter=`` grammar of the Connector API docs, for people: ``eq``, ``ge``, ``le``, ``in (...)``,
``and``, ``or`` and parentheses; string and date literals in single quotes (``''`` escapes a quote),
integers bare, ``null`` for an empty field. ``changeVersion`` is a string (it compares lexically,
as the delta reference says), so its literals are quoted too.

A filter compiles to a predicate plus, where the expression allows it, a small candidate set from
the world's indexes (id, badge number, employee number), so ``id in (...)`` on 100,000 people does
not scan them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sync.simulator._http import Resp, error
from sync.simulator._people import API_TO_ATTR, SimPerson, change_version_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.simulator._world import World

_INT_FIELDS = frozenset({"id"})
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<word>[A-Za-z_@][A-Za-z0-9_\-]*)|(?P<punct>[(),]))"
)
_MAX_IN_ITEMS = 1000
_MAX_DEPTH = 32


class FilterError(ValueError):
    """The filter cannot be parsed or names an unknown field; the message is the 400 reason."""


Literal = str | int | None


@dataclass(frozen=True, slots=True)
class _Cmp:
    field: str
    op: str  # eq, ge, le, in
    values: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str  # and, or
    parts: tuple[Node, ...]


Node = _Cmp | _Bool


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"unexpected character at position {pos}: {text[pos : pos + 10]!r}")
        pos = match.end()
        if match["str"] is not None:
            tokens.append(("lit", match["str"][1:-1].replace("''", "'")))
        elif match["num"] is not None:
            tokens.append(("lit", int(match["num"])))
        elif match["word"] is not None:
            word = match["word"]
            if word == "null":
                tokens.append(("lit", None))
            else:
                tokens.append(("word", word))
        else:
            tokens.append((match["punct"], match["punct"]))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of filter")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "word" and str(token[1]).lower() in words:
            self.pos += 1
            return str(token[1]).lower()
        return None

    def expr(self) -> Node:
        parts = [self.term()]
        while self.keyword("or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else _Bool("or", tuple(parts))

    def term(self) -> Node:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else _Bool("and", tuple(parts))

    def factor(self) -> Node:
        token = self.peek()
        if token is not None and token[0] == "(":
            self.pos += 1
            self.depth += 1
            # A URI of 4,096 characters could otherwise nest deep enough to exhaust the stack.
            if self.depth > _MAX_DEPTH:
                raise FilterError(f"parentheses nested deeper than {_MAX_DEPTH}")
            node = self.expr()
            if self.take()[0] != ")":
                raise FilterError("missing ')'")
            self.depth -= 1
            return node
        return self.comparison()

    def literal(self, field: str) -> Literal:
        kind, value = self.take()
        if kind != "lit":
            raise FilterError(f"expected a literal for {field}, got {value!r}")
        if value is not None and (field in _INT_FIELDS) != isinstance(value, int):
            expected = "an integer" if field in _INT_FIELDS else "a quoted string"
            raise FilterError(f"{field} needs {expected}, got {value!r}")
        return value  # type: ignore[no-any-return]

    def comparison(self) -> Node:
        kind, field = self.take()
        if kind != "word" or field not in API_TO_ATTR:
            raise FilterError(
                f"unknown filter field {field!r} (known: {', '.join(sorted(API_TO_ATTR))})"
            )
        op = self.keyword("eq", "ge", "le", "in")
        if op is None:
            found = self.peek()
            raise FilterError(
                f"expected eq, ge, le or in after {field}, got {found and found[1]!r}"
            )
        if op != "in":
            return _Cmp(field, op, (self.literal(field),))
        if self.take()[0] != "(":
            raise FilterError("expected '(' after in")
        values = [self.literal(field)]
        while (token := self.take())[0] == ",":
            values.append(self.literal(field))
        if token[0] != ")":
            raise FilterError("expected ',' or ')' in an in-list")
        if len(values) > _MAX_IN_ITEMS:
            raise FilterError(f"more than {_MAX_IN_ITEMS} values in an in-list")
        return _Cmp(field, op, tuple(values))


def _predicate(node: Node) -> Callable[[SimPerson], bool]:
    if isinstance(node, _Bool):
        preds = [_predicate(p) for p in node.parts]
        if node.op == "and":
            return lambda p: all(pred(p) for pred in preds)
        return lambda p: any(pred(p) for pred in preds)
    value_of = _value_getter(node.field)
    if node.op in ("eq", "in"):
        wanted = frozenset(node.values)
        return lambda p: value_of(p) in wanted
    bound = node.values[0]
    if bound is None:
        return lambda _p: False
    if node.op == "ge":
        return lambda p: (v := value_of(p)) is not None and v >= bound
    return lambda p: (v := value_of(p)) is not None and v <= bound


def _value_getter(field: str) -> Callable[[SimPerson], Any]:
    """How to read a filter field off a person, in the form the API shows it."""
    if field == "changeVersion":
        return lambda p: change_version_text(p.change_version)
    return attrgetter(API_TO_ATTR[field])


def _candidates(node: Node, world: World) -> set[int] | None:
    """Ids that can match, from an index; None when the expression needs a scan."""
    if isinstance(node, _Bool):
        sets = [_candidates(p, world) for p in node.parts]
        if node.op == "and":
            known = [s for s in sets if s is not None]
            return set.intersection(*known) if known else None
        if any(s is None for s in sets):
            return None
        return set().union(*[s for s in sets if s is not None])
    if node.op not in ("eq", "in"):
        return None
    if node.field == "id":
        return {v for v in node.values if isinstance(v, int)}
    if node.field == "badgeNumber":
        found = (world.by_badge(v) for v in node.values if isinstance(v, str))
        return {pid for pid in found if pid is not None}
    if node.field == "employeeNumber":
        out: set[int] = set()
        for v in node.values:
            if isinstance(v, str):
                out |= world.by_employee_number(v)
        return out
    return None


@dataclass(frozen=True, slots=True)
class PeopleFilter:
    """A compiled filter: a predicate and, when the expression allows, candidate ids."""

    matches: Callable[[SimPerson], bool]
    node: Node

    def candidates(self, world: World) -> list[int] | None:
        """Sorted candidate ids from the indexes, or None when every person must be checked."""
        found = _candidates(self.node, world)
        return None if found is None else sorted(found)


def parse_filter(text: str) -> PeopleFilter:
    """Compile a filter expression; ``FilterError`` with a readable reason when it is wrong."""
    if not text.strip():
        raise FilterError("empty filter")
    parser = _Parser(_tokenize(text))
    node = parser.expr()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek()[1]!r} after the expression")  # type: ignore[index]
    return PeopleFilter(_predicate(node), node)


def people_filter(params: dict[str, str]) -> PeopleFilter | Resp | None:
    """The compiled ``filter=`` of a people request (None without one), or its 400 answer."""
    if "filter" not in params:
        return None
    try:
        return parse_filter(params["filter"])
    except FilterError as exc:
        return error(400, "BadRequest", "invalid filter", [str(exc)])
