"""Support tools (CONTRACT.md §1, issue 5 item 6): `loyalty explain` lists a member's identities,
balance, tier and every entry with its reason, and the entries add up to the balance shown;
`loyalty forget` leaves no table of the warehouse holding the member's e-mail, name or phone, keeps
amounts and keys usable, records the erasure and queues deletions in the targets."""

import datetime as dt
import re
import subprocess
import sys

import duckdb
import pytest
from magento_factory import memo, order
from pipeline import land, process

from loyalty_assets.lib import warehouse
from loyalty_assets.lib.program import parse_program
from loyalty_assets.lib.support import explain, forget

D = dt.date


def personal_order(entity_id: int, updated: str, **kw) -> dict:
    rec = order(entity_id, updated, email="Jane.Roe@Example.com", customer_id=42, **kw)
    rec.update(customer_firstname="Jane", customer_lastname="Roe", remote_ip="203.0.113.77")
    rec["billing_address"] = {"email": "jane.roe@example.com", "firstname": "Jane", "lastname": "Roe",
                              "telephone": "+1 555 0100", "street": ["1 Main St"], "zip": "78701-2345"}
    return rec


def build(path, program: str = "{}") -> None:
    p = parse_program(program)
    conn = warehouse.connect(str(path))
    land(conn, p, orders=[personal_order(1, "2024-03-01 10:00:00", subtotal="200.00"),
                          order(2, "2024-03-01 11:00:00", email="other@example.com", subtotal="50.00")],
         memos=[memo(5, 1, "2024-03-03 10:00:00", subtotal="30.00")],
         customers=[{"id": 42, "email": "jane.roe@example.com", "firstname": "Jane", "lastname": "Roe",
                     "created_at": "2024-02-01 00:00:00", "updated_at": "2024-02-01 00:00:00"}])
    land(conn, p, orders=[{**personal_order(3, "2024-03-02 09:00:00"), "subtotal": "abc"}])  # quarantined
    process(conn, p, D(2024, 3, 4))
    conn.close()


def every_text(conn) -> str:
    chunks = []
    for (table,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall():
        cols = [c for c, t in conn.execute(f"SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{table}'"
                                           ).fetchall() if t in ("VARCHAR", "JSON")]
        if cols:
            for row in conn.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall():
                chunks += [str(v) for v in row if v is not None]
    return "\n".join(chunks).lower()


def test_explain_lists_entries_that_sum_to_the_balance(tmp_path):
    build(tmp_path / "w.duckdb")
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    text = explain(conn, "  JANE.ROE@example.com ")
    conn.close()
    assert "magento:default:42" in text and "jane.roe@example.com" in text
    assert "Balance as of 2024-03-04: 170 spendable, 0 pending" in text
    assert "earn        +200" in text and "clawback     -30" in text and "Sum of entries: 170" in text
    # each entry with its order, and the refund it counted (CONTRACT.md §1)
    assert "-30 =     170  magento:default:1 (refund magento:default:creditmemo:5)" in text
    assert "+200 =     200  magento:default:1\n" in text


def test_explain_shows_a_late_refund_on_the_entry_that_booked_it(tmp_path):
    """Credit memo 9 is dated 03-02 but fetched after 03-03 was booked: the clawback of 03-06 counted
    it, not the adjustment of 03-03 it predates."""
    conn = warehouse.connect(str(tmp_path / "w.duckdb"))
    p = parse_program("{}")
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"),
                          order(1, "2024-03-03 10:00:00", subtotal="120.00", created_at="2024-03-01 10:00:00")])
    process(conn, p, dt.date(2024, 3, 5))
    land(conn, p, memos=[memo(9, 1, "2024-03-02 08:00:00", subtotal="30.00")])
    process(conn, p, dt.date(2024, 3, 6))
    lines = [line for line in explain(conn, "ann@example.com").splitlines() if "magento:default:1" in line]
    assert [line.split()[1:3] for line in lines] == [["earn", "+100"], ["adjust", "+20"], ["clawback", "-30"]]
    assert ["creditmemo:9" in line for line in lines] == [False, False, True]


