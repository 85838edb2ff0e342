"""A small, safe expression language over log fields, compiled to Polars.

Used by ``custom_rules`` (``if``) and ``cascade`` (``escalate_if``). It is
parsed by hand into Polars expressions; nothing is ever ``eval``-ed.

    tags contains "tier:free" and input_tokens > 2000
    model in ["gpt-4o", "gpt-4.1"] or end_user_id startswith "eu_"
    not ("feature:search" in tags) and hour >= 9 and hour < 17
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import polars as pl

from engine.errors import ConfigError

Kind = Literal["num", "str", "bool", "tags", "list", "null"]

#: Fields a rule may read, with their kind and the log columns behind them.
FIELDS: dict[str, tuple[Kind, pl.Expr, frozenset[str]]] = {
    "model": ("str", pl.col("model"), frozenset({"model"})),
    "provider": ("str", pl.col("provider"), frozenset({"provider"})),
    "end_user_id": ("str", pl.col("end_user_id"), frozenset({"end_user_id"})),
    "tags": ("tags", pl.col("tags"), frozenset({"tags"})),
    "input_tokens": ("num", pl.col("input_tokens"), frozenset({"input_tokens"})),
    "output_tokens": ("num", pl.col("output_tokens"), frozenset({"output_tokens"})),
    "cached_input_tokens": ("num", pl.col("cached_input_tokens"), frozenset({"cached_input_tokens"})),
    "routing_config_version": ("num", pl.col("routing_config_version"), frozenset({"routing_config_version"})),
    "hour": ("num", pl.col("timestamp").dt.hour().cast(pl.Int64), frozenset({"timestamp"})),
    "weekday": ("num", pl.col("timestamp").dt.weekday().cast(pl.Int64), frozenset({"timestamp"})),
}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\+|-|\*|/)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
#: Bounds that keep compiling and evaluating a rule cheap: characters, nesting, terms and digits.
MAX_RULE_CHARS = 2000
MAX_DEPTH = 24
MAX_TERMS = 100
MAX_NUMBER_DIGITS = 15
_KEYWORDS = {"and", "or", "not", "in", "contains", "startswith", "endswith", "matches", "true", "false", "null"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | str | op | name | kw | end
    text: str
    pos: int


@dataclass(frozen=True)
class _Val:
    kind: Kind
    expr: pl.Expr
    literal: object = None  # the Python value of a literal, for lists and patterns
    is_literal: bool = False


@dataclass(frozen=True)
class Compiled:
    """A compiled condition: a boolean expression and the columns it reads.

    A missing value never matches a test (``end_user_id startswith "eu"`` is
    false on a null), so ``not`` of such a test is true; ``== null`` and
    ``!= null`` test for missing values explicitly.
    """

    expr: pl.Expr
    columns: frozenset[str]


def _tokenize(source: str) -> list[_Tok]:
    tokens, pos = [], 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise ValueError(f"unexpected character {source[pos:].lstrip()[:1]!r} at {pos}")
        group = match.lastgroup or ""
        text = match.group(group)
        kind = "kw" if group == "name" and text in _KEYWORDS else group
        tokens.append(_Tok(kind, text, match.start(group)))
        pos = match.end()
    tokens.append(_Tok("end", "", len(source)))
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.i = 0
        self.columns: set[str] = set()
        self.depth = 0
        self.terms = 0

    @contextmanager
    def nested(self) -> Iterator[None]:
        """One level deeper (parentheses, lists, ``not``, unary minus): bounded, so no input recurses far."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ValueError(f"the rule nests deeper than {MAX_DEPTH} levels")
        try:
            yield
        finally:
            self.depth -= 1

    def term(self) -> None:
        """Count one operand of ``and``/``or``/arithmetic."""
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise ValueError(f"the rule has more than {MAX_TERMS} terms; split it into several rules")

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.tok
        if text is not None and tok.text != text:
            raise ValueError(f"expected {text!r} at {tok.pos}, found {tok.text or 'end of rule'!r}")
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "kw") and self.tok.text in texts

    # grammar ---------------------------------------------------------------
    def parse(self) -> _Val:
        value = self.or_()
        if self.tok.kind != "end":
            raise ValueError(f"unexpected {self.tok.text!r} at {self.tok.pos}")
        return value

    def or_(self) -> _Val:
        left = self.and_()
        while self.at("or"):
            self.take()
            self.term()
            left = _Val("bool", _bool(left) | _bool(self.and_()))
        return left

    def and_(self) -> _Val:
        left = self.not_()
        while self.at("and"):
            self.take()
            self.term()
            left = _Val("bool", _bool(left) & _bool(self.not_()))
        return left

    def not_(self) -> _Val:
        if self.at("not"):
            self.take()
            with self.nested():
                return _Val("bool", ~_bool(self.not_()))
        return self.comparison()

    def comparison(self) -> _Val:
        left = self.additive()
        if self.at(*_COMPARE):
            op = self.take().text
            return _compare(left, op, self.additive())
        if self.at("not") and self.tokens[self.i + 1].text == "in":
            self.take()
            self.take()
            return _Val("bool", ~_member(left, self.additive()))
        if self.at("in"):
            self.take()
            return _Val("bool", _member(left, self.additive()))
        if self.at("contains"):
            self.take()
            return _Val("bool", _member(self.additive(), left))
        if self.at("startswith", "endswith", "matches"):
            op = self.take().text
            return _string_test(left, op, self.additive())
        return left

    def arithmetic(self, ops: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]], operand: Callable[[], _Val]) -> _Val:
        left = operand()
        while self.at(*ops):
            op = self.take().text
            self.term()
            right = operand()
            _need(left, "num", op)
            _need(right, "num", op)
            left = _Val("num", ops[op](left.expr, right.expr))
        return left

    def additive(self) -> _Val:
        return self.arithmetic({"+": operator.add, "-": operator.sub}, self.multiplicative)

    def multiplicative(self) -> _Val:
        return self.arithmetic({"*": operator.mul, "/": operator.truediv}, self.unary)

    def unary(self) -> _Val:
        if self.at("-"):
            self.take()
            with self.nested():
                value = self.unary()
            _need(value, "num", "-")
            return _Val("num", -value.expr, None if value.literal is None else -value.literal, value.is_literal)  # type: ignore[operator]
        return self.primary()

    def primary(self) -> _Val:
        tok = self.take()
        if tok.kind == "num":
            if len(tok.text.replace(".", "")) > MAX_NUMBER_DIGITS:
                raise ValueError(f"numbers have at most {MAX_NUMBER_DIGITS} digits (at {tok.pos})")
            number = float(tok.text) if "." in tok.text else int(tok.text)
            return _Val("num", pl.lit(number), number, True)
        if tok.kind == "str":
            text = _unquote(tok.text)
            return _Val("str", pl.lit(text), text, True)
        if tok.kind == "kw" and tok.text in ("true", "false"):
            return _Val("bool", pl.lit(tok.text == "true"), tok.text == "true", True)
        if tok.kind == "kw" and tok.text == "null":
            return _Val("null", pl.lit(None), None, True)
        if tok.kind == "name":
            if tok.text not in FIELDS:
                raise ValueError(f"unknown field {tok.text!r} at {tok.pos}; fields: {', '.join(FIELDS)}")
            kind, expr, columns = FIELDS[tok.text]
            self.columns |= columns
            return _Val(kind, expr)
        if tok.text == "(":
            with self.nested():
                value = self.or_()
            self.take(")")
            return value
        if tok.text == "[":
            with self.nested():
                return self.list_literal(tok)
        raise ValueError(f"unexpected {tok.text or 'end of rule'!r} at {tok.pos}")

    def list_literal(self, tok: _Tok) -> _Val:
        """``[literal, …]`` after its opening bracket."""
        items: list[object] = []
        while not self.at("]"):
            item = self.unary()
            if not item.is_literal:
                raise ValueError(f"list items must be literals (at {tok.pos})")
            items.append(item.literal)
            if not self.at("]"):
                self.take(",")
        self.take("]")
        return _Val("list", pl.lit(None), items, True)


