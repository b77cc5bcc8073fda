"""A faithful local commercetools HTTP API emulator (reference: commerce_apis.md §0, §3, §8.2).

One server plays both hosts of a commercetools region: the **auth API** (``POST /oauth/token``,
OAuth2 client credentials with HTTP Basic, ``expires_in`` 172800 s = 48 h of the *emulator* clock)
and the **HTTP API** (``GET /{projectKey}/orders``, ``/payments``, ``/customers``, ``/{entity}/{id}``
and the store-scoped ``/{projectKey}/in-store/key={storeKey}/orders|customers``). It serves seeded
native records unchanged (money exactly as seeded: ``centAmount`` + ``fractionDigits`` +
``currencyCode``, ``type: centPrecision``) and reproduces what a delta connector must survive:

* **Query Predicates** in ``where`` (repeatable, AND-ed): ``=``, ``!=``/``<>``, ``<``, ``<=``,
  ``>``, ``>=``, ``in (...)``, ``not in (...)``, ``is defined``, ``is not defined``,
  ``contains any|all (...)``, ``and``, ``or``, ``not(...)``, parentheses, nested fields
  (``store(key = "eu")``, ``transactions(type = "Refund" and state = "Success")``, any element of an
  array matches), string/number/boolean literals and ``:name`` placeholders bound from
  ``var.<name>`` query parameters (a repeated ``var.ids`` is a list for ``id in :ids``). Timestamps
  compare as instants. A predicate that does not parse, or a placeholder without its variable,
  answers 400 ``InvalidInput``;
* repeated ``sort`` (``lastModifiedAt asc``, ``id asc``, ``createdAt desc``; the direction is
  required). Without ``sort`` rows come in id order (real order is unspecified);
* ``limit`` default 20, 0..500, ``offset`` 0..10 000, both 400 beyond (so deep scans must use keyset
  paging); ``withTotal`` (default true; ``false`` removes ``total``); ``total`` capped at 10 000 when
  a ``where`` is given (release note 2020-10-12);
* versions: the same id may appear several times with different ``lastModifiedAt``/``version``. A
  query answers with each record as it stood at ``asof = min(upper bound of a lastModifiedAt
  predicate, clock)`` (the bound is exclusive for ``<``), then applies the predicates to that
  version; so a window ``[from, to)`` sees what the real project showed at ``to`` and records
  "appear" as the replay clock advances;
* the error envelope ``{"statusCode", "message", "errors": [{"code", "message"}]}``; 401
  ``invalid_token`` for a missing, unknown or expired bearer token; 403 ``insufficient_scope`` when
  a token asked for scopes that do not cover the resource; 404 ``ResourceNotFound`` for an unknown
  project or id.

Seed layout (CONTRACT.md §2): ``seed_dir`` is the ``commercetools/`` directory of a seed, holding one
directory per project key, each with ``orders/``, ``payments/`` and ``customers/`` of ``*.json``
files (each one JSON array of native objects). An emulator without any project serves the empty
project :data:`DEFAULT_PROJECT_KEY`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import operator
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from loyalty_assets.sandbox.httpserver import (
    Abort,
    Emulator,
    EmulatorClock,
    FaultInjector,
    Request,
    Response,
    Router,
    dumps,
    json_response,
    loads,
    parse_instant,
)

#: entities (also the seed sub-directories and the API paths below /{projectKey}/)
ENTITIES: tuple[str, ...] = ("orders", "payments", "customers")
#: entities that have store-scoped endpoints (/{projectKey}/in-store/key={storeKey}/...)
IN_STORE_ENTITIES: tuple[str, ...] = ("orders", "customers")

DEFAULT_CLIENT_ID = "sandbox-ct-client"
DEFAULT_CLIENT_SECRET = "sandbox-ct-secret"
DEFAULT_PROJECT_KEY = "sandbox-project"
DEFAULT_TOKEN_TTL = timedelta(seconds=172800)  # client-credentials tokens live 48 hours

DEFAULT_LIMIT = 20
MAX_LIMIT = 500
MAX_OFFSET = 10_000
MAX_TOTAL = 10_000  # `total` is capped at the maximum offset when a where predicate is given

INVALID_CLIENT = "Please provide valid client credentials using HTTP Basic Authentication."
INVALID_TOKEN = "invalid_token"

_KEY = r"[A-Za-z0-9_-]+"
_ERROR_CODES = {
    400: "InvalidInput",
    401: "invalid_token",
    403: "insufficient_scope",
    404: "ResourceNotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "General",
    502: "General",
    503: "ServiceUnavailable",
    504: "General",
}
_ISO_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_DATETIME_FIELDS = {"createdAt", "lastModifiedAt", "completedAt", "timestamp", "returnDate", "addedAt"}


def ct_error(status: int, message: str, code: str | None = None, **extra: Any) -> Response:
    """An error in commercetools' envelope: ``{"statusCode", "message", "errors": [{"code", "message"}]}``."""
    code = code or _ERROR_CODES.get(status, "General")
    body: dict[str, Any] = {
        "statusCode": status,
        "message": message,
        "errors": [{"code": code, "message": message}],
    }
    body.update(extra)
    return json_response(body, status)