def test_forget_leaves_no_personal_data_and_keeps_amounts(tmp_path):
    path = tmp_path / "w.duckdb"
    build(path, "identity: {match_phone: true}")  # phones are keys: their parsed keys are kept too
    conn = warehouse.connect(str(path))
    before = every_text(conn)
    assert "jane.roe@example.com" in before and "roe" in before and "555 0100" in before
    assert "78701" in before and "203.0.113.77" in before
    balances = conn.execute("SELECT points_spendable FROM member_status ORDER BY points_spendable").fetchall()
    # a referral naming her on both sides and a move of her e-mail key between members (identity merges)
    conn.execute("""INSERT INTO referrals VALUES ('smile:default:9', 'smile.referrals', 'smile:default:7', 'Jane.Roe@example.com',
                    'jane.roe@example.com', NULL, 'completed', now(), now(), 'h')""")
    member_id = conn.execute("SELECT member_id FROM member_keys WHERE key = 'jane.roe@example.com'").fetchone()[0]
    conn.execute("INSERT INTO member_key_moves VALUES ('jane.roe@example.com', 'M-old', ?, now())", [member_id])
    erasure = forget(conn, "jane.roe@example.com", "default")
    assert erasure.rows_rewritten["member_key_moves"] == 1
    assert erasure.rows_rewritten["referrals_referrer_email"] == erasure.rows_rewritten["referrals_friend_email"] == 1
    after = every_text(conn)
    assert "jane.roe@example.com" not in after
    assert "roe" not in after.replace("forgotten", "") and "555 0100" not in after and "1 main st" not in after
    assert "78701" not in after and "203.0.113.77" not in after  # a BigCommerce zip, the shopper's IP
    assert "other@example.com" in after  # nobody else is touched
    assert conn.execute("SELECT points_spendable FROM member_status ORDER BY points_spendable").fetchall() == balances
    assert conn.execute("SELECT count(*) FROM erasures WHERE member_id = ?", [erasure.member_id]).fetchone()[0] == 1
    # the pseudonym still finds the member, and re-running the pipeline books nothing new
    assert "Sum of entries: 170" in explain(conn, erasure.pseudonym)
    conn.close()


def test_forget_leaves_other_addresses_alone_and_scrubs_her_quarantined_versions(tmp_path):
    """CONTRACT.md §1 forget: her personal data everywhere, quarantine included, even a quarantined
    version of her order that carries no e-mail (only her name and phone); and only hers: another
    shopper whose address ends with hers (mary.jane.roe@...) keeps it. The CRM record our push made
    for her is queued for deletion. Forgotten again later, the erasure is recorded again."""
    path = tmp_path / "w.duckdb"
    build(path)
    p = parse_program("{}")
    conn = warehouse.connect(str(path))
    no_email = {**personal_order(1, "2024-03-03 12:00:00"), "subtotal": "abc"}  # quarantined (bad_amount)
    no_email.pop("customer_email")
    no_email["billing_address"].pop("email")
    land(conn, p, orders=[no_email, order(7, "2024-03-03 13:00:00", email="Mary.Jane.Roe@example.com", subtotal="70.00")])
    process(conn, p, D(2024, 3, 4))
    assert conn.execute("SELECT count(*) FROM quarantine WHERE payload::VARCHAR LIKE '%555 0100%' "
                        "AND payload::VARCHAR NOT LIKE '%jane.roe@example.com%'").fetchone()[0] == 1
    # a Contact our push created for her (known by our external id until a pull reads its Id back)
    member = conn.execute("SELECT member_id FROM member_keys WHERE key = 'jane.roe@example.com'").fetchone()[0]
    conn.execute("INSERT INTO sync_state VALUES ('salesforce', 'Contact', ?, 'h', now(), NULL)", [member])
    first = forget(conn, "jane.roe@example.com", "default")
    assert first.deletions_queued == 1 and conn.execute("SELECT target, external_id, status FROM deletion_requests"
                                                        ).fetchall() == [("salesforce", f"Contact/Loyalty_Member_Id__c/{member}",
                                                                          "queued")]
    after = every_text(conn)
    assert "555 0100" not in after and "jane.roe@example.com" not in after.replace("mary.jane.roe@example.com", "")
    assert conn.execute("SELECT email FROM member_status WHERE email LIKE 'mary%'").fetchall() == [
        ("mary.jane.roe@example.com",)]
    assert conn.execute("SELECT count(*) FROM raw_records WHERE payload::VARCHAR LIKE '%Mary.Jane.Roe@example.com%'"
                        ).fetchone()[0] == 1
    erased_at = conn.execute("SELECT erased_at FROM erasures").fetchall()
    forget(conn, first.pseudonym, "default")
    assert conn.execute("SELECT count(*), max(erased_at) > ? FROM erasures", [erased_at[0][0]]).fetchall() == [(1, True)]
    conn.close()


