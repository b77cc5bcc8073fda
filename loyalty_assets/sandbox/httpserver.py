"""Shared infrastructure of the local API emulators (DESIGN.md §5).

Every emulator (Magento today; BigCommerce, Smile.io, Salesforce later) is a stdlib
``ThreadingHTTPServer`` on 127.0.0.1 with a free port, run in a daemon thread, so tests and the
``loyalty sandbox`` command need no extra dependency and never collide on ports. This module gives
them what they all need and must behave identically:

* a tiny router (method + regex path -> handler) with JSON responses that keep ``Decimal`` money
  exact (``simplejson``, ``use_decimal``);
* :class:`EmulatorClock`, the replay clock: real UTC time by default, or a fixed/offset instant that
  tests advance so records "become visible" as time passes; every response carries it in ``Date``;
* :class:`FaultInjector`: faults at a seeded rate or from a FIFO script (429 + ``Retry-After``,
  500/503, slow responses, connections dropped after the handler ran) so client retry code is tested
  against real sockets;
* the ``/_sandbox/`` control surface (state, faults, clock), which is never subject to faults.
* optional HTTPS (``ssl_context``, e.g. from a ``trustme`` CA) for clients that only speak https.
"""

from __future__ import annotations

import logging
import random
import re
import socket
import ssl
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import simplejson

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


# --------------------------------------------------------------------------------------------------
# JSON, requests and responses


