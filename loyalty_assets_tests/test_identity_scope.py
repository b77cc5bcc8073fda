"""Identity resolution scoped to what is new (the default) gives exactly what rebuilding every member
from all records gives, run after run: new keys, guests who register, shared family addresses
(the same-tenant guard), phones (and phones turned on later), late records older than what is
stored, must_link and cannot_link, a cannot_link added to the configuration later."""

import datetime as dt
import random

from magento_factory import order
from pipeline import land

from loyalty_assets.lib import identity, normalize, warehouse
from loyalty_assets.lib.money import FxTable
from loyalty_assets.lib.program import parse_program

PHONES = ["+1 650 253 0000", "650-253-0000", "+44 20 7946 0018", "+1 212 555 0199", "not a phone"]


def _state(conn) -> tuple:
    return (
        # a must_link key no record has yet is first seen when the run links it: the wall clock
        conn.execute("SELECT key, member_id, key_type, first_seen_at < DATE '2025-01-01' FROM member_keys ORDER BY key").fetchall(),
        conn.execute("SELECT survivor_id, absorbed_id, rule, evidence FROM member_merges ORDER BY absorbed_id").fetchall(),
        conn.execute("SELECT conflict_id, key, member_ids, reason FROM identity_conflicts ORDER BY 1").fetchall(),
    )


def _batches(rng: random.Random, runs: int) -> list[list[dict]]:
    """Orders over a small pool of emails, customer ids and phones, so members meet and clash."""
    emails = [f"shopper{i}@example.com" for i in range(9)]
    next_id, batches = 2, [[order(1, "2024-03-01 08:00:00", email="solo@example.com", customer_id=9)]]  # never met again
    for run in range(runs):
        batch = []
        for _ in range(rng.randint(1, 6)):
            day = dt.date(2024, 3, 1) + dt.timedelta(days=run * 2 + rng.choice([0, 1, -3]))  # some arrive late
            email = rng.choice(emails) if rng.random() < 0.9 else None
            customer_id = rng.choice([None, None, 1, 2, 3, 4]) if email else 5
            rec = order(next_id, f"{day} {rng.randint(8, 20):02d}:00:00", email=email, customer_id=customer_id)
            if rng.random() < 0.4:
                rec["billing_address"] = {"email": email, "telephone": rng.choice(PHONES),
                                          "country_id": rng.choice(["US", "GB", None])}
            batch.append(rec)
            next_id += 1
        batches.append(batch)
    return batches


def _crm_people(rng: random.Random, run: int, day: dt.date) -> dict[str, list[dict]]:
    """Salesforce Contacts and Leads of the same e-mails: a Lead joins anyone (the CRM's duplicates
    included), two Contacts of one e-mail clash."""
    people: dict[str, list[dict]] = {"salesforce.contacts": [], "salesforce.leads": []}
    for n in range(rng.randint(0, 2)):
        source, prefix = rng.choice([("salesforce.contacts", "003"), ("salesforce.leads", "00Q")])
        people[source].append({"Id": f"{prefix}{run:07d}{n:05d}AAA", "Email": f"shopper{rng.randint(0, 8)}@example.com",
                               "LastModifiedDate": f"{day}T07:00:00+00:00"})
    return people


