"""Support tools (CONTRACT.md §1): `explain` answers "where did my points go?" from the warehouse
alone; `forget` pseudonymizes a member's personal data everywhere in it (right to erasure)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal

import duckdb

from loyalty_assets.lib.records import EMAIL_IN_TEXT, normalize_email


class MemberNotFound(LookupError):
    pass


def find_member(conn: duckdb.DuckDBPyConnection, email: str) -> str:
    key = normalize_email(email)
    row = conn.execute(
        """SELECT coalesce(r.survivor_id, k.member_id) FROM member_keys k
           LEFT JOIN member_resolution r ON r.member_id = k.member_id WHERE k.key = ?""",
        [key],
    ).fetchall()
    if not row:
        raise MemberNotFound(f"no member has the email {email!r}")
    return row[0][0]


def member_ids(conn: duckdb.DuckDBPyConnection, member_id: str) -> list[str]:
    """The member and every member merged into it."""
    rows = conn.execute("SELECT member_id FROM member_resolution WHERE survivor_id = ?", [member_id]).fetchall()
    return [member_id, *(r[0] for r in rows)]


def explain(conn: duckdb.DuckDBPyConnection, email: str) -> str:
    """A support agent's answer: who, what balance and tier and why, every entry with its reason and
    what was pushed where and when. The entries listed add up to the balance shown."""
    member = find_member(conn, email)
    ids = member_ids(conn, member)
    lines = []
    status = conn.execute(
        """SELECT email, points_spendable, points_pending, points_earned_lifetime, vip_tier, tier_metric,
                  tier_expires_on, as_of, smile_customer_id, loyaltylion_customer_id, salesforce_id
           FROM member_status WHERE member_id = ?""",
        [member],
    ).fetchall()
    lines.append(f"Member {member}")
    keys = conn.execute(
        "SELECT key_type, key, first_seen_at FROM member_keys WHERE member_id IN (SELECT unnest(?)) ORDER BY first_seen_at",
        [ids],
    ).fetchall()
    lines.append("Identities:")
    lines += [f"  {kt:24s} {k}  (first seen {seen:%Y-%m-%d})" for kt, k, seen in keys]
    for survivor, absorbed, rule, evidence, day in conn.execute(
        "SELECT * FROM member_merges WHERE survivor_id = ? ORDER BY merged_on", [member]
    ).fetchall():
        lines.append(f"  merged {absorbed} into {survivor} on {day} ({rule}: {evidence})")
    if status:
        (s_email, spendable, pending, lifetime, tier, metric, expires, as_of, smile, lion, sf) = status[0]
        lines.append(f"Balance as of {as_of}: {spendable} spendable, {pending} pending "
                     f"({spendable + pending} in all; {lifetime} earned over the lifetime)")
        why = f"metric {metric} this period"
        change = conn.execute(
            """SELECT changed_on, from_tier, to_tier, reason, metric FROM vip_tier_changes
               WHERE member_id IN (SELECT unnest(?)) ORDER BY changed_on DESC LIMIT 1""",
            [ids],
        ).fetchall()
        if change:
            c = change[0]
            why += f"; last change {c[1]} -> {c[2]} on {c[0]} ({c[3]}, metric {c[4]})"
        lines.append(f"Tier: {tier} ({why}{'; held until ' + str(expires) if expires else ''})")
        lines.append(f"Linked: Smile.io {smile or '-'}, LoyaltyLion {lion or '-'}, Salesforce {sf or '-'}")
    entries = conn.execute(
        """SELECT e.booked_on, e.available_on, e.kind, e.points, coalesce(e.order_key, e.source || ':' || e.source_ref),
                  e.description, e.entry_id
           FROM ledger_entries e WHERE e.member_id = ? ORDER BY e.booked_on, e.occurred_at, e.entry_id""",
        [member],
    ).fetchall()
    # the refunds each order entry counted first: those its booking knew (dated up to the state it
    # valued, mapped before it was journaled) that the order's previous entry did not (a refund fetched
    # late for a closed day counts on the entry that booked it, not on an earlier one it predates)
    refunds = dict(conn.execute(
        """WITH e AS (
               SELECT e.entry_id, e.order_key, e.occurred_at, j.journaled_at,
                      lag(e.occurred_at) OVER w AS prev_at, lag(j.journaled_at) OVER w AS prev_journaled
               FROM ledger_entries e JOIN ledger_journal j USING (entry_id)
               WHERE e.member_id = ? AND e.order_key IS NOT NULL AND e.kind IN ('earn', 'adjust', 'clawback')
               WINDOW w AS (PARTITION BY e.order_key ORDER BY e.booked_on, j.journaled_at, e.occurred_at, e.entry_id))
           SELECT e.entry_id, string_agg(DISTINCT r.refund_key, ', ' ORDER BY r.refund_key)
           FROM e JOIN refund_versions r ON r.order_key = e.order_key AND r.counts
                AND r.updated_at <= e.occurred_at AND r.mapped_at <= e.journaled_at
                AND NOT coalesce(r.updated_at <= e.prev_at AND r.mapped_at <= e.prev_journaled, FALSE)
           GROUP BY e.entry_id""",
        [member],
    ).fetchall())
    pushes = {}
    for entry_id, target, state, sent_at in conn.execute(
        """SELECT oe.entry_id, o.target, o.status, o.sent_at FROM outbox_entries oe JOIN outbox o USING (batch_id)
           WHERE o.member_id IN (SELECT unnest(?))""",
        [ids],
    ).fetchall():
        pushes.setdefault(entry_id, []).append(f"{target} {state}{' ' + f'{sent_at:%Y-%m-%d %H:%M}' if sent_at else ''}")
    for entry_id, pushed_at in conn.execute(
        """SELECT record_key, pushed_at FROM sync_state WHERE target = 'salesforce' AND object IN ('Loyalty_Transaction__c', 'Task')
           AND record_key IN (SELECT entry_id FROM ledger_entries WHERE member_id = ?)""",
        [member],
    ).fetchall():
        pushes.setdefault(entry_id, []).append(f"salesforce sent {pushed_at:%Y-%m-%d %H:%M}")
    lines.append(f"Entries ({len(entries)}):")
    running = 0
    for booked, available, kind, points, ref, description, entry_id in entries:
        running += points
        avail = "" if available == booked else f" (spendable from {available})"
        sent = "; ".join(pushes.get(entry_id, [])) or "not pushed"
        counted = f" (refund {refunds[entry_id]})" if entry_id in refunds else ""
        lines.append(f"  {booked} {kind:8s} {points:+7d} = {running:7d}  {ref}{counted}{avail}")
        lines.append(f"      {description or ''} [{entry_id}; {sent}]")
    lines.append(f"Sum of entries: {running}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- forget

# fields whose every text is personal, by key, on every platform (Magento postcode, BigCommerce zip,
# commercetools postalCode/building/apartment, the shopper's IP address, a VAT id)
PERSONAL_KEY = re.compile(r"(name|phone|telephone|fax|street|address1|address2|postcode|postal|zip|building|apartment"
                          r"|city|birth|dob|company|remote_ip|ip_address|customer_ip|forwarded|taxvat|vat_id)",
                          re.IGNORECASE)


def pseudonym(program_id: str, member_id: str) -> str:
    return f"forgotten-{hashlib.sha256(f'{program_id}|{member_id}'.encode()).hexdigest()[:12]}@example.invalid"


def email_pattern(emails: set[str]) -> re.Pattern:
    """The member's e-mails as whole addresses, whatever their case: jane@example.com, not the end of
    maryjane@example.com (another shopper, whose records stay as they are)."""
    alternatives = "|".join(re.escape(e) for e in sorted(emails, key=len, reverse=True)) or r"(?!)"
    return re.compile(rf"(?<![\w.%+-])(?:{alternatives})(?![\w.-]*\w)", re.IGNORECASE)


def _scrub(value, emails: re.Pattern, alias: str):
    """Personal data out of one JSON value: the member's e-mails anywhere, names/phones/addresses by key."""
    if isinstance(value, dict):
        return {k: (_blank(v) if PERSONAL_KEY.search(k) else _scrub(v, emails, alias)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, emails, alias) for v in value]
    if isinstance(value, str) and emails.search(value):
        return alias if emails.fullmatch(value.strip()) else emails.sub(alias, value)
    return value