def _invalid_input(message: str) -> Abort:
    return Abort(ct_error(400, message, "InvalidInput"))


def ct_timestamp(value: Any) -> datetime | None:
    """A commercetools ISO-8601 timestamp (``2017-01-04T19:54:49.797Z``) as an aware UTC datetime;
    None when ``value`` is not one."""
    return _parse_timestamp(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=65536)  # queries compare the same few timestamps over and over
def _parse_timestamp(value: str) -> datetime | None:
    if not _ISO_LIKE.match(value.strip()):
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


def format_ct_timestamp(moment: datetime) -> str:
    """An aware datetime as commercetools writes it: UTC, milliseconds, ``Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------------
# Query Predicates


class PredicateError(ValueError):
    """A ``where`` predicate that does not parse or cannot be bound."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "ident", "string", "number", "var", "op", "(", ")", ",", "end"
    text: str
    value: Any
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<var>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _unescape(literal: str) -> str:
    out, chars, i = [], literal[1:-1], 0
    while i < len(chars):
        ch = chars[i]
        if ch == "\\" and i + 1 < len(chars):
            nxt = chars[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", chars[i + 2 : i + 6]):
                out.append(chr(int(chars[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise PredicateError(f"Invalid input '{text[pos]}' at position {pos + 1}.")
        kind = match.lastgroup
        raw = match.group()
        if kind == "string":
            tokens.append(_Token("string", raw, _unescape(raw), pos))
        elif kind == "number":
            tokens.append(_Token("number", raw, Decimal(raw), pos))
        elif kind == "var":
            tokens.append(_Token("var", raw, raw[1:], pos))
        elif kind == "op":
            tokens.append(_Token("op", raw, "!=" if raw == "<>" else raw, pos))
        elif kind == "ident":
            tokens.append(_Token("ident", raw, raw, pos))
        elif kind == "punct":
            tokens.append(_Token(raw, raw, raw, pos))
        pos = match.end()
    tokens.append(_Token("end", "", None, len(text)))
    return tokens


# AST nodes: tuples, evaluated by _eval.
#   ("and", [nodes]) ("or", [nodes]) ("not", node) ("nested", field, node)
#   ("cmp", field, op, value) ("in", field, [values], negated) ("defined", field, negated)
#   ("contains", field, "any"|"all", [values]) ("empty", field, negated)
Node = tuple


class _Parser:
    def __init__(self, text: str, variables: dict[str, list[str]]):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.variables = variables

    # ----- token helpers

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def keyword(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == "ident" and token.text.lower() == word

    def expect(self, kind: str, what: str) -> _Token:
        token = self.next()
        if token.kind != kind:
            self.fail(token, what)
        return token

    def expect_keyword(self, word: str) -> None:
        token = self.next()
        if not (token.kind == "ident" and token.text.lower() == word):
            self.fail(token, f"'{word}'")

    def fail(self, token: _Token, expected: str) -> None:
        found = "end of input" if token.kind == "end" else f"'{token.text}'"
        raise PredicateError(f"Invalid input {found} at position {token.pos + 1}, expected {expected}.")

    # ----- grammar

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise PredicateError("Empty predicate.")
        node = self.parse_or()
        if self.peek().kind != "end":
            self.fail(self.peek(), "'and', 'or' or end of input")
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self.keyword("or"):
            self.next()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def parse_and(self) -> Node:
        parts = [self.parse_unary()]
        while self.keyword("and"):
            self.next()
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def parse_unary(self) -> Node:
        if self.keyword("not") and self.peek(1).kind == "(":
            self.next()
            self.next()
            inner = self.parse_or()
            self.expect(")", "')'")
            return ("not", inner)
        if self.peek().kind == "(":
            self.next()
            inner = self.parse_or()
            self.expect(")", "')'")
            return inner
        return self.parse_field()

    def parse_field(self) -> Node:
        token = self.next()
        if token.kind != "ident":
            self.fail(token, "a field name, 'not(' or '('")
        field = token.text
        nxt = self.peek()
        if nxt.kind == "(":
            self.next()
            inner = self.parse_or()
            self.expect(")", "')'")
            return ("nested", field, inner)
        if nxt.kind == "op":
            self.next()
            value = self.parse_value(field)
            return ("cmp", field, nxt.value, value)
        if self.keyword("in"):
            self.next()
            return ("in", field, self.parse_list(field), False)
        if self.keyword("not") and self.keyword("in", 1):
            self.next()
            self.next()
            return ("in", field, self.parse_list(field), True)
        if self.keyword("is"):
            self.next()
            negated = False
            if self.keyword("not"):
                self.next()
                negated = True
            if self.keyword("defined"):
                self.next()
                return ("defined", field, negated)
            if self.keyword("empty"):
                self.next()
                return ("empty", field, negated)
            self.fail(self.peek(), "'defined' or 'empty'")
        if self.keyword("contains"):
            self.next()
            mode = "any"
            if self.keyword("any") or self.keyword("all"):
                mode = self.next().text.lower()
                return ("contains", field, mode, self.parse_list(field))
            return ("contains", field, "any", [self.parse_value(field)])
        self.fail(nxt, "an operator (=, !=, <, <=, >, >=, in, not in, is defined, contains) or '('")
        raise AssertionError("unreachable")

    def parse_list(self, field: str) -> list[Any]:
        if self.peek().kind == "var":
            return list(self.bind(self.next(), field, many=True))
        self.expect("(", "'(' or a :placeholder")
        values = [self.parse_value(field)]
        while self.peek().kind == ",":
            self.next()
            values.append(self.parse_value(field))
        self.expect(")", "',' or ')'")
        return values

    def parse_value(self, field: str) -> Any:
        token = self.next()
        if token.kind == "string":
            return self.check(field, token.value)
        if token.kind == "number":
            return token.value
        if token.kind == "var":
            return self.bind(token, field, many=False)[0]
        if token.kind == "ident" and token.text.lower() in ("true", "false"):
            return token.text.lower() == "true"
        self.fail(token, "a string, number, boolean or :placeholder")
        raise AssertionError("unreachable")

    def bind(self, token: _Token, field: str, *, many: bool) -> list[Any]:
        values = self.variables.get(token.value)
        if not values:
            raise PredicateError(
                f"Variable '{token.value}' is used but no parameter 'var.{token.value}' was given."
            )
        if len(values) > 1 and not many:
            raise PredicateError(
                f"Variable '{token.value}' has several values but is used as a single value."
            )
        return [self.check(field, v) for v in values]

    def check(self, field: str, value: str) -> str:
        if field in _DATETIME_FIELDS and ct_timestamp(value) is None:
            raise PredicateError(f"'{value}' is not a valid date-time value for '{field}'.")
        return value


def parse_predicate(text: str, variables: dict[str, list[str]] | None = None) -> Node:
    """Parse one Query Predicate, binding ``:name`` placeholders from ``variables`` (``var.name``)."""
    return _Parser(text, variables or {}).parse()


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _comparable(left: Any, right: Any) -> tuple[Any, Any] | None:
    """Coerce a record value and a literal for comparison; None when they cannot be compared."""
    if left is None or right is None or isinstance(left, dict | list):
        return None
    if isinstance(left, bool):
        if isinstance(right, bool):
            return left, right
        if isinstance(right, str) and right.lower() in ("true", "false"):
            return left, right.lower() == "true"
        return None
    if isinstance(left, int | float | Decimal):
        number = _number(right)
        return (_number(left), number) if number is not None else None
    if isinstance(left, str):
        left_ts = ct_timestamp(left)
        right_ts = ct_timestamp(right) if isinstance(right, str) else None
        if left_ts is not None and right_ts is not None:
            return left_ts, right_ts
        return left, str(right) if not isinstance(right, bool) else str(right).lower()
    return None


def _compare(left: Any, op: str, right: Any) -> bool:
    pair = _comparable(left, right)
    if pair is None:
        return False
    a, b = pair
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    except TypeError:
        return False
    raise AssertionError(op)


def _scalars(value: Any) -> list[Any]:
    """A field value as the list of values a comparison is tried against (arrays: any element)."""
    return value if isinstance(value, list) else [value]


def evaluate(node: Node, record: Any) -> bool:
    """Evaluate a parsed predicate against one record (or nested object)."""
    kind = node[0]
    if kind == "and":
        return all(evaluate(n, record) for n in node[1])
    if kind == "or":
        return any(evaluate(n, record) for n in node[1])
    if kind == "not":
        return not evaluate(node[1], record)
    if not isinstance(record, dict):
        return False
    field = node[1]
    value = record.get(field)
    if kind == "nested":
        return any(isinstance(v, dict) and evaluate(node[2], v) for v in _scalars(value))
    if kind == "cmp":
        _, _, op, literal = node
        if value is None:
            return False
        if op == "!=":
            return all(_compare(v, "!=", literal) for v in _scalars(value))
        return any(_compare(v, op, literal) for v in _scalars(value))
    if kind == "in":
        _, _, literals, negated = node
        if value is None:
            return False
        hit = any(_compare(v, "=", lit) for v in _scalars(value) for lit in literals)
        return hit != negated
    if kind == "defined":
        return (value is not None) != node[2]
    if kind == "empty":
        empty = value is None or value == [] or value == {}
        return empty != node[2]
    if kind == "contains":
        _, _, mode, literals = node
        items = _scalars(value) if value is not None else []
        found = [any(_compare(v, "=", lit) for v in items) for lit in literals]
        return all(found) if mode == "all" else any(found)
    raise AssertionError(kind)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_predicate(node: Node) -> Callable[[Any], bool]:
    """A parsed predicate as a closure (same semantics as :func:`evaluate`), with timestamp
    literals parsed once: queries run it over every record of a project on every page."""
    kind = node[0]
    if kind in ("and", "or"):
        parts = [compile_predicate(n) for n in node[1]]
        combine = all if kind == "and" else any
        return lambda record: combine(p(record) for p in parts)
    if kind == "not":
        inner = compile_predicate(node[1])
        return lambda record: not inner(record)
    if kind == "nested":
        field, sub = node[1], compile_predicate(node[2])
        return lambda record: (
            isinstance(record, dict)
            and any(isinstance(v, dict) and sub(v) for v in _scalars(record.get(field)))
        )
    if kind != "cmp":
        return lambda record: evaluate(node, record)
    _, field, op, literal = node
    literal_ts = ct_timestamp(literal)
    compare = _OPERATORS[op]

    def test(value: Any) -> bool:
        if literal_ts is not None and isinstance(value, str):
            value_ts = ct_timestamp(value)
            if value_ts is not None:
                return compare(value_ts, literal_ts)
        return _compare(value, op, literal)

    def check(record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        value = record.get(field)
        if value is None:
            return False
        if isinstance(value, list):
            return all(test(v) for v in value) if op == "!=" else any(test(v) for v in value)
        return test(value)

    return check


def upper_bound(node: Node, field: str = "lastModifiedAt") -> tuple[datetime, bool] | None:
    """The upper bound a predicate puts on ``field`` for every matching record: (instant, strict).

    ``<`` gives a strict bound, ``<=`` and ``=`` an inclusive one; an ``and`` takes its tightest
    member, an ``or`` its loosest (only when every branch is bounded); ``not`` and nesting give none.
    """
    kind = node[0]
    if kind == "cmp" and node[1] == field and node[2] in ("<", "<=", "="):
        instant = ct_timestamp(node[3])
        return (instant, node[2] == "<") if instant is not None else None
    if kind in ("and", "or"):
        bounds = [upper_bound(n, field) for n in node[1]]
        known = [b for b in bounds if b is not None]
        if not known or (kind == "or" and len(known) < len(bounds)):
            return None
        # (instant, not strict) orders bounds from tightest to loosest.
        pick = min if kind == "and" else max
        return pick(known, key=lambda b: (b[0], not b[1]))
    return None


# --------------------------------------------------------------------------------------------------
# Sorting


def _sort_key(value: Any) -> tuple[int, Any]:
    """A total order over JSON values; missing values first in ascending order."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    ts = ct_timestamp(value)
    if ts is not None:
        return (2, ts)
    number = _number(value) if not isinstance(value, str) else None
    if number is not None:
        return (3, number)
    if isinstance(value, str):
        return (4, value)
    return (5, dumps(value))


_SORT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s+(asc|desc)\s*$", re.I)


def parse_sort(expression: str) -> tuple[list[str], bool]:
    """``"lastModifiedAt asc"`` / ``"totalPrice.centAmount desc"`` to (path, descending)."""
    match = _SORT_RE.match(expression)
    if match is None:
        raise _invalid_input(
            f"Malformed parameter: sort: Invalid sort expression '{expression}' "
            "(expected '<field> asc' or '<field> desc')."
        )
    return match.group(1).split("."), match.group(2).lower() == "desc"


def _path_value(record: dict[str, Any], path: list[str]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# --------------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _Version:
    modified: datetime
    version: int
    seq: int
    record: dict[str, Any]


@dataclass
class _IssuedToken:
    issued: datetime
    scope: str
    scopes: frozenset[str] | None  # None: no scope requested, every project of the client


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise _invalid_input(f"Malformed parameter: {name}: Invalid number '{raw}'.") from exc
    if not low <= value <= high:
        raise _invalid_input(f"Malformed parameter: {name}: The value must be between {low} and {high}.")
    return value


class CommercetoolsEmulator(Emulator):
    """commercetools auth + HTTP API (orders, payments, customers) over seeded native records of
    one or more projects. See the module docstring for what is emulated."""

    name = "commercetools"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        project_keys: Iterable[str] = (),
        token_ttl: timedelta = DEFAULT_TOKEN_TTL,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl = token_ttl
        self._data_lock = threading.RLock()
        # project -> entity -> id -> versions (sorted by lastModifiedAt, version, arrival)
        self._projects: dict[str, dict[str, dict[str, list[_Version]]]] = {}
        self._runtime: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._tokens: dict[str, _IssuedToken] = {}
        self._tokens_issued = 0
        self._seq = 0
        super().__init__(clock=clock, faults=faults, host=host, port=port)
        for key in project_keys:
            self.add_project(key)
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))
        if not self._projects:
            self.add_project(DEFAULT_PROJECT_KEY)

    # ----- data

    @property
    def project_keys(self) -> list[str]:
        """Known project keys, in the order they were first seen (seed directories sorted by name)."""
        with self._data_lock:
            return list(self._projects)

    def add_project(self, project_key: str) -> None:
        """Declare a (possibly empty) project."""
        if not re.fullmatch(_KEY, project_key or ""):
            raise ValueError(f"invalid commercetools project key {project_key!r}")
        with self._data_lock:
            self._projects.setdefault(project_key, {e: {} for e in ENTITIES})
            self._runtime.setdefault(project_key, {e: [] for e in ENTITIES})

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/<project_key>/{orders,payments,customers}/*.json``; a malformed file fails
        loudly."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"commercetools seed directory {seed_dir} does not exist")
        for project_dir in sorted(p for p in seed_dir.iterdir() if p.is_dir()):
            self.add_project(project_dir.name)
            for entity in ENTITIES:
                folder = project_dir / entity
                if not folder.is_dir():
                    continue
                for path in sorted(folder.glob("*.json")):
                    try:
                        data = loads(path.read_bytes())
                    except ValueError as exc:
                        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
                    if not isinstance(data, list):
                        raise ValueError(f"{path}: expected a JSON array of native commercetools {entity}")
                    self._add(project_dir.name, entity, data, runtime=False, source=str(path))

    def add_records(self, project_key: str, entity: str, records: Iterable[dict[str, Any]]) -> int:
        """Add records (new ids or new versions) at runtime, creating the project if needed. They are
        kept in the persisted runtime state. Returns how many were added."""
        normalized = loads(dumps(list(records)))  # floats become Decimal; caller mutation cannot leak
        return self._add(project_key, entity, normalized, runtime=True, source="add_records")

    def _add(self, project_key: str, entity: str, records: list[Any], *, runtime: bool, source: str) -> int:
        if entity not in ENTITIES:
            raise ValueError(f"unknown commercetools entity {entity!r} (known: {list(ENTITIES)})")
        if not isinstance(records, list):
            raise ValueError(f"{source}: records must be a list")
        for index, record in enumerate(records):
            if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
                raise ValueError(f"{source}: {entity}[{index}] is not a record with a string 'id'")
        self.add_project(project_key)
        with self._data_lock:
            by_id = self._projects[project_key][entity]
            for record in records:
                modified = ct_timestamp(record.get("lastModifiedAt")) or ct_timestamp(record.get("createdAt"))
                # A record without timestamps is always visible.
                modified = modified or datetime.min.replace(tzinfo=UTC)
                version = record.get("version")
                self._seq += 1
                versions = by_id.setdefault(record["id"], [])
                versions.append(
                    _Version(modified, version if isinstance(version, int) else 0, self._seq, record)
                )
                versions.sort(key=lambda v: (v.modified, v.version, v.seq))
                if runtime:
                    self._runtime[project_key][entity].append(record)
        return len(records)

    def records_as_of(
        self, project_key: str, entity: str, asof: datetime, *, strict: bool = False
    ) -> list[dict[str, Any]]:
        """Each id's latest version with ``lastModifiedAt <= asof`` (``<`` when strict), in id order."""
        out: list[dict[str, Any]] = []
        with self._data_lock:
            by_id = self._projects.get(project_key, {}).get(entity, {})
            for record_id in sorted(by_id):
                latest = None
                for version in by_id[record_id]:
                    if version.modified < asof or (not strict and version.modified == asof):
                        latest = version
                    else:
                        break
                if latest is not None:
                    out.append(latest.record)
        return out

    def query(
        self,
        project_key: str,
        entity: str,
        *,
        where: Iterable[str] = (),
        variables: dict[str, list[str]] | None = None,
        sort: Iterable[str] = (),
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
        with_total: bool = True,
        store_key: str | None = None,
    ) -> dict[str, Any]:
        """The PagedQueryResponse for a query, answered as of ``min(lastModifiedAt bound, clock)``.
        Raises :class:`PredicateError` for a bad predicate."""
        where = list(where)
        predicates = [parse_predicate(w, variables) for w in where]
        matchers = [compile_predicate(p) for p in predicates]
        sorts = [parse_sort(s) for s in sort]
        asof, strict = self.clock.now(), False
        if predicates:
            bound = upper_bound(("and", predicates))
            if bound is not None and (bound[0] < asof or (bound[0] == asof and bound[1])):
                asof, strict = bound
        rows = [
            r
            for r in self.records_as_of(project_key, entity, asof, strict=strict)
            if all(m(r) for m in matchers) and _in_store(entity, r, store_key)
        ]
        for path, descending in reversed(sorts):  # stable sort: last key first
            rows.sort(key=lambda r, p=path: _sort_key(_path_value(r, p)), reverse=descending)
        page = rows[offset : offset + limit]
        body: dict[str, Any] = {"limit": limit, "offset": offset, "count": len(page)}
        if with_total:
            body["total"] = min(len(rows), MAX_TOTAL) if where else len(rows)
        body["results"] = page
        return body

    # ----- auth

    def issue_token(self, scope: str | None = None) -> dict[str, Any]:
        """A new client-credentials token (the body ``POST /oauth/token`` returns)."""
        scopes: frozenset[str] | None = None
        if scope:
            scopes = frozenset(scope.split())
            granted = " ".join(sorted(scopes))
        else:
            granted = " ".join(f"manage_project:{k}" for k in self.project_keys)
        token = secrets.token_urlsafe(24)
        with self._data_lock:
            self._tokens[token] = _IssuedToken(self.clock.now(), granted, scopes)
            self._tokens_issued += 1
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.token_ttl.total_seconds()),
            "scope": granted,
        }

    def revoke_tokens(self) -> int:
        """Invalidate every issued token (clients must fetch a new one); returns how many."""
        with self._data_lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count

    def _token(self, token: str) -> _IssuedToken | None:
        with self._data_lock:
            issued = self._tokens.get(token)
        if issued is None or self.clock.now() - issued.issued >= self.token_ttl:
            return None
        return issued

    def _require_auth(self, request: Request, project_key: str, entity: str) -> None:
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        issued = self._token(token.strip()) if scheme.lower() == "bearer" else None
        if issued is None:
            raise Abort(
                ct_error(
                    401,
                    INVALID_TOKEN,
                    "invalid_token",
                    error="invalid_token",
                    error_description=INVALID_TOKEN,
                )
            )
        if issued.scopes is None:
            return
        allowed = {
            f"manage_project:{project_key}",
            f"view_{entity}:{project_key}",
            f"manage_{entity}:{project_key}",
        }
        if not issued.scopes & allowed:
            message = f"Insufficient scope. One of the following scopes is missing: view_{entity}"
            raise Abort(
                ct_error(
                    403, message, "insufficient_scope", error="insufficient_scope", error_description=message
                )
            )

    def _token_endpoint(self, request: Request) -> Response:
        params = parse_qs(request.query_string, keep_blank_values=True)
        if request.body:
            try:
                form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                form = {}
            for key, values in form.items():
                params.setdefault(key, []).extend(values)
        if not self._basic_ok(request.header("authorization") or ""):
            return ct_error(
                401,
                INVALID_CLIENT,
                "invalid_client",
                error="invalid_client",
                error_description=INVALID_CLIENT,
            )
        grant = (params.get("grant_type") or [""])[0]
        if grant != "client_credentials":
            message = (
                f"Grant type '{grant}' not supported." if grant else "Missing required parameter: grant_type."
            )
            code = "unsupported_grant_type" if grant else "invalid_request"
            return ct_error(400, message, code, error=code, error_description=message)
        scope = (params.get("scope") or [""])[0].strip()
        if scope:
            for item in scope.split():
                permission, _, key = item.partition(":")
                if not re.fullmatch(r"[a-z_]+", permission) or key not in self.project_keys:
                    message = f"Invalid scope: {item}"
                    return ct_error(
                        400, message, "invalid_scope", error="invalid_scope", error_description=message
                    )
        return json_response(self.issue_token(scope or None))

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return False
        client_id, secret = unquote(client_id), unquote(secret)  # RFC 6749 §2.3.1 form-encoding
        ok_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        ok_secret = hmac.compare_digest(secret.encode(), self.client_secret.encode())
        return ok_id and ok_secret

    # ----- routes

    def register_routes(self, router: Router) -> None:
        router.add("POST", r"/oauth/token", self._token_endpoint, "oauth token")
        entities = "|".join(ENTITIES)
        in_store = "|".join(IN_STORE_ENTITIES)
        router.add(
            "GET",
            rf"/(?P<project>{_KEY})/in-store/key=(?P<store>{_KEY})/(?P<entity>{in_store})",
            self._query_handler,
            "in-store query",
        )
        router.add("GET", rf"/(?P<project>{_KEY})/(?P<entity>{entities})", self._query_handler, "query")
        router.add(
            "GET",
            rf"/(?P<project>{_KEY})/(?P<entity>{entities})/(?P<id>[^/]+)",
            self._get_handler,
            "get by id",
        )

    def register_control_routes(self, router: Router) -> None:
        router.add(
            "POST", r"/_sandbox/commercetools/records", self._control_add_records, "sandbox add records"
        )
        router.add(
            "POST", r"/_sandbox/commercetools/revoke-tokens", self._control_revoke, "sandbox revoke tokens"
        )

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        response = ct_error(status, message)
        response.headers.update(headers or {})
        return response

    def not_found(self, request: Request) -> Response:
        return ct_error(
            404, f"The endpoint {request.method} {request.path} was not found.", "ResourceNotFound"
        )

    def _project(self, request: Request, entity: str) -> str:
        project_key = request.path_params["project"]
        self._require_auth(request, project_key, entity)
        if project_key not in self.project_keys:
            raise Abort(
                ct_error(404, f"The Project with key '{project_key}' was not found.", "ResourceNotFound")
            )
        return project_key

    def _query_handler(self, request: Request) -> Response:
        entity = request.path_params["entity"]
        project_key = self._project(request, entity)
        query = request.query
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 0, MAX_OFFSET)
        with_total_raw = (request.arg("withTotal") or "true").strip().lower()
        if with_total_raw not in ("true", "false"):
            raise _invalid_input(f"Malformed parameter: withTotal: Invalid boolean '{with_total_raw}'.")
        variables = {k[4:]: v for k, v in query.items() if k.startswith("var.")}
        try:
            body = self.query(
                project_key,
                entity,
                where=query.get("where", []),
                variables=variables,
                sort=query.get("sort", []),
                limit=limit,
                offset=offset,
                with_total=with_total_raw == "true",
                store_key=request.path_params.get("store"),
            )
        except PredicateError as exc:
            raise _invalid_input(
                f"Malformed parameter: where: Syntax error while parsing 'where'. {exc}"
            ) from exc
        return json_response(body)

    def _get_handler(self, request: Request) -> Response:
        entity = request.path_params["entity"]
        project_key = self._project(request, entity)
        wanted = request.path_params["id"]
        now = self.clock.now()
        with self._data_lock:
            versions = self._projects[project_key][entity].get(wanted, [])
            visible = [v for v in versions if v.modified <= now]
        if not visible:
            return ct_error(404, f"The Resource with ID '{wanted}' was not found.", "ResourceNotFound")
        return json_response(visible[-1].record)

    def _control_add_records(self, request: Request) -> Response:
        """``{"project_key": "p", "entity": "orders", "records": [...]}`` -> adds them (the project key
        defaults to the first project)."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return json_response(
                {"message": 'body must be {"project_key": ..., "entity": ..., "records": [...]}'}, 400
            )
        project_key = body.get("project_key") or body.get("projectKey") or self.project_keys[0]
        try:
            added = self._add(
                str(project_key), str(body.get("entity")), body["records"], runtime=True, source="control"
            )
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"added": added, "project_key": project_key})

    def _control_revoke(self, request: Request) -> Response:
        return json_response({"revoked": self.revoke_tokens()})

    # ----- configuration and state

    def env(self) -> dict[str, str]:
        """The CONTRACT.md §4 variables pointing a client at this (running) emulator."""
        return {
            "COMMERCETOOLS_API_URL": self.base_url,
            "COMMERCETOOLS_AUTH_URL": self.base_url,
            "COMMERCETOOLS_PROJECT_KEY": self.project_keys[0],
            "COMMERCETOOLS_CLIENT_ID": self.client_id,
            "COMMERCETOOLS_CLIENT_SECRET": self.client_secret,
        }

    def sandbox_state(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._data_lock:
            projects = {
                key: {
                    entity: {
                        "ids": len(by_id),
                        "versions": sum(len(v) for v in by_id.values()),
                        "visible_now": sum(1 for v in by_id.values() if v[0].modified <= now),
                        "added_at_runtime": len(self._runtime[key][entity]),
                    }
                    for entity, by_id in entities.items()
                }
                for key, entities in self._projects.items()
            }
            active = sum(1 for t in self._tokens.values() if now - t.issued < self.token_ttl)
            return {
                "projects": projects,
                "tokens_issued": self._tokens_issued,
                "tokens_active": active,
                "token_ttl_seconds": self.token_ttl.total_seconds(),
            }

    def export_state(self) -> dict[str, Any]:
        """Issued tokens and the records added at runtime (seeded records come from the seed)."""
        with self._data_lock:
            return {
                "tokens": {
                    token: {"issued": t.issued.isoformat(), "scope": t.scope, "scoped": t.scopes is not None}
                    for token, t in self._tokens.items()
                },
                "tokens_issued": self._tokens_issued,
                "records": {
                    key: {e: list(r) for e, r in entities.items() if r}
                    for key, entities in self._runtime.items()
                    if any(entities.values())
                },
            }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` produced."""
        with self._data_lock:
            for token, info in (state.get("tokens") or {}).items():
                scope = str(info.get("scope") or "")
                scopes = frozenset(scope.split()) if info.get("scoped") else None
                self._tokens[token] = _IssuedToken(parse_instant(info["issued"]), scope, scopes)
            self._tokens_issued = max(
                self._tokens_issued, int(state.get("tokens_issued") or 0), len(self._tokens)
            )
        for project_key, entities in (state.get("records") or {}).items():
            for entity, records in entities.items():
                self._add(project_key, entity, records, runtime=True, source="state")


def _in_store(entity: str, record: dict[str, Any], store_key: str | None) -> bool:
    """Store scoping of the in-store endpoints: orders by ``store.key``; customers by ``stores[].key``
    (customers without stores are global and visible in every store)."""
    if store_key is None:
        return True
    if entity == "orders":
        store = record.get("store")
        return isinstance(store, dict) and store.get("key") == store_key
    stores = record.get("stores") or []
    return not stores or any(isinstance(s, dict) and s.get("key") == store_key for s in stores)


__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PROJECT_KEY",
    "DEFAULT_TOKEN_TTL",
    "ENTITIES",
    "INVALID_CLIENT",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "CommercetoolsEmulator",
    "PredicateError",
    "ct_error",
    "compile_predicate",
    "ct_timestamp",
    "evaluate",
    "format_ct_timestamp",
    "parse_predicate",
    "parse_sort",
    "upper_bound",
]
