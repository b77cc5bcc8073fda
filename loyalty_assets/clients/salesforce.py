"""A thin wrapper over ``simple_salesforce.Salesforce`` for the loyalty push and pulls
(reference: salesforce.md §0, §1, §6; DESIGN.md §4; CONTRACT.md §4).

What it adds to simple-salesforce, and nothing more:

* connection settings from the CONTRACT.md §4 variables: a session id, or the OAuth password flow
  against ``{login_url}/services/oauth2/token`` (simple-salesforce only logs in to
  ``https://<domain>.salesforce.com``, so that one POST is ours); the CA bundle through a
  ``requests.Session`` with ``trust_env = False``, so ``REQUESTS_CA_BUNDLE``/proxy variables cannot
  override it (salesforce.md §0); a default timeout on every call (the library passes none);
* the upsert policy: sObject Collections in chunks of 200 up to ``bulk_threshold`` (2,000) rows,
  Bulk API 2.0 above, every record's ``success`` checked and returned as :class:`RecordResult`;
* retries: 5xx, dropped connections and ``UNABLE_TO_LOCK_ROW`` (whole call or just the locked
  records) with exponential backoff; ``403 REQUEST_LIMIT_EXCEEDED`` raises
  :class:`RequestLimitExceeded` at once and is never retried; an expired session is renewed once
  through the OAuth flow when credentials are configured;
* ``limits()``: the last ``Sforce-Limit-Info`` seen on any response (REST or Bulk).

Not thread-safe: one client per thread.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, format_external_id
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from loyalty_assets.clients.http import (
    ApiConnectionError,
    ApiError,
    AuthError,
    ClientError,
    RetryPolicy,
    retry_after_seconds,
    send,
)

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "62.0"
DEFAULT_LOGIN_URL = "https://login.salesforce.com"
COLLECTION_LIMIT = 200  # records per sObject Collections call
BULK_THRESHOLD = 2000  # Salesforce: "more than 2,000 records is a good candidate for Bulk API 2.0"
RETRYABLE_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW"})

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Errors and results


class SalesforceApiError(ApiError):
    """A Salesforce call that failed for good; ``error_code`` is the body's first ``errorCode``."""

    def __init__(
        self,
        status: int | None,
        message: str,
        url: str,
        *,
        error_code: str | None = None,
        body: str | None = None,
    ):
        super().__init__(status, f"{error_code}: {message}" if error_code else message, url, body=body)
        self.error_code = error_code


class SalesforceAuthError(SalesforceApiError):
    """401 INVALID_SESSION_ID that could not be renewed, a refused login, or another 403."""


class RequestLimitExceeded(SalesforceApiError):
    """403 REQUEST_LIMIT_EXCEEDED: the org's API allowance is spent. Never retried: wait for the
    rolling 24-hour window. ``usage`` is the last ``Sforce-Limit-Info`` seen."""

    def __init__(
        self, status: int | None, message: str, url: str, *, usage: ApiUsage | None = None, **kw: Any
    ):
        super().__init__(status, message, url, error_code="REQUEST_LIMIT_EXCEEDED", **kw)
        self.usage = usage


@dataclass(frozen=True)
class ApiUsage:
    """``Sforce-Limit-Info: api-usage=used/max``."""

    used: int
    max: int

    @property
    def remaining(self) -> int:
        return max(0, self.max - self.used)

    def allows(self, calls: int, *, max_fraction: float = 0.8) -> bool:
        """Whether ``calls`` more keep usage at or below ``max_fraction`` of the allowance."""
        return self.used + calls <= self.max * max_fraction