def test_scoped_resolution_equals_a_rebuild_of_every_member(tmp_path):
    import yaml

    from loyalty_assets.lib import raw

    fx = FxTable.load(None)
    merges = conflicts = refused = leads_joined = 0
    for seed in range(8):
        rng, crm_rng = random.Random(seed), random.Random(1000 + seed)
        def configured(match_phone: bool, seed=seed):
            return parse_program(yaml.safe_dump({"identity": {
                "match_phone": match_phone,
                "must_link": [["shopper1@example.com", "shopper2@example.com"]] if seed % 3 == 0 else [],
                "cannot_link": [["magento:default:3", "shopper4@example.com"]] if seed % 4 == 1 else [],
            }}))
        scoped, full = (warehouse.connect(str(tmp_path / f"{name}{seed}.duckdb")) for name in ("scoped", "full"))
        day = dt.date(2024, 3, 1)
        for i, batch in enumerate(_batches(rng, 8)):
            day += dt.timedelta(days=2)
            # phones are keys on even seeds; seeds 1 and 5 turn them on after four runs without them
            program = configured(seed % 2 == 0 or (seed % 4 == 1 and i >= 4))
            people = _crm_people(crm_rng, i, day)
            for conn, is_scoped in ((scoped, True), (full, False)):
                land(conn, program, orders=batch)
                for source in ("salesforce.contacts", "salesforce.leads"):
                    raw.insert_versions(conn, source, "default", people[source], lambda r: r["Id"],
                                        lambda r: dt.datetime.fromisoformat(r["LastModifiedDate"]), program.tz)
                normalize.normalize(conn, program, fx, day)
                # the rebuild resolves every component in Python: the scoped run's SQL components agree
                identity.resolve_members(conn, program, day, scoped=is_scoped, components_in_sql=is_scoped)
            assert _state(scoped) == _state(full), f"seed {seed}, run {i}"
        again = identity.resolve_members(scoped, program, day)
        assert (again.new_keys, again.merges, again.new_members) == (0, 0, 0)
        assert _state(scoped) == _state(full)
        # the configuration changes with no new record: a cannot_link between keys already linked
        pair = scoped.execute(
            """SELECT c.key, e.key FROM member_keys c JOIN member_keys e USING (member_id)
               WHERE c.key_type = 'customer_id' AND e.key_type = 'email'   -- a member no conflict names
                 AND NOT EXISTS (SELECT 1 FROM identity_conflicts i WHERE contains(i.member_ids, c.member_id))
               ORDER BY ALL LIMIT 1""").fetchall()
        if pair:
            later = parse_program(yaml.safe_dump({"identity": {"match_phone": seed % 2 == 0,
                                                               "cannot_link": [list(pair[0])]}}))
            for conn, is_scoped in ((scoped, True), (full, False)):
                identity.resolve_members(conn, later, day + dt.timedelta(days=1), scoped=is_scoped)
            assert _state(scoped) == _state(full), f"seed {seed}, configuration changed"
            refused += scoped.execute(
                "SELECT count(*) FROM identity_conflicts WHERE reason LIKE 'cannot_link%'").fetchall()[0][0]
        leads_joined += full.execute(
            """SELECT count(*) FROM member_keys l JOIN member_keys o USING (member_id)
               WHERE l.key LIKE 'salesforce:%:00Q%' AND o.key_type <> 'email' AND o.key <> l.key""").fetchall()[0][0]
        merges += len(_state(full)[1])
        conflicts += len(_state(full)[2])
        scoped.close()
        full.close()
    # the scenarios reach merges and guard refusals (else they would prove little), Leads joining
    # members of other keys and each other
    assert merges > 0 and conflicts > 0 and refused > 0 and leads_joined > 0