def scrub_profile(record: dict, alias: str) -> dict:
    """A forgotten member's profile as a loyalty platform or the CRM sends it again (our own pushes
    change it, so the next pull fetches a new version): every address its alias, names, phones and
    addresses blanked, as forget left the earlier versions."""
    return _scrub(record, EMAIL_IN_TEXT, alias)

def _record_of(table: str, pk: list) -> tuple:
    """(source, tenant, record id) of a raw row, or of a quarantine row's version key
    (`tenant:record_id@time#hash`, normalize.version_key)."""
    if table == "raw_records":
        return pk[0], pk[1], pk[2]
    tenant, _, rest = str(pk[1]).partition(":")
    return pk[0], tenant, rest.rpartition("@")[0]


def _blank(value):
    """Every text inside a personal field (a street may be a list of lines)."""
    if isinstance(value, str):
        return "forgotten" if value else value
    if isinstance(value, list):
        return [_blank(v) for v in value]
    if isinstance(value, dict):
        return {k: _blank(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Erasure:
    member_id: str
    pseudonym: str
    rows_rewritten: dict[str, int]
    deletions_queued: int


def forget(conn: duckdb.DuckDBPyConnection, email: str, program_id: str) -> Erasure:
    """Pseudonymize the member everywhere in the warehouse (amounts and keys stay usable), record the
    erasure, and queue deletions in the targets that hold the member. The one permitted in-place
    rewrite of the append-only tables."""
    import simplejson

    member = find_member(conn, email)
    ids = member_ids(conn, member)
    alias = pseudonym(program_id, member)
    emails = {r[0] for r in conn.execute(
        "SELECT key FROM member_keys WHERE member_id IN (SELECT unnest(?)) AND key_type = 'email'", [ids]).fetchall()}
    keys = {r[0] for r in conn.execute("SELECT key FROM member_keys WHERE member_id IN (SELECT unnest(?))", [ids]).fetchall()}
    counts: dict[str, int] = {}
    conn.execute("BEGIN")
    try:
        # the member's own records (its orders and accounts, found through identity), and anything
        # else that mentions one of its e-mails
        own = {tuple(r) for r in conn.execute(
            """SELECT platform || '.orders', tenant, source_id FROM order_versions
               WHERE customer_key IN (SELECT unnest($keys)) OR email IN (SELECT unnest($emails))
               UNION SELECT platform || '.customers', split_part(customer_key, ':', 2), source_id FROM customer_versions
               WHERE customer_key IN (SELECT unnest($keys)) OR email IN (SELECT unnest($emails))""",
            {"keys": sorted(keys), "emails": sorted(emails)}).fetchall()}
        pattern = email_pattern(emails)
        for table, key_cols in (("raw_records", "source, tenant, record_id, modified_at, payload_hash"),
                                ("quarantine", "source, version_key, reason")):
            rows = conn.execute(f"SELECT {key_cols}, payload FROM {table} WHERE payload IS NOT NULL").fetchall()
            changed = 0
            for *pk, payload in rows:
                text = str(payload)
                # her records (also their quarantined versions, which may carry no e-mail), and any
                # other that names one of her addresses
                if _record_of(table, pk) not in own and not pattern.search(text):
                    continue
                scrubbed = simplejson.dumps(_scrub(json.loads(text, parse_float=Decimal), pattern, alias),
                                            use_decimal=True, sort_keys=True, separators=(",", ":"))
                where = " AND ".join(f"{c.strip()} = ?" for c in key_cols.split(","))
                conn.execute(f"UPDATE {table} SET payload = ? WHERE {where}", [scrubbed, *pk])
                changed += 1
            counts[table] = changed
        for table in ("order_versions", "customer_versions", "order_facts", "member_status", "member_emails"):
            counts[table] = conn.execute(
                f"UPDATE {table} SET email = ? WHERE lower(trim(email)) IN (SELECT unnest(?))", [alias, sorted(emails)]
            ).fetchone()[0]
        counts["order_versions_phone"] = conn.execute(
            "UPDATE order_versions SET phone = 'forgotten' WHERE phone IS NOT NULL AND "
            "(email = ? OR customer_key IN (SELECT unnest(?)))", [alias, sorted(keys)]
        ).fetchone()[0]
        # the parsed phones (identity.phone_keys) no version holds any more: the member's own; a phone
        # another shopper's orders still carry stays, as identity would parse it again from them
        counts["phone_keys"] = conn.execute(
            """DELETE FROM phone_keys p WHERE NOT EXISTS (
                   SELECT 1 FROM order_versions v WHERE v.phone = p.phone AND v.phone_region IS NOT DISTINCT FROM p.region)"""
        ).fetchone()[0]
        phones = [r[0] for r in conn.execute(
            "SELECT key FROM member_keys WHERE member_id IN (SELECT unnest(?)) AND key_type = 'phone'", [ids]).fetchall()]
        counts["member_key_moves"] = 0
        renamed: dict[str, str] = {}  # her phone and e-mail keys -> their pseudonyms, as member_keys has them
        for n, key in enumerate(phones):
            renamed[key] = f"tel:{alias}#{n}"
            conn.execute("UPDATE member_keys SET key = ? WHERE key = ?", [f"tel:{alias}#{n}", key])
            conn.execute("UPDATE identity_conflicts SET key = ? WHERE key = ?", [f"tel:{alias}#{n}", key])
            counts["member_key_moves"] += conn.execute(
                "UPDATE member_key_moves SET key = ? WHERE key = ?", [f"tel:{alias}#{n}", key]).fetchone()[0]
        counts["member_keys"] = 0
        for e in sorted(emails):
            target_key = alias if counts["member_keys"] == 0 else f"{alias}#{counts['member_keys']}"
            renamed[e] = target_key
            counts["member_key_moves"] += conn.execute(
                "UPDATE member_key_moves SET key = ? WHERE key = ?", [target_key, e]).fetchone()[0]
            counts["member_keys"] += conn.execute("UPDATE member_keys SET key = ? WHERE key = ?", [target_key, e]).fetchone()[0]
        # the keys a merge named as its evidence (', '-separated), hers as member_keys now has them
        counts["member_merges"] = conn.execute(
            """UPDATE member_merges SET evidence = array_to_string(list_transform(string_split(evidence, ', '),
                   lambda k: coalesce(map_extract_value(MAP(CAST($old AS VARCHAR[]), CAST($new AS VARCHAR[])), k), k)), ', ')
               WHERE list_has_any(string_split(evidence, ', '), CAST($old AS VARCHAR[]))""",
            {"old": list(renamed), "new": list(renamed.values())}).fetchone()[0] if renamed else 0
        for column in ("referrer_email", "friend_email"):
            counts[f"referrals_{column}"] = conn.execute(
                f"UPDATE referrals SET {column} = ? WHERE lower(trim({column})) IN (SELECT unnest(?))", [alias, sorted(emails)]
            ).fetchone()[0]
        counts["sync_log"] = conn.execute(
            "UPDATE sync_log SET payload_summary = regexp_replace(payload_summary, 'email=[^ ]*', 'email=forgotten') "
            "WHERE record_key IN (SELECT batch_id FROM outbox WHERE member_id IN (SELECT unnest(?)))", [ids]
        ).fetchone()[0]
        counts["identity_conflicts"] = conn.execute(
            "UPDATE identity_conflicts SET key = ? WHERE key IN (SELECT unnest(?))", [alias, sorted(emails)]
        ).fetchone()[0]
        targets = conn.execute(
            """SELECT split_part(key, ':', 1), split_part(key, ':', 3) FROM member_keys
               WHERE member_id IN (SELECT unnest(?)) AND key_type IN ('smile_customer_id', 'loyaltylion_customer_id',
                                                                       'salesforce_id')""",
            [ids],
        ).fetchall()
        # the CRM records our pushes created: known by our external id until a pull reads their Ids back
        # (the REST resource a deletion calls: sobjects/<object>/<external id field>/<member id>)
        targets += [("salesforce", f"{obj}/{'Loyalty_Member_Id__pc' if obj == 'Account' else 'Loyalty_Member_Id__c'}/{key}")
                    for obj, key in conn.execute(
                        """SELECT DISTINCT object, record_key FROM sync_state WHERE target = 'salesforce'
                           AND object IN ('Contact', 'Lead', 'Account') AND record_key IN (SELECT unnest(?))
                           ORDER BY 1, 2""", [ids]).fetchall()]
        now = dt.datetime.now(dt.UTC)
        for target, external_id in targets:
            conn.execute("INSERT INTO deletion_requests VALUES (?, ?, ?, 'queued', ?) ON CONFLICT DO NOTHING",
                         [target, external_id, member, now])
        # a member forgotten again (a registered shopper who ordered since) has its last erasure recorded
        conn.execute("""INSERT INTO erasures VALUES (?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE
                        SET erased_at = excluded.erased_at, rows_rewritten = excluded.rows_rewritten""",
                     [member, alias, now, json.dumps(counts, sort_keys=True)])
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return Erasure(member, alias, counts, len(targets))
