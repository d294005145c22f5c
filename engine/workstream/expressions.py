"""The small expression language of a step's `when`: comparisons over params, env, matrix and outputs.

    when: "params.target == 'prod' and steps.build.outputs.changed != 'false'"
    when: "${env.CI == 'true'} or 'docs' in steps.scan.outputs.areas"

Operands are quoted strings ('...' or "..."), numbers, `true`/`false`, lists (`['a', 'b']`) and
references: `params.NAME`, `env.NAME`, `matrix.KEY`, `steps.ID.outputs.NAME`, each also written
`${...}`, as elsewhere in the file. `${env.NAME == 'value'}`, the form `execution` fields know, is an
operand too. Operators: `==`, `!=`, `in`, `not in`, `and`, `or`, `not`, parentheses. Nothing else
parses: no calls, no attributes, no arithmetic, and the text is never handed to `eval`.

Values compare as text (`params.replicas == 3` holds for the integer 3; true is `true`); `in` looks
for an item in a list (an output holding a JSON list is one) or for text inside text. A lone operand
is true unless it is empty, `false`, `0` or `no`, or an empty list. A missing env variable or output
reads as empty text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .interpolation import param_text
from .limits import MAX_NESTING

_REF = (
    r"(?:params|env|matrix)\.[A-Za-z_][A-Za-z0-9_]*"
    r"|steps\.[A-Za-z0-9_.-]+?(?:\[[^\]]*\])?\.outputs\.[A-Za-z0-9_-]+"
)
_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<envcmp>\$\{\s*env\.(?P<cname>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<cop>==|!=)\s*(?P<cq>['\"])(?P<cval>.*?)(?P=cq)\s*\})"
    rf"|\$\{{\s*(?P<wrapped>{_REF})\s*\}}"
    r"|(?P<string>'[^']*'|\"[^\"]*\")"
    r"|(?P<number>-?\d+(?:\.\d+)?)(?![\w.])"
    r"|(?P<op>==|!=|\(|\)|\[|\]|,)"
    rf"|(?P<ref>{_REF})(?![\w.\[])"
    r"|(?P<word>and|or|not|in|true|false)(?!\w)"
    r")"
)

Value = str | list[str]
Lookup = Callable[[str, str], Any]  # (namespace, name) → the value (None: missing)


class ExpressionError(ValueError):
    """An expression that does not parse; the message says where and what was expected."""


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, op, ref, word, envcmp, end
    text: str
    column: int
    match: re.Match[str] | None = None


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    end = len(text.rstrip())  # trailing blanks end the text; measured once, not per token
    while pos < end:
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            shown = text[column - 1 : column + 19]
            raise ExpressionError(f"cannot read {shown!r} at column {column}")
        kind = next(k for k in ("envcmp", "wrapped", "string", "number", "op", "ref", "word") if match[k])
        if kind == "wrapped":
            kind, body = "ref", match["wrapped"]
        else:
            body = match[kind]
        out.append(Token(kind, body, match.start(kind) + 1, match))
        pos = match.end()
    out.append(Token("end", "", len(text) + 1))
    return out


# The parsed tree: nested tuples, evaluated by `evaluate`.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0  # parentheses, brackets and `not`s open: bounded, as a file's nesting is

    def deeper(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"more than {MAX_NESTING} levels of nesting at column {column}")

    def peek(self, *texts: str) -> bool:
        token = self.tokens[self.i]
        return token.kind in ("op", "word") and token.text in texts

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("op", "word"):
            found = repr(token.text) if token.kind != "end" else "the end"
            raise ExpressionError(f"expected {text!r} at column {token.column}, found {found}")

    def parse(self) -> Node:
        node = self.or_()
        token = self.tokens[self.i]
        if token.kind != "end":
            raise ExpressionError(f"unexpected {token.text!r} at column {token.column}")
        return node

    # `a and b and c` is one node with three children, so a long chain is not a deep tree.
    def or_(self) -> Node:
        terms = [self.and_()]
        while self.peek("or"):
            self.take()
            terms.append(self.and_())
        return terms[0] if len(terms) == 1 else ("or", *terms)

    def and_(self) -> Node:
        terms = [self.not_()]
        while self.peek("and"):
            self.take()
            terms.append(self.not_())
        return terms[0] if len(terms) == 1 else ("and", *terms)

    def not_(self) -> Node:
        if self.peek("not"):
            self.deeper(self.take().column)
            node = ("not", self.not_())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        if self.peek("==", "!=", "in"):
            op = self.take().text
            return (op, left, self.operand())
        if self.peek("not") and self.tokens[self.i + 1].text == "in":
            self.i += 2
            return ("not", ("in", left, self.operand()))
        return ("truthy", left)

    def operand(self) -> Node:
        token = self.take()
        if token.kind == "string":
            return ("lit", token.text[1:-1])
        if token.kind == "number":
            return ("lit", token.text)
        if token.kind == "ref":
            namespace, _, name = token.text.partition(".")
            return ("ref", namespace, name)
        if token.kind == "envcmp":
            assert token.match is not None
            compared = ("ref", "env", token.match["cname"]), ("lit", token.match["cval"])
            return ("==" if token.match["cop"] == "==" else "!=", *compared)
        if token.kind == "word" and token.text in ("true", "false"):
            return ("lit", token.text)
        if token.kind == "op" and token.text == "(":
            self.deeper(token.column)
            node = self.or_()
            self.expect(")")
            self.depth -= 1
            return node
        if token.kind == "op" and token.text == "[":
            self.deeper(token.column)
            items: list[Node] = []
            while not self.peek("]"):
                items.append(self.operand())
                if not self.peek("]"):
                    self.expect(",")
            self.take()
            self.depth -= 1
            return ("list", *items)
        found = repr(token.text) if token.kind != "end" else "the end"
        raise ExpressionError(f"expected a value at column {token.column}, found {found}")


@dataclass(frozen=True)
class Expression:
    """A parsed `when`: its tree and the references it reads."""

    text: str
    tree: Node

    def references(self) -> list[tuple[str, str]]:
        """(namespace, name) of each reference, in order, once each."""
        found: list[tuple[str, str]] = []

        def walk(node: Node) -> None:
            if node[0] == "ref":
                found.append((node[1], node[2]))
            elif node[0] not in ("lit",):
                for child in node[1:]:
                    walk(child)

        walk(self.tree)
        return list(dict.fromkeys(found))

    def holds(self, lookup: Lookup) -> bool:
        """Whether the expression is true with the references read through `lookup`."""
        return _truthy(_evaluate(self.tree, lookup))


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Expression:
    """Parse `text` (ExpressionError saying where it goes wrong).

    Cached: the reactor asks for a step's condition when the step would become ready, and a
    matrix's expansions share one text; an Expression is immutable, so one parse serves them all.
    """
    stripped = text.strip()
    if not stripped:
        raise ExpressionError("the expression is empty")
    return Expression(text, _Parser(stripped).parse())


def _as_value(value: Any) -> Value:
    if value is None:
        return ""
    if isinstance(value, list):
        return [param_text(v) if not isinstance(v, dict | list) else json.dumps(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return param_text(value)


def _truthy(value: Value | bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return bool(value)
    return value.strip().casefold() not in ("", "false", "0", "no")


def _evaluate(node: Node, lookup: Lookup) -> Value | bool:
    kind = node[0]
    if kind == "lit":
        return str(node[1])
    if kind == "ref":
        return _as_value(lookup(node[1], node[2]))
    if kind == "list":
        return [_text(_evaluate(item, lookup)) for item in node[1:]]
    if kind == "truthy":
        return _truthy(_evaluate(node[1], lookup))
    if kind == "not":
        return not _truthy(_evaluate(node[1], lookup))
    if kind == "and":
        return all(_truthy(_evaluate(term, lookup)) for term in node[1:])
    if kind == "or":
        return any(_truthy(_evaluate(term, lookup)) for term in node[1:])
    left, right = _evaluate(node[1], lookup), _evaluate(node[2], lookup)
    if kind == "in":
        if isinstance(right, list):
            return _text(left) in right
        return _text(left) in _text(right)
    equal = _text(left) == _text(right) if not isinstance(left, list) else left == right
    return equal if kind == "==" else not equal


def _text(value: Value | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return value