@dataclass(frozen=True)
class RecordError:
    status_code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome. ``key`` is the external-id value sent; ``created`` is None when unknown."""

    key: str
    success: bool
    id: str | None = None
    created: bool | None = None
    errors: tuple[RecordError, ...] = ()

    @property
    def error_codes(self) -> tuple[str, ...]:
        return tuple(e.status_code for e in self.errors)

    @property
    def retryable(self) -> bool:
        return not self.success and any(c in RETRYABLE_RECORD_ERRORS for c in self.error_codes)


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange, for ``sync_log``: no query string, no body, no credentials."""

    operation: str
    method: str
    path: str
    status: int | None
    attempt: int
    elapsed_ms: float
    # when the exchange ended (sync_log's finished_at; started_at is this less elapsed_ms)
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _errors(raw: Any) -> tuple[RecordError, ...]:
    out = []
    for e in raw or []:
        if isinstance(e, Mapping):
            out.append(
                RecordError(
                    str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
                    str(e.get("message") or ""),
                    tuple(e.get("fields") or ()),
                )
            )
    return tuple(out)


def _first_code(content: Any) -> tuple[str | None, str]:
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return content[0].get("errorCode"), str(content[0].get("message") or "")
    if isinstance(content, Mapping):
        return content.get("errorCode") or content.get("error"), str(
            content.get("message") or content.get("error_description") or ""
        )
    return None, str(content or "")[:300]


# --------------------------------------------------------------------------------------------------
# Values