def _need(value: _Val, kind: Kind, op: str) -> None:
    if value.kind != kind:
        raise ValueError(f"operator {op!r} needs a {kind} operand, got a {value.kind}")


def _bool(value: _Val) -> pl.Expr:
    if value.kind != "bool":
        raise ValueError(f"expected a condition, got a {value.kind} value")
    return value.expr


def _compare(left: _Val, op: str, right: _Val) -> _Val:
    if "tags" in (left.kind, right.kind) or "list" in (left.kind, right.kind):
        raise ValueError(f"operator {op!r} does not apply to lists; use 'in' or 'contains'")
    if left.kind == "null" or right.kind == "null":
        if op not in ("==", "!="):
            raise ValueError("null can only be compared with == or !=")
        other = right if left.kind == "null" else left
        return _Val("bool", other.expr.is_null() if op == "==" else other.expr.is_not_null())
    if left.kind != right.kind:
        raise ValueError(f"cannot compare a {left.kind} with a {right.kind}")
    if left.kind in ("str", "bool") and op not in ("==", "!="):
        raise ValueError(f"operator {op!r} needs numbers")
    ops = {
        "==": left.expr.eq_missing,
        "!=": left.expr.ne_missing,
        "<": left.expr.__lt__,
        "<=": left.expr.__le__,
        ">": left.expr.__gt__,
        ">=": left.expr.__ge__,
    }
    return _Val("bool", ops[op](right.expr).fill_null(False))