def dumps(obj: Any) -> str:
    """Serialize with Decimal kept as JSON numbers, so seeded money goes out exactly as it came in."""
    return simplejson.dumps(obj, use_decimal=True, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Parse JSON with every non-integer number as ``Decimal`` (money is never a float)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return simplejson.loads(text, use_decimal=True)


@dataclass
class Response:
    """What a handler returns; the server adds ``Date``, ``Content-Length`` and ``Connection``."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (Decimal-exact)."""
    hdrs = {"Content-Type": JSON_CONTENT_TYPE}
    hdrs.update(headers or {})
    return Response(status=status, body=dumps(obj).encode("utf-8"), headers=hdrs)


def is_control_path(path: str) -> bool:
    """``/_sandbox/...``: the control surface, never faulted and not in the request log."""
    return path == CONTROL_PREFIX.rstrip("/") or path.startswith(CONTROL_PREFIX)


class Abort(Exception):
    """Raised inside a handler to answer immediately with ``response`` (e.g. 400 or 401)."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


@dataclass
class Request:
    """One parsed HTTP request as handlers see it."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    route_name: str | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup (HTTP header names are case-insensitive)."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON (Decimal numbers); a malformed body aborts with 400."""
        if not self.body:
            raise Abort(json_response({"message": "Request body is empty."}, 400))
        try:
            return loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Abort(json_response({"message": f"Malformed JSON body: {exc}"}, 400)) from exc


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class Router:
    """Method + full-match regex path routing; named groups become ``request.path_params``."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, name: str | None = None) -> None:
        self._routes.append(
            Route(method.upper(), re.compile(pattern), handler, name or f"{method} {pattern}")
        )

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None | bool:
        """The matching route and its path params; ``False`` when only the method differs; else None."""
        path_matched = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method.upper():
                return route, {k: v for k, v in match.groupdict().items() if v is not None}
            path_matched = True
        return False if path_matched else None


# --------------------------------------------------------------------------------------------------
# The replay clock


def _aware_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """ISO-8601 (``Z`` allowed) to an aware UTC datetime; a naive value is taken as UTC."""
    return _aware_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


class EmulatorClock:
    """The emulators' notion of "now" (thread-safe).

    Three modes: ``real`` (wall clock, the default), ``fixed`` (frozen at an instant until moved:
    deterministic tests) and ``offset`` (wall clock shifted, so it keeps ticking from a chosen
    instant: demos that replay history). ``advance`` moves the fixed instant or grows the offset.
    One clock is shared by all emulators of a sandbox, so every platform agrees on the time.
    """

    def __init__(self, now: datetime | None = None, *, frozen: bool = True):
        self._lock = threading.Lock()
        self._fixed: datetime | None = None
        self._offset = timedelta(0)
        if now is not None:
            self.set(now, frozen=frozen)

    @staticmethod
    def _wall() -> datetime:
        return datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            if self._fixed is not None:
                return self._fixed
            return self._wall() + self._offset

    def set(self, now: datetime, *, frozen: bool = True) -> None:
        """Move to ``now``: frozen there, or ticking from there (offset mode)."""
        now = _aware_utc(now)
        with self._lock:
            if frozen:
                self._fixed, self._offset = now, timedelta(0)
            else:
                self._fixed, self._offset = None, now - self._wall()

    def set_offset(self, seconds: float) -> None:
        """Tick with the wall clock, shifted by ``seconds``."""
        with self._lock:
            self._fixed, self._offset = None, timedelta(seconds=seconds)

    def advance(self, seconds: float) -> datetime:
        """Move forward (or back, when negative) by ``seconds``; returns the new now."""
        with self._lock:
            if self._fixed is not None:
                self._fixed += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)
        return self.now()

    def real(self) -> None:
        """Back to the wall clock."""
        with self._lock:
            self._fixed, self._offset = None, timedelta(0)

    @property
    def mode(self) -> str:
        with self._lock:
            if self._fixed is not None:
                return "fixed"
            return "offset" if self._offset else "real"

    def http_date(self) -> str:
        """``now`` in the RFC 7231 IMF-fixdate form used by the HTTP ``Date`` header."""
        return format_datetime(self.now().replace(microsecond=0), usegmt=True)

    def to_dict(self) -> dict[str, Any]:
        now = self.now()
        with self._lock:
            offset = self._offset.total_seconds()
        return {
            "now": now.isoformat(),
            "http_date": format_datetime(now.replace(microsecond=0), usegmt=True),
            "mode": self.mode,
            "offset_seconds": offset,
        }

    def apply(self, body: dict[str, Any]) -> None:
        """Apply a ``POST /_sandbox/clock`` body: ``{"now": ISO[, "frozen": bool]}``,
        ``{"advance_seconds": N}``, ``{"offset_seconds": N}`` or ``{"real": true}``."""
        if not isinstance(body, dict):
            raise ValueError("clock body must be a JSON object")
        known = {"now", "frozen", "advance_seconds", "offset_seconds", "real"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown clock keys: {sorted(unknown)}")
        if body.get("real"):
            self.real()
        if "now" in body:
            self.set(parse_instant(str(body["now"])), frozen=bool(body.get("frozen", True)))
        if "offset_seconds" in body:
            self.set_offset(float(body["offset_seconds"]))
        if "advance_seconds" in body:
            self.advance(float(body["advance_seconds"]))


# --------------------------------------------------------------------------------------------------
# Fault injection


_FAULT_KEYS = {"status", "retry_after", "delay", "drop", "path", "method", "body"}


@dataclass
class Fault:
    """One injected misbehaviour. ``status`` answers instead of the handler; ``delay`` sleeps first
    (a slow response); ``drop`` runs the handler, then closes the connection without answering
    (the "write applied but the client never heard" case). ``path``/``method`` restrict which
    requests a scripted fault may be consumed by."""

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    path: re.Pattern[str] | None = None
    method: str | None = None
    body: Any = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Fault:
        if not isinstance(spec, dict):
            raise ValueError(f"a fault must be a JSON object, got {spec!r}")
        unknown = set(spec) - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)} (known: {sorted(_FAULT_KEYS)})")
        status = spec.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError(f"fault status must be an HTTP error code 400-599, got {status!r}")
        delay = float(spec.get("delay") or 0)
        retry_after = spec.get("retry_after")
        if delay < 0 or (retry_after is not None and float(retry_after) < 0):
            raise ValueError("fault delay and retry_after must be >= 0")
        if status is None and not delay and not spec.get("drop"):
            raise ValueError(f"fault {spec!r} does nothing: give status, delay or drop")
        return cls(
            status=status,
            retry_after=None if retry_after is None else float(retry_after),
            delay=delay,
            drop=bool(spec.get("drop", False)),
            path=re.compile(spec["path"]) if spec.get("path") else None,
            method=str(spec["method"]).upper() if spec.get("method") else None,
            body=spec.get("body"),
        )

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method.upper():
            return False
        return self.path is None or self.path.search(path) is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.status is not None:
            out["status"] = self.status
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.delay:
            out["delay"] = self.delay
        if self.drop:
            out["drop"] = True
        if self.path is not None:
            out["path"] = self.path.pattern
        if self.method:
            out["method"] = self.method
        return out


DEFAULT_FAULT_KINDS = {"429": 1.0, "500": 1.0, "503": 1.0, "slow": 1.0}