def _jsonable(value: Any) -> Any:
    """Values simple-salesforce's ``json.dumps`` accepts: a whole Decimal as int, any other as its exact
    decimal text (Salesforce parses it; money never goes through float), datetimes as ISO-8601,
    nested dicts (relationship fields) recursively."""
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _csv_value(value: Any) -> str:
    """Bulk 2.0 CSV cell: ``#N/A`` sets null (an empty cell would leave the field unchanged)."""
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _flatten(record: Mapping[str, Any]) -> dict[str, str]:
    """``{"Contact__r": {"Loyalty_Member_Id__c": "M1"}}`` -> ``{"Contact__r.Loyalty_Member_Id__c": "M1"}``;
    a polymorphic lookup names its parent's type, ``{"Who": {"attributes": {"type": "Contact"}, ...}}``
    -> ``Contact:Who.Loyalty_Member_Id__c`` (Bulk API 2.0's ObjectType:RelationshipName.IndexedFieldName)."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, Mapping):
            parent_type = (value.get("attributes") or {}).get("type")
            prefix = f"{parent_type}:{key}" if parent_type else key
            for sub, subvalue in value.items():
                if sub != "attributes":
                    out[f"{prefix}.{sub}"] = _csv_value(subvalue)
        else:
            out[key] = _csv_value(value)
    return out


class _TimeoutAdapter(HTTPAdapter):
    """simple-salesforce passes no timeout on most calls; a hung socket must not hang a run."""

    def __init__(self, timeout: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


# --------------------------------------------------------------------------------------------------
# The client


class SalesforceClient:
    """Upserts, queries and events through ``simple_salesforce`` (see module docstring).

    Build it with :func:`connect_salesforce`. ``on_call`` receives a :class:`CallRecord` for every
    HTTP exchange (and for every attempt that got no response), ready for ``sync_log``.
    """

    def __init__(
        self,
        sf: Salesforce,
        *,
        session: requests.Session,
        relogin: Callable[[], Salesforce] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        bulk_threshold: int = BULK_THRESHOLD,
        bulk_poll_seconds: float = 2.0,
        on_call: Callable[[CallRecord], None] | None = None,
    ):
        self.sf = sf
        self.session = session
        self._relogin = relogin
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.bulk_threshold = bulk_threshold
        self.bulk_poll_seconds = bulk_poll_seconds
        self.on_call = on_call
        self._usage: ApiUsage | None = None
        self._operation = "connect"
        self._attempt = 1
        self._retry_after: float | None = None  # the last response's Retry-After, in seconds
        self.calls = 0  # HTTP exchanges answered, all operations
        if self._on_response not in session.hooks["response"]:
            session.hooks["response"].append(self._on_response)

    # ----- bookkeeping

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        self._retry_after = retry_after_seconds(response)
        info = response.headers.get("Sforce-Limit-Info")
        if info:
            usage = parse_limit_info(info)
            if usage is not None:
                self._usage = usage
        if self.on_call is not None:
            self.on_call(
                CallRecord(
                    self._operation,
                    response.request.method or "",
                    urlsplit(response.url).path,
                    response.status_code,
                    self._attempt,
                    round(response.elapsed.total_seconds() * 1000, 2),
                )
            )

    def limits(self) -> ApiUsage | None:
        """API usage from the last ``Sforce-Limit-Info`` header seen (None before any call)."""
        return self._usage

    @property
    def instance_url(self) -> str:
        return f"https://{self.sf.sf_instance}"

    # ----- retry core

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with the retry policy; translate simple-salesforce errors into typed ones."""
        self._operation = operation
        renewed = False
        attempts = self.policy.max_attempts
        attempt = 1
        while True:
            self._attempt = attempt
            last = attempt >= attempts
            hint = None  # the server's Retry-After, when it answered
            try:
                return fn()
            except SalesforceExpiredSession as exc:
                if self._relogin is None or renewed:
                    raise self._typed(exc) from exc
                log.info("Salesforce session expired; logging in again")
                self.sf = self._relogin()
                renewed = True
                continue  # a renewal is not a failed attempt
            except requests.exceptions.SSLError as exc:  # an untrusted certificate is not transient
                raise ApiConnectionError(None, f"TLS failure: {exc}", self.instance_url) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if self.on_call is not None:
                    self.on_call(CallRecord(operation, "", "", None, attempt, 0.0))
                if last:
                    raise ApiConnectionError(
                        None, f"{type(exc).__name__} after {attempt} attempt(s)", self.instance_url
                    ) from exc
                reason = type(exc).__name__
            except SalesforceOperationError as exc:  # a Bulk 2.0 job that Failed or timed out
                raise SalesforceApiError(None, str(exc), self.instance_url) from exc
            except SalesforceError as exc:
                code, _ = _first_code(exc.content)
                # 429 and 5xx are transient (a throttle, a gateway); simple-salesforce raises both as
                # SalesforceGeneralError, and a 429's Retry-After is waited out as clients/http.py does
                retryable = (isinstance(exc, SalesforceGeneralError) and exc.status in self.policy.retry_statuses) or (
                    isinstance(exc, SalesforceMalformedRequest) and code in RETRYABLE_RECORD_ERRORS
                )
                if not retryable or last:
                    raise self._typed(exc) from exc
                reason = f"HTTP {exc.status} {code or ''}".strip()
                hint = self._retry_after
            delay = self.policy.backoff(attempt, self.rng)
            if hint is not None:
                delay = max(delay, min(hint, self.policy.max_retry_after))
            log.warning(
                "Salesforce %s failed (%s); retry %d/%d in %.2fs",
                operation,
                reason,
                attempt,
                attempts - 1,
                delay,
            )
            self.sleep(delay)
            attempt += 1

    def _typed(self, exc: SalesforceError) -> SalesforceApiError:
        code, message = _first_code(exc.content)
        url = exc.url or self.instance_url
        body = str(exc.content)[:2000]
        if isinstance(exc, SalesforceRefusedRequest) and code == "REQUEST_LIMIT_EXCEEDED":
            return RequestLimitExceeded(exc.status, message, url, usage=self._usage, body=body)
        if isinstance(exc, SalesforceExpiredSession | SalesforceRefusedRequest):
            return SalesforceAuthError(exc.status, message, url, error_code=code, body=body)
        return SalesforceApiError(exc.status, message, url, error_code=code, body=body)

    # ----- writes

    def upsert_records(
        self,
        sobject: str,
        ext_id_field: str,
        records: Sequence[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
    ) -> list[RecordResult]:
        """Upsert by external id; one :class:`RecordResult` per input record, in input order.

        Up to ``bulk_threshold`` rows: sObject Collections, ⌈n/200⌉ calls; above: one Bulk API 2.0
        job. Records whose only problem was ``UNABLE_TO_LOCK_ROW`` are sent again (with backoff) up to
        the retry policy's attempts; other per-record failures come back with ``success=False``.
        Raises :class:`RequestLimitExceeded` / :class:`SalesforceApiError` when a whole call fails.
        """
        keyed = []
        for index, record in enumerate(records):
            key = record.get(ext_id_field)
            if key in (None, ""):
                raise ValueError(f"{sobject} record #{index} has no {ext_id_field}")
            keyed.append((str(key), dict(record)))
        results: list[RecordResult | None] = [None] * len(keyed)
        pending = list(range(len(keyed)))
        round_no = 1
        while pending:
            batch = [keyed[i] for i in pending]
            if len(batch) > self.bulk_threshold:
                outcome = self._bulk_upsert(sobject, ext_id_field, batch)
            else:
                outcome = self._collections_upsert(sobject, ext_id_field, batch, all_or_none)
            for i, result in zip(pending, outcome, strict=True):
                results[i] = result
            pending = [i for i in pending if results[i].retryable]  # type: ignore[union-attr]
            if not pending or round_no >= self.policy.max_attempts:
                break
            delay = self.policy.backoff(round_no, self.rng)
            log.warning("%d %s record(s) locked; retry in %.2fs", len(pending), sobject, delay)
            self.sleep(delay)
            round_no += 1
        return [r for r in results if r is not None]

    def _collections_upsert(
        self, sobject: str, ext_id_field: str, batch: list[tuple[str, dict[str, Any]]], all_or_none: bool
    ) -> list[RecordResult]:
        out: list[RecordResult] = []
        path = f"composite/sobjects/{sobject}/{ext_id_field}"
        for start in range(0, len(batch), COLLECTION_LIMIT):
            chunk = batch[start : start + COLLECTION_LIMIT]
            body = {
                "allOrNone": all_or_none,
                "records": [{"attributes": {"type": sobject}, **_jsonable(rec)} for _, rec in chunk],
            }
            raw = self._call(
                "collections_upsert", lambda b=body: self.sf.restful(path, method="PATCH", json=b)
            )
            if not isinstance(raw, list) or len(raw) != len(chunk):
                raise SalesforceApiError(200, f"unexpected Collections response: {str(raw)[:200]}", path)
            for (key, _), item in zip(chunk, raw, strict=True):
                out.append(
                    RecordResult(
                        key=key,
                        success=bool(item.get("success")),
                        id=item.get("id"),
                        created=item.get("created"),
                        errors=_errors(item.get("errors")),
                    )
                )
        return out

    def _bulk_upsert(
        self, sobject: str, ext_id_field: str, batch: list[tuple[str, dict[str, Any]]]
    ) -> list[RecordResult]:
        rows = [_flatten(rec) for _, rec in batch]

        def bulk() -> Any:  # looked up per call: the handler captures the session id (salesforce.md §1.3)
            return getattr(self.sf.bulk2, sobject)

        jobs = self._call(
            "bulk2_upsert",
            lambda: bulk().upsert(records=rows, external_id_field=ext_id_field, wait=self.bulk_poll_seconds),
        )
        by_key: dict[str, list[RecordResult]] = {}
        for job in jobs:
            job_id = job["job_id"]
            ok = self._call("bulk2_results", lambda j=job_id: bulk().get_successful_records(j))
            bad = self._call("bulk2_results", lambda j=job_id: bulk().get_failed_records(j))
            for row in csv.DictReader(io.StringIO(ok)):
                key = row.get(ext_id_field, "")
                created = (row.get("sf__Created") or "").lower() == "true"
                by_key.setdefault(key, []).append(RecordResult(key, True, row.get("sf__Id") or None, created))
            for row in csv.DictReader(io.StringIO(bad)):
                key = row.get(ext_id_field, "")
                code, _, rest = (row.get("sf__Error") or "UNKNOWN").partition(":")
                message, _, fields = rest.rpartition(":") if rest.count(":") else (rest, "", "")
                error = RecordError(code, message, tuple(f for f in fields.split(",") if f))
                by_key.setdefault(key, []).append(
                    RecordResult(key, False, row.get("sf__Id") or None, None, (error,))
                )
        out = []
        for key, _ in batch:
            found = by_key.get(key)
            if found:
                out.append(found.pop(0))
            else:
                out.append(
                    RecordResult(key, False, errors=(RecordError("UNPROCESSED", "not in the job results"),))
                )
        return out

    def upsert_record(
        self, sobject: str, ext_id_field: str, key: str, fields: Mapping[str, Any]
    ) -> RecordResult:
        """One record by external id (``PATCH /sobjects/{o}/{field}/{value}``); 201 created, 200/204 updated."""
        sftype = getattr(self.sf, sobject)
        response = self._call(
            "upsert",
            lambda: sftype.upsert(
                format_external_id(ext_id_field, key), _jsonable(dict(fields)), raw_response=True
            ),
        )
        body = response.json() if response.content else {}
        return RecordResult(key, True, body.get("id"), response.status_code == 201)

    def update_record(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """``PATCH /sobjects/{o}/{id}`` (e.g. marking an adjustment request Applied/Rejected)."""
        sftype = getattr(self.sf, sobject)
        self._call("update", lambda: sftype.update(record_id, _jsonable(dict(fields))))

    def publish_event(self, name: str, payload: Mapping[str, Any]) -> str:
        """Publish one platform event; returns its id. Delivery is at least once: put a dedupe id
        (``Event_Id__c``) in the payload. ``success`` is checked, not ``errors`` (which carries
        ``OPERATION_ENQUEUED`` on success)."""
        sftype = getattr(self.sf, name)
        result = self._call("publish_event", lambda: sftype.create(_jsonable(dict(payload))))
        if not result or not result.get("success"):
            raise SalesforceApiError(None, f"event {name} not published: {result}", self.instance_url)
        return str(result.get("id"))

    # ----- reads

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, following ``nextRecordsUrl`` (retried as a whole)."""
        result = self._call("query", lambda: self.sf.query_all(soql))
        return [dict(r) for r in result.get("records", [])]

    def describe(self, sobject: str) -> dict[str, Any]:
        sftype = getattr(self.sf, sobject)
        return dict(self._call("describe", sftype.describe))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show the session id
        return f"SalesforceClient(instance_url={self.instance_url!r})"


def parse_limit_info(header: str) -> ApiUsage | None:
    """``api-usage=25/15000[; per-app-api-usage=...]`` -> ApiUsage(25, 15000)."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "api-usage":
            used, _, total = value.partition("/")
            try:
                return ApiUsage(int(used), int(total))
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------------------------------
# Connecting


@dataclass(frozen=True)
class _OAuth:
    login_url: str
    client_id: str
    client_secret: str
    username: str
    password: str


@dataclass
class _Connector:
    session: requests.Session
    version: str
    oauth: _OAuth | None
    policy: RetryPolicy
    sleep: Callable[[float], None]
    rng: random.Random
    timeout: float
    _issued: list[str] = field(default_factory=list)

    def password_flow(self) -> Salesforce:
        """OAuth 2.0 username-password flow against ``{login_url}/services/oauth2/token``."""
        assert self.oauth is not None
        o = self.oauth
        url = f"{o.login_url.rstrip('/')}/services/oauth2/token"
        try:
            response = send(
                self.session,
                "POST",
                url,
                policy=self.policy,
                timeout=self.timeout,
                sleep=self.sleep,
                rng=self.rng,
                data={
                    "grant_type": "password",
                    "client_id": o.client_id,
                    "client_secret": o.client_secret,
                    "username": o.username,
                    "password": o.password,
                },
                headers={"Accept": "application/json"},
            )
        except (AuthError, ClientError) as exc:
            raise SalesforceAuthError(exc.status, f"login refused: {exc.message}", url) from exc
        token = response.json()
        return self.direct(token["instance_url"], token["access_token"])

    def direct(self, instance_url: str, session_id: str) -> Salesforce:
        return Salesforce(
            instance_url=instance_url, session_id=session_id, session=self.session, version=self.version
        )


def connect_salesforce(
    instance_url: str | None = None,
    session_id: str | None = None,
    login_url: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_bundle: str | None = None,
    version: str = DEFAULT_API_VERSION,
    *,
    timeout: float = 60.0,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    bulk_threshold: int = BULK_THRESHOLD,
    bulk_poll_seconds: float = 2.0,
    on_call: Callable[[CallRecord], None] | None = None,
) -> SalesforceClient:
    """A :class:`SalesforceClient` by session id (``instance_url`` + ``session_id``) or, without
    them, by the OAuth password flow (``client_id``, ``client_secret``, ``username``, ``password``
    against ``login_url``, default ``https://login.salesforce.com``). When both are given the session
    id is used first and the password flow renews it after a 401. ``ca_bundle``: PEM file trusted
    instead of the system CAs (the sandbox's trustme CA)."""
    oauth = None
    if client_id and client_secret and username and password:
        oauth = _OAuth(login_url or DEFAULT_LOGIN_URL, client_id, client_secret, username, password)
    if not (instance_url and session_id) and oauth is None:
        raise ValueError(
            "Salesforce is not configured: give instance_url + session_id, or client_id, client_secret, "
            "username and password for the OAuth password flow"
        )
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE / *_PROXY from the environment win (salesforce.md §0)
    if ca_bundle:
        session.verify = ca_bundle
    adapter = _TimeoutAdapter(timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    connector = _Connector(session, version, oauth, policy, sleep, rng, timeout)
    try:
        sf = (
            connector.direct(instance_url, session_id)
            if instance_url and session_id
            else connector.password_flow()
        )
    except BaseException:
        session.close()
        raise
    return SalesforceClient(
        sf,
        session=session,
        relogin=connector.password_flow if oauth is not None else None,
        policy=policy,
        sleep=sleep,
        rng=rng,
        bulk_threshold=bulk_threshold,
        bulk_poll_seconds=bulk_poll_seconds,
        on_call=on_call,
    )


#: CONTRACT.md §4 variable -> connect_salesforce argument.
ENV_VARS = {
    "SALESFORCE_INSTANCE_URL": "instance_url",
    "SALESFORCE_SESSION_ID": "session_id",
    "SALESFORCE_LOGIN_URL": "login_url",
    "SALESFORCE_CLIENT_ID": "client_id",
    "SALESFORCE_CLIENT_SECRET": "client_secret",
    "SALESFORCE_USERNAME": "username",
    "SALESFORCE_PASSWORD": "password",
    "SALESFORCE_CA_BUNDLE": "ca_bundle",
}


def salesforce_settings(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The ``connect_salesforce`` arguments from CONTRACT.md §4 variables, or None when neither auth
    mode is fully configured (Salesforce is then reported as not configured and skipped)."""
    env = os.environ if env is None else env
    settings = {arg: env[var] for var, arg in ENV_VARS.items() if env.get(var)}
    session_mode = "instance_url" in settings and "session_id" in settings
    oauth_mode = all(k in settings for k in ("client_id", "client_secret", "username", "password"))
    return settings if session_mode or oauth_mode else None


def connect_salesforce_from_env(
    env: Mapping[str, str] | None = None, **kwargs: Any
) -> SalesforceClient | None:
    """:func:`connect_salesforce` from the environment; None when Salesforce is not configured."""
    settings = salesforce_settings(env)
    return None if settings is None else connect_salesforce(**settings, **kwargs)


__all__ = [
    "ApiUsage",
    "BULK_THRESHOLD",
    "COLLECTION_LIMIT",
    "CallRecord",
    "DEFAULT_API_VERSION",
    "DEFAULT_LOGIN_URL",
    "ENV_VARS",
    "RecordError",
    "RecordResult",
    "RequestLimitExceeded",
    "SalesforceApiError",
    "SalesforceAuthError",
    "SalesforceClient",
    "connect_salesforce",
    "connect_salesforce_from_env",
    "parse_limit_info",
    "salesforce_settings",
]