def test_forget_renames_her_addresses_in_the_evidence_of_her_merges(tmp_path):
    """CONTRACT.md §1 forget, identity keys included: a merge's evidence names the keys that linked the
    two members (her two addresses here); they are renamed as in member_keys, and explain, which
    shows the merge, shows no address of hers. Before, both stayed in member_merges.evidence."""
    p = parse_program("{}")
    conn = warehouse.connect(str(tmp_path / "w.duckdb"))
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-03-02 10:00:00", email="ann.b@example.com", customer_id=7, subtotal="40.00")])
    process(conn, p, D(2024, 3, 3))
    land(conn, p, customers=[{"id": 7, "email": "ann@example.com", "created_at": "2024-02-01 00:00:00",
                              "updated_at": "2024-03-04 09:00:00"}])
    process(conn, p, D(2024, 3, 5))
    assert "ann@example.com" in conn.execute("SELECT evidence FROM member_merges").fetchone()[0]
    erased = forget(conn, "ann@example.com", "default")
    evidence = conn.execute("SELECT evidence FROM member_merges").fetchone()[0]
    keys = {k for (k,) in conn.execute("SELECT key FROM member_keys").fetchall()}
    assert "@example.com" not in evidence and set(evidence.split(", ")) <= keys and erased.pseudonym in evidence
    assert "example.com" not in explain(conn, erased.pseudonym)
    conn.close()
    conn = warehouse.connect(str(tmp_path / "w.duckdb"))  # what is stored (a run's temp tables are gone)
    assert not {"ann@example.com", "ann.b@example.com"} & set(re.findall(r"[\w.+-]+@[\w.-]+", every_text(conn)))
    conn.close()


@pytest.mark.parametrize("components_in_sql", [False, True])
def test_a_shopper_coming_back_after_forget_is_a_new_member(tmp_path, monkeypatch, components_in_sql):
    """RULES.md §8: a member id, once given, stays its member's. A forgotten member keeps its id (the
    hash of its first key, now erased); the same e-mail ordering again must not get that id back,
    which joined the newcomer to the forgotten member's entries without any merge. Both ways new
    members are resolved (the union-find, and SQL for a large scope)."""
    from loyalty_assets.lib import identity

    monkeypatch.setattr(identity, "SQL_COMPONENTS_MIN", 0 if components_in_sql else 10**9)
    p = parse_program("{}")
    conn = warehouse.connect(str(tmp_path / "w.duckdb"))
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com")])
    process(conn, p, D(2024, 3, 1))
    gone = forget(conn, "ann@example.com", "default")
    land(conn, p, orders=[order(2, "2024-03-03 10:00:00", email="ann@example.com", subtotal="40.00")])
    process(conn, p, D(2024, 3, 3))
    (new,) = conn.execute("SELECT member_id FROM member_keys WHERE key = 'ann@example.com'").fetchone()
    assert new != gone.member_id
    assert dict(conn.execute("SELECT member_id, points_spendable FROM member_status").fetchall()) == {
        gone.member_id: 100, new: 40}
    assert conn.execute("SELECT count(*) FROM member_merges").fetchone()[0] == 0
    conn.close()