def test_scoped_resolution_reaches_every_record_of_a_merged_member(tmp_path):
    """A member whose keys are not all on one record: its customer ids in two tenants share an
    e-mail, and its second e-mail is only on an order of the second tenant. A new order links its
    first customer id to an older guest's e-mail, so the member is absorbed and every key it has
    moves to the guest's member; the run must find the records the new one does not name."""
    from loyalty_assets.lib import raw
    from loyalty_assets.lib.platforms.magento import parse_time

    p = parse_program("{}")
    fx = FxTable.load(None)

    def land_to(conn, tenant: str, orders: list[dict]) -> None:
        raw.insert_versions(conn, "magento.orders", tenant, orders, lambda r: r["entity_id"],
                            lambda r: parse_time(r["updated_at"], "updated_at"), p.tz)

    runs = [
        [("default", [order(1, "2024-03-01 08:00:00", email="guest@example.com", customer_id=None),
                      order(2, "2024-03-02 08:00:00", email="first@example.com", customer_id=1)]),
         ("eu", [order(3, "2024-03-02 09:00:00", email="first@example.com", customer_id=1),
                 order(4, "2024-03-02 10:00:00", email="second@example.com", customer_id=1)])],
        [("default", [order(5, "2024-03-05 08:00:00", email="guest@example.com", customer_id=1)])],
    ]
    scoped, full = (warehouse.connect(str(tmp_path / f"{name}.duckdb")) for name in ("scoped", "full"))
    for day, batches in zip((dt.date(2024, 3, 3), dt.date(2024, 3, 6)), runs, strict=True):
        for conn, is_scoped in ((scoped, True), (full, False)):
            for tenant, orders in batches:
                land_to(conn, tenant, orders)
            normalize.normalize(conn, p, fx, day)
            identity.resolve_members(conn, p, day, scoped=is_scoped)
    assert _state(scoped) == _state(full)
    keys = dict(full.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert len(set(keys.values())) == 1 and set(keys) == {
        "guest@example.com", "first@example.com", "second@example.com", "magento:default:1", "magento:eu:1"}
    assert full.execute("SELECT count(*) FROM member_merges").fetchall()[0][0] == 1


def test_a_lifted_cannot_link_merges_every_key_of_both_members(tmp_path):
    """A refused link's record keeps its keys with two members; once the configuration lifts the
    cannot_link, a scoped run with no new record finds that record and, through it, every record
    of the other member, as the rebuild does."""
    import yaml

    blocked = parse_program(yaml.safe_dump({"identity": {"cannot_link": [["magento:default:3", "e4@example.com"]]}}))
    lifted = parse_program("{}")
    fx = FxTable.load(None)
    orders = [order(1, "2024-03-01 08:00:00", email="e4@example.com", customer_id=None),
              order(2, "2024-03-02 08:00:00", email="e3@example.com", customer_id=3),
              order(3, "2024-03-02 09:00:00", email="e5@example.com", customer_id=3),
              order(4, "2024-03-02 10:00:00", email="e4@example.com", customer_id=3)]
    scoped, full = (warehouse.connect(str(tmp_path / f"{name}.duckdb")) for name in ("scoped", "full"))
    for conn, is_scoped in ((scoped, True), (full, False)):
        land(conn, blocked, orders=orders)
        normalize.normalize(conn, blocked, fx, dt.date(2024, 3, 3))
        identity.resolve_members(conn, blocked, dt.date(2024, 3, 3), scoped=is_scoped)
        assert conn.execute("SELECT count(DISTINCT member_id) FROM member_keys").fetchall()[0][0] == 2
        identity.resolve_members(conn, lifted, dt.date(2024, 3, 4), scoped=is_scoped)
    assert _state(scoped) == _state(full)
    assert full.execute("SELECT count(DISTINCT member_id) FROM member_keys").fetchall()[0][0] == 1


def test_new_components_resolved_in_sql_equal_the_union_find(tmp_path):
    """A first run's new members come out of SQL exactly as the union-find makes them: chains of
    e-mails and customer ids, phones, guests who register, one customer in two tenants; components
    with two customer ids of one tenant (the guard refuses a link) stay with the union-find."""
    import yaml

    from loyalty_assets.lib import raw
    from loyalty_assets.lib.platforms.magento import parse_time

    fx = FxTable.load(None)
    totals = {"sql": 0, "python": 0, "conflicts": 0}
    for seed in range(4):
        rng = random.Random(100 + seed)
        p = parse_program(yaml.safe_dump({"identity": {"match_phone": seed % 2 == 0}}))
        by_tenant: dict[str, list[dict]] = {"default": [r for batch in _batches(rng, 6) for r in batch], "eu": []}
        next_id = 1000
        for i in range(40):  # shoppers of their own, some with a second address, a phone or a second tenant
            day = f"2024-03-{rng.randint(1, 20):02d} {rng.randint(8, 20):02d}:00:00"
            customer = rng.choice([None, 200 + i, 200 + i // 2])  # some pairs share a customer id
            tenant = rng.choice(["default", "default", "eu"])
            for email in [f"own{i}@example.com"] + ([f"other{i % 7}@example.com"] if rng.random() < 0.3 else []):
                rec = order(next_id, day, email=email, customer_id=customer)
                if rng.random() < 0.3:
                    rec["billing_address"] = {"email": email, "telephone": rng.choice(PHONES), "country_id": "US"}
                by_tenant[tenant].append(rec)
                next_id += 1
        states, fast = [], 0
        for in_sql in (True, False):
            conn = warehouse.connect(str(tmp_path / f"c{seed}{in_sql}.duckdb"))
            for tenant, orders in by_tenant.items():
                raw.insert_versions(conn, "magento.orders", tenant, orders, lambda r: r["entity_id"],
                                    lambda r: parse_time(r["updated_at"], "updated_at"), p.tz)
            normalize.normalize(conn, p, fx, dt.date(2024, 3, 25))
            summary = identity.resolve_members(conn, p, dt.date(2024, 3, 25), components_in_sql=in_sql)
            if in_sql:
                fast = conn.execute("SELECT count(*) FROM id_fast_keys").fetchall()[0][0]
            states.append((_state(conn), summary))
            conn.close()
        assert states[0] == states[1], f"seed {seed}"
        keys = len(states[0][0][0])
        totals["sql"] += fast
        totals["python"] += keys - fast
        totals["conflicts"] += len(states[0][0][2])
    # both ways were taken, and the guard refused links (else this would prove little)
    assert totals["sql"] > 0 and totals["python"] > 0 and totals["conflicts"] > 0, totals


def test_the_sql_components_are_used_from_a_number_of_records_in_scope(tmp_path, monkeypatch):
    """By default the union-find alone resolves a small scope (a day's run) and SQL takes the new
    members of a large one (a first run); both give the same members."""
    fx, p = FxTable.load(None), parse_program("{}")
    orders = [order(i, f"2024-03-{1 + i % 9:02d} 08:00:00", email=f"s{i % 25}@example.com",
                    customer_id=i % 30 if i % 3 else None) for i in range(1, 120)]
    states = []
    for label, minimum in (("python", identity.SQL_COMPONENTS_MIN), ("sql", 50)):
        monkeypatch.setattr(identity, "SQL_COMPONENTS_MIN", minimum)
        conn = warehouse.connect(str(tmp_path / f"{label}.duckdb"))
        land(conn, p, orders=orders)
        normalize.normalize(conn, p, fx, dt.date(2024, 3, 12))
        identity.resolve_members(conn, p, dt.date(2024, 3, 12))
        used_sql = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'id_fast_keys'").fetchall()[0][0] == 1
        assert used_sql == (label == "sql")
        states.append(_state(conn))
        conn.close()
    assert states[0] == states[1] and len(states[0][0]) > 0


def test_with_phones_a_run_parses_and_reads_only_what_is_new(tmp_path, monkeypatch):
    """With identity.match_phone on, a run parses only the phones it has not seen (phone_keys) and
    reads the records near its new ones, not the history; a new order whose phone is an old
    member's still joins that member."""
    p = parse_program("identity: {match_phone: true}")
    fx = FxTable.load(None)
    conn = warehouse.connect(str(tmp_path / "w.duckdb"))
    history = []
    for i in range(40):
        rec = order(i + 1, "2024-03-01 08:00:00", email=f"old{i}@example.com")
        rec["billing_address"] = {"email": f"old{i}@example.com", "telephone": f"+1 650 253 {i:04d}", "country_id": "US"}
        history.append(rec)
    land(conn, p, orders=history)
    normalize.normalize(conn, p, fx, dt.date(2024, 3, 1))
    identity.resolve_members(conn, p, dt.date(2024, 3, 1))
    assert conn.execute("SELECT count(*) FROM phone_keys WHERE key IS NOT NULL").fetchall() == [(40,)]

    parsed = []
    original = identity.phone_key
    monkeypatch.setattr(identity, "phone_key", lambda raw, region: parsed.append(raw) or original(raw, region))
    new = order(100, "2024-03-02 08:00:00", email="new@example.com")  # the phone of old7's orders
    new["billing_address"] = {"email": "new@example.com", "telephone": "(650) 253-0007", "country_id": "US"}
    land(conn, p, orders=[new])
    normalize.normalize(conn, p, fx, dt.date(2024, 3, 2))
    identity.resolve_members(conn, p, dt.date(2024, 3, 2))
    assert parsed == ["(650) 253-0007"]
    # the new record and old7's, found by the phone's key: not the 40 of the history
    assert conn.execute("SELECT count(*) FROM id_records").fetchall() == [(2,)]
    members = conn.execute(
        "SELECT key, member_id FROM member_keys WHERE key IN ('new@example.com', 'old7@example.com', 'tel:+16502530007')"
    ).fetchall()
    assert len(members) == 3 and len({m for _, m in members}) == 1


def test_with_phones_a_record_whose_phone_is_contested_is_found_by_it(tmp_path):
    """Two registered customers of one tenant share a phone: the guard refuses the link and records
    the conflict, and the phone goes to the older of the two (as a contested e-mail does), customer 2,
    although customer 1 used it first. A later guest known by that phone (and a new e-mail) joins the
    phone's member; the scoped run must reach the other customer's record through the phone, its only
    key in common with what is new, as the rebuild does."""
    p = parse_program("identity: {match_phone: true}")
    fx = FxTable.load(None)

    def with_phone(rec: dict) -> dict:
        rec["billing_address"] = {"email": rec["customer_email"], "telephone": "+1 650 253 0000", "country_id": "US"}
        return rec

    runs = [
        [order(1, "2024-03-01 08:00:00", email="b@example.com", customer_id=2),  # the older member
         with_phone(order(2, "2024-03-01 09:00:00", email="a@example.com", customer_id=1))],
        [with_phone(order(3, "2024-03-02 08:00:00", email="b@example.com", customer_id=2))],  # the refused link
        [with_phone(order(4, "2024-03-03 08:00:00", email="e@example.com", customer_id=None))],
        [with_phone(order(5, "2024-03-04 08:00:00", email="f@example.com", customer_id=3))],  # a third customer
    ]
    scoped, full = (warehouse.connect(str(tmp_path / f"{name}.duckdb")) for name in ("scoped", "full"))
    for day, batch in zip((dt.date(2024, 3, d) for d in range(1, 5)), runs, strict=True):
        for conn, is_scoped in ((scoped, True), (full, False)):
            land(conn, p, orders=batch)
            normalize.normalize(conn, p, fx, day)
            identity.resolve_members(conn, p, day, scoped=is_scoped)
        assert _state(scoped) == _state(full), day
    owners = dict(full.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert owners["e@example.com"] == owners["tel:+16502530000"] == owners["magento:default:2"] != owners["magento:default:1"]
    reasons = [r for (r,) in full.execute("SELECT reason FROM identity_conflicts ORDER BY 1").fetchall()]
    assert reasons and all(r.startswith("same_tenant_customers_share_phone: ") for r in reasons), reasons
