"""The one place HTTP is sent from: timeouts, retries and typed errors shared by every API client.

Commerce and loyalty APIs fail transiently (429 with ``Retry-After``, 5xx from a WAF or load
balancer, dropped connections; commerce_apis.md §1.4, §8.1.6), so every request goes through
:func:`send`: capped attempts, exponential backoff with full jitter, ``Retry-After`` honoured, and a
typed :class:`ApiError` when it gives up, so callers decide by type, not by parsing messages.
Credentials never reach the log: only method, URL path, status and attempt are logged.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """An API call that failed for good. ``status`` is None when no HTTP response arrived."""

    def __init__(self, status: int | None, message: str, url: str, *, body: str | None = None):
        super().__init__(f"HTTP {status if status is not None else '-'} from {_safe_url(url)}: {message}")
        self.status = status
        self.message = message
        self.url = _safe_url(url)
        self.body = body


class AuthError(ApiError):
    """401/403: credentials missing, wrong, expired or lacking permission."""


class RateLimitedError(ApiError):
    """429 after every retry; ``retry_after`` is the server's last hint in seconds."""

    def __init__(
        self,
        status: int | None,
        message: str,
        url: str,
        *,
        body: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(status, message, url, body=body)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx after every retry."""


class ApiConnectionError(ServerError):
    """No response at all (connection refused/reset, timeout) after every retry."""


class ClientError(ApiError):
    """A permanent 4xx (bad request, not found, ...): retrying cannot help."""


def _safe_url(url: str) -> str:
    """The URL without query string or userinfo, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first try. Sleeps are ``uniform(0, min(cap,
    base * 2**n))`` (full jitter, so many workers do not retry in lockstep), but never shorter than
    the server's ``Retry-After`` (itself capped at ``max_retry_after``)."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.backoff_max, self.backoff_base * (2 ** (retry_number - 1))))


def retry_after_seconds(response: requests.Response) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date (measured against the response's
    own ``Date``, since the server's clock, not ours, defines when it will accept again)."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    reference = response_date(response) or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def response_date(response: requests.Response) -> datetime | None:
    """The response's ``Date`` header as an aware UTC datetime (the server's clock)."""
    raw = response.headers.get("Date")
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def error_message(response: requests.Response) -> str:
    """A readable message from an error body: JSON ``message`` (with Magento-style ``%name``/``%1``
    placeholders filled from ``parameters``) or the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("title")
        if isinstance(message, str):
            params = body.get("parameters")
            if isinstance(params, dict):
                for key, value in params.items():
                    message = message.replace(f"%{key}", str(value))
            elif isinstance(params, list):
                for index, value in enumerate(params, start=1):
                    message = message.replace(f"%{index}", str(value))
            return message
    return str(body)[:300]


def raise_for_status(response: requests.Response) -> None:
    """Turn a non-2xx response into the matching :class:`ApiError` subclass."""
    status = response.status_code
    if status < 400:
        return
    message, body = error_message(response), response.text[:2000]
    if status in (401, 403):
        raise AuthError(status, message, response.url, body=body)
    if status == 429:
        raise RateLimitedError(
            status, message, response.url, body=body, retry_after=retry_after_seconds(response)
        )
    if status >= 500:
        raise ServerError(status, message, response.url, body=body)
    raise ClientError(status, message, response.url, body=body)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy = RetryPolicy(),
    timeout: float | tuple[float, float] = 30,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    retry: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """Send one request with retries; return the 2xx/3xx response or raise an :class:`ApiError`.

    Retries on ``policy.retry_statuses`` and on connection errors/timeouts, up to
    ``policy.max_attempts`` attempts in all. ``retry=False`` sends once (for writes that are not
    safe to repeat). ``kwargs`` go to ``session.request`` (params, json, headers, ...).
    """
    rng = rng or random.Random()
    attempts = policy.max_attempts if retry else 1
    safe = _safe_url(url)
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        try:
            response = session.request(method, url, timeout=timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if last:
                raise ApiConnectionError(
                    None, f"{type(exc).__name__} after {attempt} attempt(s)", url
                ) from exc
            delay = policy.backoff(attempt, rng)
            log.warning(
                "%s %s failed (%s); retry %d/%d in %.2fs",
                method,
                safe,
                type(exc).__name__,
                attempt,
                attempts - 1,
                delay,
            )
            sleep(delay)
            continue
        if response.status_code not in policy.retry_statuses or last:
            log.debug("%s %s -> %s (attempt %d)", method, safe, response.status_code, attempt)
            raise_for_status(response)
            return response
        delay = policy.backoff(attempt, rng)
        hint = retry_after_seconds(response)
        if hint is not None:
            delay = max(delay, min(hint, policy.max_retry_after))
        log.warning(
            "%s %s -> %s; retry %d/%d in %.2fs",
            method,
            safe,
            response.status_code,
            attempt,
            attempts - 1,
            delay,
        )
        response.close()
        sleep(delay)
    raise AssertionError("unreachable")  # the loop always returns or raises


class HttpClient:
    """Base of the API clients: a ``requests.Session`` bound to one base URL plus :func:`send`.

    Subclasses add authentication in :meth:`auth_headers` (kept out of the session's default
    headers so credentials cannot leak through a dump of the session). ``sleep``/``rng`` are
    injectable so tests run retries without waiting.
    """

    user_agent = "loyalty-assets/0.1"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.session = session or requests.Session()
        self.session.headers.setdefault("Accept", "application/json")
        self.session.headers["User-Agent"] = self.user_agent

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def auth_headers(self) -> Mapping[str, str]:
        return {}

    def request(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        merged = dict(self.auth_headers()) if authenticated else {}
        merged.update(headers or {})
        return send(
            self.session,
            method,
            self.url(path),
            policy=self.policy,
            timeout=self.timeout,
            sleep=self.sleep,
            rng=self.rng,
            retry=retry,
            headers=merged,
            **kwargs,
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show credentials held by subclasses
        return f"{type(self).__name__}(base_url={self.base_url!r})"


__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthError",
    "ClientError",
    "HttpClient",
    "RETRY_STATUSES",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "error_message",
    "raise_for_status",
    "response_date",
    "retry_after_seconds",
    "send",
]