def test_a_forgotten_members_loyalty_profile_pulled_again_stays_pseudonymized(tmp_path):
    """CONTRACT.md §1 forget: our pushes change the member's Smile.io customer, so the next pull
    brings a new version of it with her e-mail and name, which put them back in the warehouse (her
    e-mail a key of the same member again, in member_status). A profile of a forgotten member is
    stored pseudonymized; another shopper's is not touched."""
    from loyalty_assets.lib import raw
    from loyalty_assets.lib.platforms.common import iso_time

    path = tmp_path / "w.duckdb"
    build(path)
    p = parse_program("{}")
    conn = warehouse.connect(str(path))

    def smile(*customers):
        raw.insert_versions(conn, "smile.customers", "default", list(customers), lambda r: r["id"],
                            lambda r: iso_time(r["updated_at"], "updated_at"), p.tz)

    smile({"id": 9, "email": "Jane.Roe@example.com", "first_name": "Jane", "last_name": "Roe",
           "created_at": "2024-03-04T08:00:00Z", "updated_at": "2024-03-04T08:00:00Z"})
    process(conn, p, D(2024, 3, 4))
    member_id = conn.execute("SELECT member_id FROM member_keys WHERE key = 'smile:default:9'").fetchone()[0]
    erasure = forget(conn, "jane.roe@example.com", "default")
    assert erasure.member_id == member_id
    smile({"id": 9, "email": "Jane.Roe@example.com", "first_name": "Jane", "last_name": "Roe", "points_balance": 170,
           "created_at": "2024-03-04T08:00:00Z", "updated_at": "2024-03-05T08:00:00Z"},
          {"id": 10, "email": "other@example.com", "first_name": "Otto",
           "created_at": "2024-03-05T08:00:00Z", "updated_at": "2024-03-05T08:00:00Z"})
    process(conn, p, D(2024, 3, 5))
    after = every_text(conn)
    assert "jane.roe@example.com" not in after and "roe" not in after.replace("forgotten", "")
    assert "otto" in after  # another shopper's profile as it came
    assert conn.execute("SELECT email FROM member_status WHERE member_id = ?", [member_id]).fetchall() == [
        (erasure.pseudonym,)]
    conn.close()

def test_cli_explain_and_forget(tmp_path):
    path = tmp_path / "w.duckdb"
    build(path)
    env = {"LOYALTY_WAREHOUSE": str(path), "PATH": "/usr/bin:/bin"}
    loyalty = [sys.executable, "-m", "loyalty_assets.cli"]
    out = subprocess.run([*loyalty, "explain", "jane.roe@example.com"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Sum of entries: 170" in out.stdout
    missing = subprocess.run([*loyalty, "explain", "nobody@example.com"], env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no member" in missing.stderr
    gone = subprocess.run([*loyalty, "forget", "jane.roe@example.com"], env=env, capture_output=True, text=True, timeout=120)
    assert gone.returncode == 0 and "pseudonymized" in gone.stdout
    nowhere = {**env, "LOYALTY_WAREHOUSE": str(tmp_path / "none.duckdb")}  # a clear error, no traceback
    absent = subprocess.run([*loyalty, "explain", "jane.roe@example.com"], env=nowhere, capture_output=True, text=True,
                            timeout=120)
    assert absent.returncode == 1 and absent.stderr.startswith("error: no warehouse at") and "Traceback" not in absent.stderr
    assert not (tmp_path / "none.duckdb").exists()


def test_forget_keeps_a_parsed_phone_only_another_shoppers_orders_still_carry(tmp_path):
    """With phones as keys, the member's parsed phones go with it; one another shopper's orders still
    carry stays in phone_keys, as identity would parse it again from them."""
    p = parse_program("identity: {match_phone: true}")
    conn = warehouse.connect(str(tmp_path / "w.duckdb"))

    def with_phone(rec: dict, phone: str) -> dict:
        rec["billing_address"] = {"email": rec["customer_email"], "telephone": phone, "country_id": "US"}
        return rec

    land(conn, p, orders=[
        with_phone(order(1, "2024-03-01 10:00:00", email="jane@example.com", customer_id=42), "+1 650 253 0000"),
        with_phone(order(2, "2024-03-01 11:00:00", email="jane@example.com", customer_id=42), "+1 650 253 0001"),
        with_phone(order(3, "2024-03-01 12:00:00", email="bob@example.com", customer_id=43), "+1 650 253 0000"),
    ])
    process(conn, p, D(2024, 3, 2))
    assert sorted(r[0] for r in conn.execute("SELECT phone FROM phone_keys").fetchall()) == [
        "+1 650 253 0000", "+1 650 253 0001"]
    forget(conn, "jane@example.com", "default")
    assert conn.execute("SELECT phone, key FROM phone_keys").fetchall() == [("+1 650 253 0000", "tel:+16502530000")]
    conn.close()