def _member(item: _Val, container: _Val) -> pl.Expr:
    if container.kind == "tags":
        if item.kind != "str":
            raise ValueError("tags hold strings: use a string with 'in' / 'contains'")
        return container.expr.list.contains(item.expr).fill_null(False)
    if container.kind == "list":
        assert isinstance(container.literal, list)
        return item.expr.is_in(container.literal).fill_null(False)
    raise ValueError(f"'in' needs a list or tags on its right, got a {container.kind}")


def _string_test(left: _Val, op: str, right: _Val) -> _Val:
    if left.kind != "str" or not right.is_literal or right.kind != "str":
        raise ValueError(f"{op!r} needs a string field on the left and a string literal on the right")
    pattern = str(right.literal)
    if op == "startswith":
        test = left.expr.str.starts_with(pattern)
    elif op == "endswith":
        test = left.expr.str.ends_with(pattern)
    else:
        check_regex(pattern)
        test = left.expr.str.contains(pattern)
    return _Val("bool", test.fill_null(False))


def check_regex(pattern: str) -> None:
    """Refuse a pattern the engine that runs it (Polars' Rust ``regex``) cannot compile: ``ValueError``.

    Python's ``re`` accepts look-arounds and back-references that Polars refuses, so it cannot be the judge.
    """
    try:
        pl.Series("probe", [""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.PolarsError as exc:
        # The engine's message: "regex parse error: … error: <why>", then where the expression was.
        text = str(exc).split("This error occurred", 1)[0].strip()
        reason = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")), text.splitlines()[0])
        raise ValueError(f"bad regular expression {pattern!r}: {reason.removeprefix('error: ')}") from None


def compile_condition(source: str, *, param: str) -> Compiled:
    """Parse a rule condition into a boolean Polars expression (null rows read as false)."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError("a rule condition must be a non-empty string", param=param)
    if len(source) > MAX_RULE_CHARS:
        raise ConfigError(
            f"a rule condition has at most {MAX_RULE_CHARS:,} characters, got {len(source):,}", param=param
        )
    try:
        parser = _Parser(source)
        value = parser.parse()
        expr = _bool(value)
    except ValueError as exc:
        shown = source if len(source) <= 80 else source[:77] + "..."
        raise ConfigError(f"invalid rule {shown!r}: {exc}", param=param) from None
    return Compiled(expr.fill_null(False), frozenset(parser.columns))