class FaultInjector:
    """Chooses the fault (if any) for each non-control request; thread-safe.

    The script wins over the rate: the first scripted fault whose ``path``/``method`` match the
    request is consumed (FIFO). Otherwise, with probability ``rate`` (seeded ``random.Random``, so a
    run is reproducible), one kind is drawn from ``kinds`` (weights over ``"429"``, ``"500"``,
    ``"503"``, ``"slow"``, ``"drop"``), limited to paths matching ``rate_path`` when set.
    """

    def __init__(
        self,
        rate: float = 0.0,
        seed: int | str = 0,
        *,
        kinds: dict[str, float] | None = None,
        rate_path: str | None = None,
        slow_seconds: float = 1.0,
        retry_after: float = 1.0,
    ):
        self._lock = threading.Lock()
        self._script: deque[Fault] = deque()
        self._rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.configure_rate(
            rate, kinds=kinds, rate_path=rate_path, slow_seconds=slow_seconds, retry_after=retry_after
        )

    def configure_rate(
        self,
        rate: float,
        *,
        kinds: dict[str, float] | None = None,
        rate_path: str | None = None,
        slow_seconds: float | None = None,
        retry_after: float | None = None,
        seed: int | str | None = None,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {rate}")
        kinds = dict(DEFAULT_FAULT_KINDS if kinds is None else kinds)
        bad = set(kinds) - {"429", "500", "502", "503", "504", "slow", "drop"}
        if bad or any(w < 0 for w in kinds.values()) or (rate and not any(kinds.values())):
            raise ValueError(f"bad fault kinds {kinds!r}")
        with self._lock:
            self.rate = rate
            self.kinds = kinds
            self.rate_path = re.compile(rate_path) if rate_path else None
            if slow_seconds is not None:
                self.slow_seconds = float(slow_seconds)
            if retry_after is not None:
                self.retry_after = float(retry_after)
            if seed is not None:
                self._rng = random.Random(seed)

    def set_script(self, faults: Iterable[dict[str, Any] | Fault], *, append: bool = False) -> None:
        parsed = [f if isinstance(f, Fault) else Fault.from_dict(f) for f in faults]
        with self._lock:
            if not append:
                self._script.clear()
            self._script.extend(parsed)

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.rate = 0.0

    @property
    def script(self) -> list[Fault]:
        with self._lock:
            return list(self._script)

    def pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._script:
                if fault.matches(method, path):
                    self._script.remove(fault)
                    self.injected["script"] += 1
                    return fault
            if not self.rate or (self.rate_path is not None and not self.rate_path.search(path)):
                return None
            if self._rng.random() >= self.rate:
                return None
            names = list(self.kinds)
            kind = self._rng.choices(names, weights=[self.kinds[n] for n in names])[0]
            self.injected[f"rate:{kind}"] += 1
        if kind == "slow":
            return Fault(delay=self.slow_seconds)
        if kind == "drop":
            return Fault(drop=True)
        status = int(kind)
        return Fault(status=status, retry_after=self.retry_after if status in (429, 503) else None)

    def apply(self, body: dict[str, Any]) -> None:
        """Apply a ``POST /_sandbox/faults`` body (see :meth:`Emulator._control_faults_post`)."""
        if not isinstance(body, dict):
            raise ValueError("faults body must be a JSON object")
        known = {"script", "append", "rate", "seed", "kinds", "path", "slow_seconds", "retry_after", "clear"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown faults keys: {sorted(unknown)}")
        if body.get("clear"):
            self.clear()
        if "script" in body:
            if not isinstance(body["script"], list):
                raise ValueError("script must be a list of faults")
            self.set_script(body["script"], append=bool(body.get("append", False)))
        if any(k in body for k in ("rate", "seed", "kinds", "path", "slow_seconds", "retry_after")):
            self.configure_rate(
                float(body.get("rate", self.rate)),
                kinds={k: float(v) for k, v in body["kinds"].items()} if "kinds" in body else self.kinds,
                rate_path=body.get("path", self.rate_path.pattern if self.rate_path else None),
                slow_seconds=body.get("slow_seconds"),
                retry_after=body.get("retry_after"),
                seed=body.get("seed"),
            )

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "script": [f.to_dict() for f in self._script],
                "rate": self.rate,
                "kinds": dict(self.kinds),
                "path": self.rate_path.pattern if self.rate_path else None,
                "slow_seconds": self.slow_seconds,
                "retry_after": self.retry_after,
                "injected": dict(self.injected),
            }


# --------------------------------------------------------------------------------------------------
# The emulator base class and its HTTP server


@dataclass(frozen=True)
class LoggedRequest:
    at: str
    method: str
    path: str
    route: str | None
    status: int | None
    fault: str | None
    ms: float


class Emulator:
    """Base class of every emulator: owns the router, clock, faults, request log and the server.

    Subclasses register their API in :meth:`register_routes` (and, optionally, extra control
    endpoints under ``/_sandbox/`` in :meth:`register_control_routes`), describe their state in
    :meth:`sandbox_state`, and shape error bodies like their real API in :meth:`error_response`.
    """

    name = "emulator"
    recent_log_size = 50

    def __init__(
        self,
        *,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.clock = clock or EmulatorClock()
        # HTTPS when given (Salesforce: simple-salesforce only speaks https); the TLS handshake runs
        # in the connection's own thread, so a client that stalls it cannot block the accept loop.
        self.ssl_context = ssl_context
        self.faults = faults or FaultInjector()
        self.host, self._requested_port = host, port
        self.router = Router()
        self.control = Router()
        self._log_lock = threading.Lock()
        self._recent: deque[LoggedRequest] = deque(maxlen=self.recent_log_size)
        self._by_status: Counter[int] = Counter()
        self._by_route: Counter[str] = Counter()
        self._total = 0
        self._server: _EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._register_builtin_control_routes()
        self.register_routes(self.router)
        self.register_control_routes(self.control)

    # ----- hooks for subclasses

    def register_routes(self, router: Router) -> None:
        """Register the emulated API."""

    def register_control_routes(self, router: Router) -> None:
        """Register emulator-specific ``/_sandbox/...`` endpoints (never faulted)."""

    def sandbox_state(self) -> dict[str, Any]:
        """Emulator-specific part of ``GET /_sandbox/state`` (counts, tokens issued, ...)."""
        return {}

    def export_state(self) -> dict[str, Any]:
        """Runtime state to persist across restarts (``Sandbox(state_dir=...)``); JSON-able."""
        return {}

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` produced."""

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        """An error body in the emulated API's own shape; default ``{"message": ...}``."""
        return json_response({"message": message}, status, headers)

    def fault_response(self, fault: Fault) -> Response:
        """The response of an injected status fault (``Retry-After`` in whole seconds, per RFC 7231,
        unless a fractional value was scripted for a fast test)."""
        assert fault.status is not None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
        if fault.body is not None:
            return json_response(fault.body, fault.status, headers)
        reason = {
            429: "Too Many Requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(fault.status, "Error")
        return self.error_response(fault.status, f"{reason} (injected by the sandbox)", headers)

    # ----- lifecycle

    def start(self) -> Self:
        """Bind 127.0.0.1 (port 0 = a free port) and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _EmulatorHTTPServer((self.host, self._requested_port), _EmulatorRequestHandler)
        server.emulator = self
        server.ssl_context = self.ssl_context
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"{self.name}-emulator",
            daemon=True,
        )
        self._thread.start()
        log.info("%s emulator listening on %s", self.name, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections, so clients see a dead server."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} emulator is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- request handling

    def handle(self, request: Request) -> tuple[Response | None, str | None]:
        """Answer one request; returns (response, fault label). A ``None`` response means: drop the
        connection without answering."""
        if is_control_path(request.path):
            return self._dispatch(self.control, request), None
        fault = self.faults.pick(request.method, request.path)
        if fault is None:
            return self._dispatch(self.router, request), None
        label = fault.to_dict()
        label.pop("path", None)
        label_text = dumps(label)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status is not None:
            return self.fault_response(fault), label_text
        response = self._dispatch(self.router, request)
        return (None if fault.drop else response), label_text

    def _dispatch(self, router: Router, request: Request) -> Response:
        resolved = router.resolve(request.method, request.path)
        if not resolved:
            request.path_params = {}
            return self.not_found(request) if resolved is None else self.method_not_allowed(request)
        route, params = resolved
        request.path_params = params
        request.route_name = route.name
        try:
            return route.handler(request)
        except Abort as abort:
            return abort.response
        except Exception:  # an emulator bug must surface as a 500, never kill the server thread
            log.exception("%s emulator failed on %s %s", self.name, request.method, request.path)
            return self.error_response(500, "Internal error in the sandbox emulator (see its log).")

    def not_found(self, request: Request) -> Response:
        return self.error_response(404, f"No route for {request.method} {request.path}")

    def method_not_allowed(self, request: Request) -> Response:
        return self.error_response(405, f"Method {request.method} not allowed on {request.path}")

    def record(self, request: Request, status: int | None, fault: str | None, started: float) -> None:
        entry = LoggedRequest(
            at=self.clock.now().isoformat(),
            method=request.method,
            path=request.path,
            route=request.route_name,
            status=status,
            fault=fault,
            ms=round((time.monotonic() - started) * 1000, 2),
        )
        with self._log_lock:
            self._total += 1
            self._by_status[status if status is not None else 0] += 1
            if entry.route:
                self._by_route[entry.route] += 1
            self._recent.append(entry)

    def request_summary(self) -> dict[str, Any]:
        with self._log_lock:
            return {
                "total": self._total,
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "by_route": dict(sorted(self._by_route.items())),
                "recent": [e.__dict__ for e in self._recent],
            }

    # ----- the generic control surface

    def _register_builtin_control_routes(self) -> None:
        self.control.add("GET", r"/_sandbox/state", self._control_state, "sandbox state")
        self.control.add("GET", r"/_sandbox/faults", self._control_faults_get, "sandbox faults")
        self.control.add("POST", r"/_sandbox/faults", self._control_faults_post, "sandbox faults")
        self.control.add("GET", r"/_sandbox/clock", self._control_clock_get, "sandbox clock")
        self.control.add("POST", r"/_sandbox/clock", self._control_clock_post, "sandbox clock")

    def _control_state(self, request: Request) -> Response:
        state = {
            "emulator": self.name,
            "clock": self.clock.to_dict(),
            "requests": self.request_summary(),
            "faults": self.faults.to_dict(),
        }
        state.update(self.sandbox_state())
        return json_response(state)

    def _control_faults_get(self, request: Request) -> Response:
        return json_response(self.faults.to_dict())

    def _control_faults_post(self, request: Request) -> Response:
        """Body keys: ``script`` (list of faults; replaces the queue unless ``append``), ``rate``,
        ``seed``, ``kinds``, ``path`` (regex limiting rate faults), ``slow_seconds``,
        ``retry_after``, ``clear``."""
        try:
            self.faults.apply(request.json())
        except (ValueError, TypeError, re.error) as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response(self.faults.to_dict())

    def _control_clock_get(self, request: Request) -> Response:
        return json_response(self.clock.to_dict())

    def _control_clock_post(self, request: Request) -> Response:
        try:
            self.clock.apply(request.json())
        except (ValueError, TypeError) as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response(self.clock.to_dict())


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: Emulator
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conn_lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def close_all_connections(self) -> None:
        with self._conn_lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that rejects our certificate or hangs up mid-handshake is not a server bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            log.debug("%s connection from %s failed: %s", self.emulator.name, client_address, exc)
            return
        super().handle_error(request, client_address)


class _EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs behind requests.Session
    server_version = "loyalty-sandbox"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection must not pin a thread forever
    # Headers and body go out in two writes; with Nagle + delayed ACK every keep-alive response
    # would stall ~40 ms.
    disable_nagle_algorithm = True
    server: _EmulatorHTTPServer

    def setup(self) -> None:
        if self.server.ssl_context is not None:
            self.request.settimeout(self.timeout)
            self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Every response, including stdlib error pages, carries the emulator clock, not wall time.
        return self.server.emulator.clock.http_date()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.emulator.name, format % args)

    def _handle(self) -> None:
        started = time.monotonic()
        emulator = self.server.emulator
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            path=split.path,
            query_string=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response, fault = emulator.handle(request)
        logged = not is_control_path(request.path)  # the log shows API traffic, not test plumbing
        if response is None:
            if logged:
                emulator.record(request, None, fault, started)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if logged:
            emulator.record(request, response.status, fault, started)
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


__all__ = [
    "Abort",
    "CONTROL_PREFIX",
    "Emulator",
    "EmulatorClock",
    "Fault",
    "FaultInjector",
    "Request",
    "Response",
    "Router",
    "dumps",
    "is_control_path",
    "json_response",
    "loads",
    "parse_instant",
]
