"""Contract: ``CommercetoolsClient`` extracts a ``[start, end)`` lastModifiedAt window completely and
exactly once, the way commerce_apis.md §3.1-3.2 and §8.1 require, against the commercetools emulator
over real HTTP on 127.0.0.1.

It authenticates with OAuth2 client credentials (HTTP Basic) and renews the token on expiry and on a
401; sorts ``lastModifiedAt asc, id asc``; pages by **keyset** (every request at ``offset=0``, so
windows larger than the 10 000 offset cap are read in full, and records sharing a timestamp across a
page boundary are neither lost nor repeated), asks ``withTotal=false`` after the first page, stops
on a short page, dedupes on ``(id, version)``, keeps money and every other number ``Decimal``,
retries 503 with backoff (fake sleep), raises typed errors for permanent failures, and never writes
credentials to the log. ``record_id``/``modified_at`` give the generic ingest its keys.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import simplejson

from loyalty_assets.clients import AuthError, ClientError, CommercetoolsClient, ServerError
from loyalty_assets.clients.commercetools import (
    KEYSET_PREDICATE,
    format_ct_time,
    modified_at,
    money,
    record_id,
)
from loyalty_assets.sandbox.commercetools import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    CommercetoolsEmulator,
)
from loyalty_assets.sandbox.httpserver import EmulatorClock

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "commercetools"
NOW = datetime(2024, 5, 2, 0, 0, 0, tzinfo=UTC)
DAY_START = datetime(2024, 5, 1, tzinfo=UTC)
DAY_END = datetime(2024, 5, 2, tzinfo=UTC)
PROJECT = "shop-eu"


def _uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _order(n: int, modified: datetime, version: int = 1, **extra: Any) -> dict[str, Any]:
    record = {
        "type": "Order",
        "id": _uuid(n),
        "version": version,
        "createdAt": _iso(DAY_START),
        "lastModifiedAt": _iso(modified),
        "orderNumber": f"ORD-{n}",
        "totalPrice": {
            "type": "centPrecision",
            "currencyCode": "JPY",
            "centAmount": 1500 + n,
            "fractionDigits": 0,
        },
        "taxedPrice": {"taxPortions": [{"rate": Decimal("0.1"), "name": "JP"}]},
    }
    record.update(extra)
    return record


class Sleeps(list):
    """Records requested sleeps instead of sleeping, so retry tests take milliseconds."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Recorder(requests.Session):
    """A session that remembers every request's method, path and query (for paging assertions)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, dict[str, list[str]]]] = []

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        parts = urlsplit(response.request.url)
        self.sent.append((method, parts.path, parse_qs(parts.query, keep_blank_values=True)))
        return response

    def queries(self) -> list[dict[str, list[str]]]:
        return [q for method, path, q in self.sent if method == "GET"]


def _client(
    emulator: CommercetoolsEmulator, sleeps: Sleeps | None = None, **kwargs: Any
) -> CommercetoolsClient:
    return CommercetoolsClient(
        emulator.base_url,
        emulator.base_url,
        kwargs.pop("project_key", PROJECT),
        kwargs.pop("client_id", DEFAULT_CLIENT_ID),
        kwargs.pop("client_secret", DEFAULT_CLIENT_SECRET),
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kwargs,
    )


def _faults(emulator: CommercetoolsEmulator, script: list[dict[str, Any]]) -> None:
    requests.post(
        emulator.base_url + "/_sandbox/faults", json={"script": script}, timeout=5
    ).raise_for_status()


def _no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(_no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_floats(v) for v in value)
    return True


@pytest.fixture
def ct():
    """1,200 orders inside 2024-05-01 in tie groups of 300 sharing one lastModifiedAt (so page
    boundaries at 500 and 1000 fall inside a group), plus orders just outside the window."""
    emulator = CommercetoolsEmulator(None, project_keys=[PROJECT], clock=EmulatorClock(NOW))
    stamps = [DAY_START + timedelta(hours=h, milliseconds=123) for h in (1, 5, 9, 13)]
    # Inserted in a shuffled id order, so only the sort (not insertion order) can make paging stable.
    inside = [_order(n, stamps[n % 4]) for n in sorted(range(1, 1201), key=lambda n: (n * 7919) % 1201)]
    outside = [
        _order(2001, DAY_START - timedelta(milliseconds=1)),
        _order(2002, DAY_END),
    ]
    emulator.add_records(PROJECT, "orders", inside + outside)
    with emulator:
        yield emulator


# --------------------------------------------------------------------------------------------------
# Windows and keyset paging


def test_window_is_keyset_paged_completely_in_order(ct: CommercetoolsEmulator) -> None:
    session = Recorder()
    client = _client(ct, session=session)
    result = client.fetch("orders", DAY_START, DAY_END)
    ids = [r["id"] for r in result.items]
    assert len(ids) == 1200 and len(set(ids)) == 1200
    assert {_uuid(2001), _uuid(2002)}.isdisjoint(ids)
    keys = [(modified_at("orders", r), r["id"]) for r in result.items]
    assert keys == sorted(keys)
    assert result.pages == 3 and result.total_count == 1200
    assert result.server_time == NOW

    queries = session.queries()
    assert len(queries) == 3
    for index, query in enumerate(queries):
        assert query["offset"] == ["0"] and query["limit"] == ["500"]  # never a deep offset
        assert query["sort"] == ["lastModifiedAt asc", "id asc"]
        assert query["withTotal"] == (["true"] if index == 0 else ["false"])
        assert query["var.start"] == ["2024-05-01T00:00:00.000Z"]
        assert query["var.end"] == ["2024-05-02T00:00:00.000Z"]
    assert KEYSET_PREDICATE not in queries[0]["where"]
    assert all(KEYSET_PREDICATE in q["where"] and len(q["where"]) == 2 for q in queries[1:])
    # The continuation resumes inside a tie group: same timestamp, greater id.
    second = queries[1]
    assert second["var.lastAt"] == [result.items[499]["lastModifiedAt"]]
    assert second["var.lastId"] == [result.items[499]["id"]]
    assert result.items[499]["lastModifiedAt"] == result.items[500]["lastModifiedAt"]


def test_page_size_dividing_the_window_exactly_ends_on_an_empty_page(ct: CommercetoolsEmulator) -> None:
    result = _client(ct, page_size=400).fetch("orders", DAY_START, DAY_END)
    assert len(result.items) == 1200 and result.pages == 4  # 400, 400, 400, then 0 < limit


def test_windows_larger_than_the_offset_cap_are_read_in_full() -> None:
    emulator = CommercetoolsEmulator(None, project_keys=[PROJECT], clock=EmulatorClock(NOW))
    # 10,600 records on 7 timestamps: beyond the 10,000 offset cap, every boundary inside a tie group.
    stamps = [DAY_START + timedelta(minutes=m, milliseconds=7) for m in range(0, 70, 10)]
    emulator.add_records(
        PROJECT,
        "customers",
        [
            {
                "id": _uuid(n),
                "version": 1,
                "email": f"c{n}@example.com",
                "lastModifiedAt": _iso(stamps[n % 7]),
            }
            for n in range(10_600)
        ],
    )
    with emulator:
        session = Recorder()
        result = _client(emulator, session=session).fetch("customers", DAY_START, DAY_END)
    assert len({r["id"] for r in result.items}) == len(result.items) == 10_600
    assert result.pages == 22
    assert result.total_count == 10_600  # the server's total is capped at 10,000: the count is ours
    assert all(q["offset"] == ["0"] for q in session.queries())


def test_window_bounds_are_millisecond_exact(ct: CommercetoolsEmulator) -> None:
    start = datetime(2024, 5, 1, 5, 0, 0, 123000, tzinfo=UTC)  # the second tie group's instant
    result = _client(ct).fetch("orders", start, start + timedelta(milliseconds=1))
    assert len(result.items) == 300  # >= start includes the group
    assert _client(ct).fetch("orders", start - timedelta(hours=1), start).items == []  # < end excludes it
    # A sub-millisecond start is rounded up: 05:00:00.123001 is after every record of that group.
    later = start + timedelta(microseconds=1)
    assert _client(ct).fetch("orders", later, later + timedelta(hours=1)).items == []
    with pytest.raises(ValueError):
        _client(ct).fetch("orders", DAY_END, DAY_START)
    with pytest.raises(ValueError):
        _client(ct).fetch("orders", datetime(2024, 5, 1), datetime(2024, 5, 2))  # naive
    with pytest.raises(ValueError):
        _client(ct).fetch("carts", DAY_START, DAY_END)


def test_versions_as_of_the_window_end_and_dedupe(ct: CommercetoolsEmulator) -> None:
    later = DAY_END + timedelta(hours=1)
    ct.add_records(PROJECT, "orders", [_order(1, later, version=2, paymentState="Paid")])
    ct.clock.set(later + timedelta(minutes=5))
    result = _client(ct).fetch("orders", DAY_START, DAY_END)
    first = next(r for r in result.items if r["id"] == _uuid(1))
    assert first["version"] == 1 and "paymentState" not in first  # as the project stood at DAY_END
    assert len(result.items) == 1200
    # The next window sees the new version (and only it).
    nxt = _client(ct).fetch("orders", DAY_END, DAY_END + timedelta(days=1))
    assert [(r["id"], r["version"]) for r in nxt.items] == [(_uuid(2002), 1), (_uuid(1), 2)]


def test_lookahead_and_server_time(ct: CommercetoolsEmulator) -> None:
    client = _client(ct)
    ahead = client.lookahead("orders", datetime(2024, 5, 1, 12, tzinfo=UTC), 10)
    assert len(ahead.items) == 10 and ahead.pages == 1
    assert ahead.total_count == 301  # the 13:00 group and the order at DAY_END
    assert all(modified_at("orders", r) >= datetime(2024, 5, 1, 12, tzinfo=UTC) for r in ahead.items)
    assert client.server_time() == NOW
    ct.clock.advance(90)
    assert client.server_time() == NOW + timedelta(seconds=90)


# --------------------------------------------------------------------------------------------------
# Parsing


def test_real_fixtures_and_decimal_parsing(tmp_path: Path) -> None:
    orders = simplejson.loads((REAL_FIXTURES / "orders_query.json").read_text(), use_decimal=True)
    payments = simplejson.loads((REAL_FIXTURES / "payments_query.json").read_text(), use_decimal=True)
    for entity, body in (("orders", orders), ("payments", payments)):
        folder = tmp_path / "commercetools" / "real" / entity
        folder.mkdir(parents=True)
        (folder / "page.json").write_text(simplejson.dumps(body["results"], use_decimal=True))
    with CommercetoolsEmulator(tmp_path / "commercetools", clock=EmulatorClock(NOW)) as emulator:
        client = _client(emulator, project_key="real")
        got_orders = client.fetch("orders", datetime(2017, 1, 1, tzinfo=UTC), DAY_END).items
        got_payments = client.fetch("payments", datetime(2015, 1, 1, tzinfo=UTC), DAY_END).items
    assert got_orders == orders["results"] and got_payments == payments["results"]
    assert _no_floats(got_orders) and _no_floats(got_payments)
    line = got_orders[0]["lineItems"][0]
    assert line["taxRate"]["amount"] == Decimal("0.1") and isinstance(line["taxRate"]["amount"], Decimal)
    assert isinstance(got_orders[0]["totalPrice"]["centAmount"], int)
    assert money(got_orders[0]["totalPrice"]) == Decimal("10.00")
    assert money(got_payments[0]["transactions"][0]["amount"]) == Decimal("10.00")
    assert record_id("payments", got_payments[0]) == "459e32dc-74ef-4189-bbd0-932275bb027c"
    assert modified_at("orders", got_orders[0]) == datetime(2017, 1, 4, 19, 54, 49, 797000, tzinfo=UTC)
    assert modified_at("orders", got_orders[0]).tzinfo is UTC


def test_helpers() -> None:
    assert money({"centAmount": 1234, "fractionDigits": 0, "currencyCode": "JPY"}) == Decimal("1234")
    assert money({"centAmount": 1234, "fractionDigits": 3, "currencyCode": "KWD"}) == Decimal("1.234")
    with pytest.raises(ValueError):
        money({"centAmount": 12.5, "fractionDigits": 2})
    assert format_ct_time(datetime(2024, 5, 1, 1, 2, 3, 4000, tzinfo=UTC)) == "2024-05-01T01:02:03.004Z"
    assert format_ct_time(datetime(2024, 5, 1, 1, 2, 3, 999001, tzinfo=UTC)) == "2024-05-01T01:02:04.000Z"
    with pytest.raises(ValueError):
        format_ct_time(datetime(2024, 5, 1))
    assert modified_at("customers", {"id": "x", "createdAt": "2024-05-01T00:00:00.000Z"}) == DAY_START
    with pytest.raises(ValueError):
        record_id("carts", {"id": "x"})


# --------------------------------------------------------------------------------------------------
# Auth, retries, errors


def test_token_is_renewed_after_a_401(ct: CommercetoolsEmulator) -> None:
    client = _client(ct)
    assert len(client.fetch("orders", DAY_START, DAY_END).items) == 1200
    assert client.tokens_fetched == 1
    ct.revoke_tokens()  # the token the client holds is now invalid: the next request gets a 401
    assert len(client.fetch("orders", DAY_START, DAY_END).items) == 1200
    assert client.tokens_fetched == 2
    state = requests.get(ct.base_url + "/_sandbox/state", timeout=5).json()
    assert state["tokens_issued"] == 2 and state["requests"]["by_status"]["401"] == 1


def test_token_is_renewed_before_it_expires(ct: CommercetoolsEmulator) -> None:
    now = [1000.0]
    client = _client(ct, monotonic=lambda: now[0])
    client.server_time()
    now[0] += 172800 - 300 - 1
    client.server_time()
    assert client.tokens_fetched == 1
    now[0] += 2  # inside the renewal margin: a new token without waiting for a 401
    client.server_time()
    assert client.tokens_fetched == 2
    state = requests.get(ct.base_url + "/_sandbox/state", timeout=5).json()
    assert "401" not in state["requests"]["by_status"]


def test_retries_503_with_backoff(ct: CommercetoolsEmulator) -> None:
    sleeps = Sleeps()
    client = _client(ct, sleeps, backoff_base=0.001, backoff_max=0.01)
    _faults(
        ct, [{"status": 503, "path": "/oauth/token"}, {"status": 503, "path": "/orders"}, {"status": 502}]
    )
    assert len(client.fetch("orders", DAY_START, DAY_END).items) == 1200
    assert len(sleeps) == 3 and all(s <= 0.01 for s in sleeps)


def test_gives_up_with_a_typed_error(ct: CommercetoolsEmulator) -> None:
    sleeps = Sleeps()
    client = _client(ct, sleeps, max_attempts=3, backoff_base=0.001)
    client.login()
    _faults(ct, [{"status": 503}] * 3)
    with pytest.raises(ServerError) as error:
        client.fetch("orders", DAY_START, DAY_END)
    assert error.value.status == 503 and len(sleeps) == 2
    assert "where" not in error.value.url  # no query string in errors or logs


def test_bad_request_is_a_client_error_without_retry(ct: CommercetoolsEmulator) -> None:
    sleeps = Sleeps()
    client = _client(ct, sleeps)
    with pytest.raises(ClientError) as error:
        client._page("orders", [("where", "lastModifiedAt >")])
    assert error.value.status == 400 and error.value.message.startswith("Malformed parameter: where")
    assert sleeps == []
    with pytest.raises(ClientError) as missing:
        _client(ct, project_key="unknown-project").server_time()
    assert missing.value.status == 404


def test_wrong_credentials_are_an_auth_error(ct: CommercetoolsEmulator) -> None:
    with pytest.raises(AuthError) as error:
        _client(ct, client_secret="wrong").fetch("orders", DAY_START, DAY_END)
    assert error.value.status == 401
    assert "client credentials" in error.value.message


def test_credentials_never_reach_the_log(ct: CommercetoolsEmulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(ct, client_secret="sandbox-ct-secret")
    _faults(ct, [{"status": 503}])
    client.fetch("orders", DAY_START, DAY_END)
    ct.revoke_tokens()
    client.server_time()
    assert "sandbox-ct-secret" not in caplog.text and "sandbox-ct-secret" not in repr(client)
    assert client._token is not None and client._token not in caplog.text
