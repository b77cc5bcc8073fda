"""Identity resolution (RULES.md §8): keys → connected components → stable member ids.

Components that are simply new members (no key owned yet, at most one customer id per platform
tenant) are found in SQL; the others go through a union-find over keys. The guard refuses any link
that would put two different registered customer ids of the same platform tenant in one member
through email alone (a shared family address); the refusal is recorded as a conflict. Member ids
never change once given; when components join, the oldest member survives and the merge is recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from loyalty_assets.lib.program import Program
from loyalty_assets.lib.warehouse import first_fill, registered

# records in scope from which new members' components are found in SQL: its dozen statements cost
# more than the union-find below that (0.05 s of a 0.08 s day at 100k orders), far less above
SQL_COMPONENTS_MIN = 20_000
TARGET_KEY_TYPES = {"smile": "smile_customer_id", "loyaltylion": "loyaltylion_customer_id",
                    "salesforce": "salesforce_id"}


def key_type(key: str) -> str:
    if key.startswith("tel:"):
        return "phone"
    if "@" in key and key.count(":") < 2:
        return "email"
    return TARGET_KEY_TYPES.get(key.split(":", 1)[0], "customer_id")


# the key prefix of every Lead id, the same in every Salesforce org (Contacts' is 003)
LEAD_PREFIX = "00Q"


def tenant_of(customer_key: str) -> str:
    """What the guard keeps apart: two registered customers of one platform tenant."""
    platform, tenant, _native = customer_key.split(":", 2)
    return f"{platform}:{tenant}"


def guarded(key: str) -> bool:
    """Whether the family-address guard applies to a key (RULES.md §8): a commerce platform's customer
    id. Smile.io, LoyaltyLion and Salesforce ids are not: their e-mail is lookup evidence, and two of
    them sharing an address (a CRM's duplicate Contacts or Leads, two loyalty accounts of one person)
    are one shopper, not a family. A record known by such an id and a contested address joins the
    oldest of the address's members."""
    return key_type(key) == "customer_id"


@dataclass
class _Components:
    parent: dict[str, str] = field(default_factory=dict)
    customers: dict[str, dict[str, str]] = field(default_factory=dict)  # root -> tenant -> customer key

    def add(self, key: str) -> None:
        if key not in self.parent:
            self.parent[key] = key
            self.customers[key] = {tenant_of(key): key} if guarded(key) else {}

    def find(self, key: str) -> str:
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def clash(self, ra: str, rb: str) -> list[tuple[str, str]]:
        """Customer keys of one tenant on both sides, between the components of roots ra and rb."""
        ca, cb = self.customers[ra], self.customers[rb]
        common = ca.keys() & cb.keys()
        return [(ca[t], cb[t]) for t in sorted(common) if ca[t] != cb[t]] if common else []

    def union(self, ra: str, rb: str) -> None:
        """Join the components of roots ra and rb (different)."""
        if ra > rb:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.customers[ra] = {**self.customers.pop(rb), **self.customers[ra]}


@dataclass(frozen=True)
class IdentitySummary:
    members: int
    new_members: int
    new_keys: int
    merges: int
    conflicts: int


def phone_key(raw: object, region: object) -> str | None:
    """`tel:+<E.164>` for a number of a possible full length (national numbers read in the address's
    country), else None. Not only "valid" ones: phonenumbers refuses ranges not assigned yet, such as
    the fictional 555 numbers shops and test data use; a number too short to dial from abroad (a
    local-only one) is no E.164 key."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, str(region).upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return "tel:" + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def new_member_id(program: Program, seed_key: str) -> str:
    return "M" + hashlib.sha256(f"{program.program_id}|{seed_key}".encode()).hexdigest()[:15].upper()


def resolve_members(conn: duckdb.DuckDBPyConnection, program: Program, day: dt.date,
                    scoped: bool = True, components_in_sql: bool | None = None) -> IdentitySummary:
    """Bring member_keys, member_merges and identity_conflicts up to date with every known record.

    `scoped=False` rebuilds every member from all records; `components_in_sql` resolves the new
    members' components in SQL (True), all in Python (False), or in SQL from SQL_COMPONENTS_MIN
    records in scope (None); the tests compare the ways."""
    started = conn.execute("SELECT now()").fetchall()[0][0]
    _records_in_scope(conn, program, scoped)
    if components_in_sql is None:
        in_scope = conn.execute("SELECT count(*) FROM id_scope_rids").fetchall()[0][0]
        components_in_sql = in_scope >= SQL_COMPONENTS_MIN
    fast_members, fast_keys = _new_components_in_sql(conn, program) if components_in_sql else (0, 0)
    records = conn.execute(
        """SELECT email, customer_key, phone_key, first_seen FROM id_records
           WHERE rid IN (SELECT rid FROM id_scope_rids)""" + (
            " AND rid NOT IN (SELECT rid FROM id_fast_rids)" if components_in_sql else "") + """
           ORDER BY first_seen, customer_key NULLS LAST, email, phone NULLS LAST"""
    ).fetchall()
    first_seen: dict[str, dt.datetime] = {}
    for email, customer_key, phone, seen in records:
        for key in (customer_key, email, phone):
            if key and (key not in first_seen or seen < first_seen[key]):
                first_seen[key] = seen

    cannot = {frozenset(pair) for pair in program.identity.cannot_link}
    comps = _Components()
    for key in first_seen:
        comps.add(key)
    _anchor_crm_people(conn, comps, first_seen)
    # conflict key -> (the contested key, the customer/manual keys on each side, reason)
    conflicts: dict[str, tuple[str, list[str], str]] = {}

    def link(a: str, b: str, forced: bool = False) -> None:
        ra, rb = comps.find(a), comps.find(b)
        if ra == rb:
            return
        blocked = [
            sorted(p)
            for p in cannot
            if len(p) == 2 and {comps.find(k) for k in p if k in comps.parent} == {ra, rb}
        ]
        clashes = [] if forced else comps.clash(ra, rb)
        if blocked or clashes:
            contested = b if key_type(b) in ("email", "phone") else a
            sides = list(blocked[0]) if blocked else [clashes[0][0], clashes[0][1]]
            reason = "cannot_link" if blocked else f"same_tenant_customers_share_{key_type(contested)}"
            conflicts.setdefault(f"{contested}|{'|'.join(sides)}", (contested, sides, reason))
            return
        comps.union(ra, rb)

    stored = conn.execute(
        "SELECT key, member_id, first_seen_at FROM member_keys WHERE key IN (SELECT key FROM id_scope_keys)").fetchall()
    existing = {k: m for k, m, _ in stored}
    resolution = dict(conn.execute("SELECT member_id, survivor_id FROM member_resolution").fetchall())
    member_seen = dict(conn.execute(
        """SELECT member_id, min(first_seen_at) FROM member_keys
           WHERE member_id IN (SELECT member_id FROM id_scope_members) GROUP BY 1""").fetchall())

    # Registered identities first, so a shared email cannot glue two customers together before
    # each has its own component; the customers oldest first (RULES.md §8: a contested email stays
    # with the oldest member, by the earliest sighting of its keys: the customer's, its uncontested
    # emails', its stored member's), not the first record to use the email.
    pairs = [(email, customer_key, seen) for email, customer_key, _phone, seen in records if email and customer_key]
    tenants_of_email: dict[str, set[str]] = {}
    for email, customer_key, _ in pairs:
        tenants_of_email.setdefault(email, set()).add(customer_key)
    contested = {e for e, cks in tenants_of_email.items()
                 if len({tenant_of(ck) for ck in cks if guarded(ck)}) < len({ck for ck in cks if guarded(ck)})}
    customer_age: dict[str, dt.datetime] = {}
    for email, customer_key, _ in pairs:
        ages = [first_seen[customer_key]] + ([] if email in contested else [first_seen[email]])
        owner = existing.get(customer_key)
        if owner is not None:
            owner = resolution.get(owner, owner)
            ages += [member_seen[owner]] if owner in member_seen else []
        customer_age[customer_key] = min([*ages, customer_age.get(customer_key, ages[0])])
    for email, customer_key, _ in sorted(pairs, key=lambda p: (customer_age[p[1]], p[2], p[1], p[0])):
        link(customer_key, email)
    # phones likewise: a contested phone stays with the oldest customer, not the first to use it
    phone_links = [(customer_key or email, phone, seen) for email, customer_key, phone, seen in records
                   if phone and (customer_key or email)]
    for owner, phone, _ in sorted(phone_links, key=lambda r: (customer_age.get(r[0], first_seen[r[0]]), r[2], r[0], r[1])):
        link(owner, phone)
    for a, b in program.identity.must_link:
        comps.add(a)
        comps.add(b)
        first_seen.setdefault(a, dt.datetime.now(dt.UTC))
        first_seen.setdefault(b, dt.datetime.now(dt.UTC))
        link(a, b, forced=True)
    # a record older than its key's stored first sighting (fetched late) makes the key, and its member,
    # older: the survivor of a later merge is then the one a run over every record would choose
    lowered = [(k, first_seen[k]) for k, _m, seen in stored if k in first_seen and first_seen[k] < seen]
    for k, seen in lowered:
        owner = resolution.get(existing[k], existing[k])
        member_seen[owner] = min(member_seen.get(owner, seen), seen)

    groups: dict[str, list[str]] = {}
    for key in first_seen:
        groups.setdefault(comps.find(key), []).append(key)
    for keys in groups.values():
        keys.sort(key=lambda k: (first_seen[k], k))
    lost = _split_members(list(groups.values()), existing, resolution, {k: s for k, _, s in stored})
    taken: set[str] = set()

    def split_id(keys: list[str]) -> str:
        """The id of a member split off another: not one given before (its first key may have named
        the member it leaves)."""
        for seed in [*keys, *(f"{keys[0]}#{n}" for n in range(1, 100))]:
            mid = new_member_id(program, seed)
            if mid not in taken and not conn.execute(
                    "SELECT 1 FROM member_keys WHERE member_id = $m UNION ALL SELECT 1 FROM member_merges "
                    "WHERE absorbed_id = $m OR survivor_id = $m LIMIT 1", {"m": mid}).fetchall():
                taken.add(mid)
                return mid
        raise RuntimeError(f"no free member id for {keys[0]}")

    erased = {r[0] for r in conn.execute("SELECT member_id FROM erasures").fetchall()}
    new_keys, merges, assignments = [], [], []
    final: dict[str, str] = {}
    new_members = 0
    for i, keys in enumerate(groups.values()):
        owners = {resolution.get(existing[k], existing[k]) for k in keys if k in existing} - lost.get(i, set())
        if not owners:
            fresh = new_member_id(program, keys[0])
            # a forgotten member keeps its id, the hash of its erased first key: a shopper of that key
            # coming back is a new member with an id of its own (split_id: the next free one)
            survivor = split_id(keys) if i in lost or fresh in erased else fresh
            new_members += 1
        else:
            survivor = min(owners, key=lambda m: (member_seen.get(m, first_seen[keys[0]]), m))
            for absorbed in sorted(owners - {survivor}):
                linking = sorted(k for k in keys if existing.get(k) is None)
                rule = (
                    "must_link"
                    if any(frozenset((a, b)) & set(keys) for a, b in program.identity.must_link)
                    else "shared_key"
                )
                merges.append((survivor, absorbed, rule, ", ".join(linking[:5]) or ", ".join(keys[:5]), day))
        for k in keys:
            final[k] = survivor
            if k not in existing:
                new_keys.append((survivor, k, key_type(k), first_seen[k]))
            elif resolution.get(existing[k], existing[k]) != survivor or existing[k] != survivor:
                assignments.append((survivor, k))

    with first_fill(conn, "member_keys") as check_keys:  # a first run's 300k keys: the index after them
        _write_members(conn, started, day, fast_keys, new_keys, merges, assignments, existing, conflicts, final,
                       check_keys, program.identity.match_phone, lowered)
    total = conn.execute(
        "SELECT count(DISTINCT member_id) FROM member_keys WHERE member_id NOT IN (SELECT absorbed_id FROM member_merges)"
    ).fetchall()[0][0]  # fetched to the end: the connection is free for the caller's next statement
    return IdentitySummary(total, new_members + fast_members, len(new_keys) + fast_keys, len(merges), len(conflicts))


def _anchor_crm_people(conn: duckdb.DuckDBPyConnection, comps: _Components, first_seen: dict) -> None:
    """CRM Contacts and Leads our pushes made name their member (Loyalty_Member_Id__c): each joins that
    member (its survivor after merges) by the member's oldest key in scope, also when neither its id
    nor its address is a key yet (a CRM user edited it before our first pull); its e-mail links as any
    record's (a CRM edit to a new address stays with it). Pulled back after a merge, the absorbed
    member's Contact stays with the survivor."""
    if not conn.execute("SELECT EXISTS (FROM id_crm_named)").fetchall()[0][0]:
        return
    refs = conn.execute(
        """WITH named AS (SELECT * FROM id_crm_named WHERE customer_key IN (SELECT key FROM id_scope_keys)),
           owned AS (
               SELECT k.key, coalesce(r.survivor_id, k.member_id) AS member_id FROM member_keys k
               LEFT JOIN member_resolution r ON r.member_id = k.member_id
               WHERE k.key IN (SELECT key FROM id_scope_keys) AND NOT starts_with(k.key, 'salesforce:'))
           SELECT n.customer_key, o.key FROM named n JOIN owned o USING (member_id)""").fetchall()
    anchors: dict[str, str] = {}
    for crm_key, key in refs:
        if crm_key in comps.parent and key in first_seen:
            best = anchors.get(crm_key)
            if best is None or (first_seen[key], key) < (first_seen[best], best):
                anchors[crm_key] = key
    for crm_key, anchor in sorted(anchors.items()):
        root = comps.find(crm_key)
        ra, rb = comps.find(anchor), root
        if ra != rb:
            comps.union(ra, rb)


def _any_crm_named(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether any CRM record names a member (most warehouses have none: the lookups are skipped)."""
    return conn.execute(
        "SELECT EXISTS (FROM customer_versions WHERE platform = 'salesforce' AND member_ref IS NOT NULL)").fetchall()[0][0]


def _crm_named(conn: duckdb.DuckDBPyConnection) -> None:
    """id_crm_named (customer_key, member_id): the CRM records of id_records whose latest version names
    a member (Loyalty_Member_Id__c, our pushes write it), with that member's survivor after merges."""
    any_named = _any_crm_named(conn)
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_crm_named AS
           WITH latest AS (
               SELECT customer_key, arg_max(member_ref, updated_at) AS member_ref FROM customer_versions
               WHERE platform = 'salesforce' AND customer_key IN (SELECT customer_key FROM id_records) GROUP BY 1)
           SELECT l.customer_key, coalesce(r.survivor_id, l.member_ref) AS member_id FROM latest l
           LEFT JOIN member_resolution r ON r.member_id = l.member_ref WHERE l.member_ref IS NOT NULL AND $any""",
        {"any": any_named})


def _split_members(groups: list[list[str]], existing: dict[str, str], resolution: dict[str, str],
                   stored_seen: dict[str, dt.datetime]) -> dict[int, set[str]]:
    """Members whose keys now fall in several components (a record arriving late that a same-tenant
    guard or a cannot_link refuses to join, RULES.md §8): the member id stays with one of them, the
    one holding its oldest customer id (else its oldest key), and the others become new members.
    Returns, per group index, the member ids it gives up."""
    claims: dict[str, list[int]] = {}
    for i, keys in enumerate(groups):
        for member in {resolution.get(existing[k], existing[k]) for k in keys if k in existing}:
            claims.setdefault(member, []).append(i)
    lost: dict[int, set[str]] = {}
    for member, claimants in claims.items():
        if len(claimants) < 2:
            continue

        def rank(i: int, member: str = member) -> tuple:
            own = [k for k in groups[i] if k in existing and resolution.get(existing[k], existing[k]) == member]
            customers = [stored_seen[k] for k in own if key_type(k) not in ("email", "phone")]
            return (not customers, min(customers or [stored_seen[k] for k in own]), min(own))

        keep = min(claimants, key=rank)
        for i in claimants:
            if i != keep:
                lost.setdefault(i, set()).add(member)
    return lost


def _write_members(conn: duckdb.DuckDBPyConnection, started: dt.datetime, day: dt.date, fast_keys: int,
                   new_keys: list, merges: list, assignments: list, existing: dict, conflicts: dict, final: dict,
                   check_keys: Callable[[], None], phones: bool, lowered: list) -> None:
    """The run's writes, in one transaction."""
    conn.execute("BEGIN")
    try:
        if fast_keys:
            conn.execute(  # in key order, as the journal (ledger.py)
                "INSERT INTO member_keys SELECT member_id, key, key_type, first_seen FROM id_fast_keys ORDER BY key")
        # set-based writes: executemany costs milliseconds a row in DuckDB
        if new_keys:
            _insert_frame(conn, "INSERT INTO member_keys SELECT * FROM _frame",
                          new_keys, ["member_id", "key", "key_type", "first_seen_at"])
        if merges:
            _insert_frame(conn, "INSERT INTO member_merges SELECT * FROM _frame ON CONFLICT DO NOTHING",
                          merges, ["survivor_id", "absorbed_id", "rule", "evidence", "merged_on"])
        if lowered:
            _insert_frame(conn, "UPDATE member_keys k SET first_seen_at = f.first_seen_at FROM _frame f WHERE k.key = f.key",
                          lowered, ["key", "first_seen_at"])
        if assignments:
            _insert_frame(conn, "UPDATE member_keys k SET member_id = f.member_id FROM _frame f WHERE k.key = f.key",
                          assignments, ["member_id", "key"])
            _insert_frame(conn, "INSERT INTO member_key_moves SELECT key, from_member_id, member_id, now() FROM _frame",
                          [(m, k, existing[k]) for m, k in assignments], ["member_id", "key", "from_member_id"])
        for contested, sides, reason in conflicts.values():
            members = sorted({final[k] for k in sides if k in final})
            cid = hashlib.sha256(f"{contested}|{'|'.join(sides)}".encode()).hexdigest()[:16]
            conn.execute(
                "INSERT INTO identity_conflicts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    cid,
                    contested,
                    key_type(contested),
                    ",".join(members),
                    f"{reason}: {' vs '.join(sides)}",
                    day,
                ],
            )
        for name in ("identity", "identity_phones") if phones else ("identity",):
            conn.execute(
                """INSERT INTO refresh_state VALUES (?, ?, NULL) ON CONFLICT (name) DO UPDATE
                   SET refreshed_at = excluded.refreshed_at""",
                [name, started],
            )
        check_keys()
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def _named_keys(program: Program) -> list[str]:
    """The keys the program names (must_link, cannot_link)."""
    return sorted({k for pair in (*program.identity.must_link, *program.identity.cannot_link) for k in pair})


def _records_in_scope(conn: duckdb.DuckDBPyConnection, program: Program, scoped: bool) -> None:
    """The records (email, customer key, phone key, first seen) whose members can change: every
    record with a key not in member_keys or keys of two members, and every record of
    the members those keys belong to (and of keys the program names). The other members' records would
    rebuild exactly what member_keys holds, so a run costs what is new, not the history.

    Leaves temp tables id_records (records with their phone keys), id_scope_rids (those in
    scope), id_record_owner, id_scope_keys (the keys of those records) and id_scope_members."""
    # keys the program names (must_link, cannot_link): their members are always resolved again, so a
    # changed configuration applies as a rebuild would apply it
    named = _named_keys(program)
    phones = program.identity.match_phone
    since = None
    if scoped:
        # with phones, from the last run that had them: the records mapped since then have phones no
        # run has read as keys (no such run yet: every record is read)
        state = conn.execute("SELECT refreshed_at FROM refresh_state WHERE name = ?",
                             ["identity_phones" if phones else "identity"]).fetchall()
        since = state[0][0] if state else None
    if phones:
        _parse_phones(conn, since)
    if since is None:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE id_records AS {_records_sql('TRUE', 'TRUE', phones)}")
    else:
        _records_near_new(conn, since, named, phones)
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_record_owner AS
           WITH rk AS (SELECT rid, unnest([email, customer_key, phone_key]) AS key FROM id_records)
           SELECT rk.rid, rk.key, coalesce(res.survivor_id, k.member_id) AS member_id FROM rk
           LEFT JOIN member_keys k ON k.key = rk.key LEFT JOIN member_resolution res ON res.member_id = k.member_id
           WHERE rk.key IS NOT NULL"""
    )
    _crm_named(conn)
    # with the members CRM records in scope name: a Contact of ours whose address a CRM user changed
    # before the first pull has no key anyone owns, and still joins the member it names
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE id_scope_members AS
           WITH seeds AS (SELECT rid FROM id_record_owner GROUP BY rid HAVING {_IS_SEED})
           SELECT DISTINCT member_id FROM id_record_owner
           WHERE (NOT $scoped OR rid IN (SELECT rid FROM seeds)) AND member_id IS NOT NULL
           UNION
           SELECT coalesce(res.survivor_id, k.member_id) FROM member_keys k
           LEFT JOIN member_resolution res ON res.member_id = k.member_id WHERE k.key IN (SELECT unnest($named))
           UNION
           SELECT n.member_id FROM id_crm_named n JOIN id_records r ON r.customer_key = n.customer_key
           WHERE NOT $scoped OR r.rid IN (SELECT rid FROM seeds)""",
        {"named": named, "scoped": scoped},
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE id_scope_rids AS
           SELECT rid FROM id_record_owner GROUP BY rid
           HAVING NOT $scoped OR {_IS_SEED}
               OR bool_or(member_id IN (SELECT member_id FROM id_scope_members))""",
        {"scoped": scoped},
    )
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_scope_keys AS
           SELECT DISTINCT key FROM id_record_owner WHERE rid IN (SELECT rid FROM id_scope_rids)
           UNION SELECT unnest($named)""",
        {"named": named},
    )


# key_type() in SQL
_KEY_TYPE_SQL = """CASE WHEN starts_with(key, 'tel:') THEN 'phone'
    WHEN contains(key, '@') AND length(key) - length(replace(key, ':', '')) < 2 THEN 'email'
    ELSE CASE split_part(key, ':', 1) WHEN 'smile' THEN 'smile_customer_id' WHEN 'loyaltylion' THEN 'loyaltylion_customer_id'
                                      WHEN 'salesforce' THEN 'salesforce_id' ELSE 'customer_id' END END"""


def _new_components_in_sql(conn: duckdb.DuckDBPyConnection, program: Program) -> tuple[int, int]:
    """Resolve in SQL the components of the records in scope that the union-find would make new
    members of, unchanged: no key owned yet, none the program names, and at most one customer key
    per platform tenant (then no link is ever refused, whatever the order). Each becomes one member
    seeded by its first-seen key, as resolve_members does it. Temp tables id_fast_keys (member_id,
    key, key_type, first_seen) and id_fast_rids (their records, left out of the Python pass);
    returns (members, keys). At 1M orders identity took 4.3 s with every component in Python, 2.2 s so.

    Components by minimum-label propagation with pointer jumping: a key's label is the least key
    it reaches, which the loop finds in about log(diameter) rounds."""
    named = _named_keys(program)
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_fast_records AS   -- an empty key is no key, as in Python
           SELECT rid, nullif(email, '') AS email, nullif(customer_key, '') AS customer_key,
                  nullif(phone_key, '') AS phone_key, first_seen
           FROM id_records WHERE rid IN (SELECT rid FROM id_scope_rids)""")
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_fast_edges AS
           WITH e AS (
               SELECT customer_key AS a, email AS b FROM id_fast_records WHERE customer_key IS NOT NULL AND email IS NOT NULL
               UNION SELECT coalesce(customer_key, email), phone_key FROM id_fast_records
               WHERE phone_key IS NOT NULL AND coalesce(customer_key, email) IS NOT NULL)
           SELECT a, b FROM e UNION SELECT b, a FROM e""")
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_fast_seen AS
           SELECT key, min(first_seen) AS first_seen FROM (
               SELECT email AS key, first_seen FROM id_fast_records
               UNION ALL SELECT customer_key, first_seen FROM id_fast_records
               UNION ALL SELECT phone_key, first_seen FROM id_fast_records)
           WHERE key IS NOT NULL GROUP BY key""")
    conn.execute("CREATE OR REPLACE TEMP TABLE id_fast_label AS SELECT key, key AS label FROM id_fast_seen")
    while True:
        conn.execute(
            """CREATE OR REPLACE TEMP TABLE id_fast_next AS
               WITH nb AS (SELECT e.a AS key, min(l.label) AS m FROM id_fast_edges e JOIN id_fast_label l ON l.key = e.b
                           GROUP BY e.a),
               step AS (SELECT l.key, least(l.label, coalesce(nb.m, l.label)) AS label
                        FROM id_fast_label l LEFT JOIN nb USING (key))
               SELECT s.key, least(s.label, j.label) AS label FROM step s JOIN step j ON j.key = s.label""")
        changed = conn.execute(
            """SELECT count(*) FROM id_fast_next n JOIN id_fast_label l USING (key)
               WHERE n.label <> l.label""").fetchall()[0][0]
        conn.execute("DROP TABLE id_fast_label; ALTER TABLE id_fast_next RENAME TO id_fast_label")
        if not changed:
            break
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE id_fast_keys AS
            WITH typed AS (
                SELECT l.label, l.key, s.first_seen, {_KEY_TYPE_SQL} AS key_type
                FROM id_fast_label l JOIN id_fast_seen s USING (key)),
            customers AS (SELECT * FROM typed WHERE key_type = 'customer_id'),   -- guarded()
            unclean AS (
                SELECT label FROM customers WHERE length(key) - length(replace(key, ':', '')) < 2  -- tenant_of() fails
                UNION SELECT label FROM customers   -- two customer keys of one tenant
                GROUP BY label, split_part(key, ':', 1), split_part(key, ':', 2)   -- as tenant_of()
                HAVING count(*) > 1
                UNION SELECT label FROM typed WHERE key IN (SELECT unnest(CAST($named AS VARCHAR[])))
                UNION SELECT label FROM typed WHERE key IN (SELECT key FROM id_record_owner WHERE member_id IS NOT NULL)
                UNION SELECT label FROM typed WHERE key IN (SELECT customer_key FROM id_crm_named)),   -- anchored
            seeds AS (
                SELECT label, arg_min(key, (first_seen, key)) AS seed FROM typed
                WHERE label NOT IN (SELECT label FROM unclean) GROUP BY label)
            SELECT 'M' || upper(substr(sha256($program_id || '|' || s.seed), 1, 15)) AS member_id,
                   t.key, t.key_type, t.first_seen
            FROM typed t JOIN seeds s USING (label)""",
        {"named": named, "program_id": program.program_id},
    )
    # a component whose id a forgotten member keeps (the hash of its erased first key) goes to the
    # union-find, which gives it another (resolve_members)
    conn.execute("DELETE FROM id_fast_keys WHERE member_id IN (SELECT member_id FROM erasures)")
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE id_fast_rids AS
           SELECT rid FROM id_fast_records
           WHERE coalesce(email, customer_key, phone_key) IN (SELECT key FROM id_fast_keys)""")
    return conn.execute("SELECT count(DISTINCT member_id), count(*) FROM id_fast_keys").fetchall()[0]


# a record (grouped by rid with the owners of its keys) is a seed of the resolution when one of its
# keys belongs to no member or its keys belong to two members
_IS_SEED = "count(*) FILTER (WHERE member_id IS NULL) > 0 OR count(DISTINCT member_id) > 1"

def _records_sql(where: str, customer_where: str, phones: bool) -> str:
    """Every distinct record (its keys, first seen) of the order versions matching `where` and the
    customer versions matching `customer_where`, with its phone's key when phones are keys (RULES.md
    §8: E.164, from phone_keys)."""
    return f"""
    SELECT row_number() OVER () AS rid, r.*, p.key AS phone_key FROM (
        SELECT email, customer_key, phone, phone_region, min(updated_at) AS first_seen FROM (
            SELECT email, customer_key, phone, phone_region, updated_at FROM order_versions WHERE {where}
            UNION ALL
            SELECT email, customer_key, NULL, NULL, updated_at FROM customer_versions WHERE {customer_where}
        ) WHERE email IS NOT NULL OR customer_key IS NOT NULL GROUP BY ALL) r
    LEFT JOIN phone_keys p ON {'TRUE' if phones else 'FALSE'} AND p.phone = r.phone
                          AND p.region IS NOT DISTINCT FROM r.phone_region"""


def _parse_phones(conn: duckdb.DuckDBPyConnection, since: dt.datetime | None) -> None:
    """phone_keys := every (phone, region) of the order versions parsed once (phonenumbers costs ~20
    µs a number): those mapped since `since` that it lacks; all of them again when None."""
    if since is None:
        conn.execute("DELETE FROM phone_keys")
    rows = conn.execute(
        """SELECT DISTINCT phone, phone_region FROM order_versions v
           WHERE phone IS NOT NULL AND ($since IS NULL OR mapped_at > $since) AND NOT EXISTS (
               SELECT 1 FROM phone_keys p WHERE p.phone = v.phone AND p.region IS NOT DISTINCT FROM v.phone_region)""",
        {"since": since},
    ).fetchall()
    if rows:
        _insert_frame(conn, "INSERT INTO phone_keys SELECT phone, region, key FROM _frame",
                      [(raw, region, phone_key(raw, region)) for raw, region in rows], ["phone", "region", "key"])


_SEED_KEYS_SQL = """   -- the keys of the seeds among the records: those with a key of no member or keys of two
    WITH owners AS (
        SELECT rid, u.key, coalesce(res.survivor_id, k.member_id) AS member_id
        FROM {records}, unnest([email, customer_key, phone_key]) u(key)
        LEFT JOIN member_keys k ON k.key = u.key LEFT JOIN member_resolution res ON res.member_id = k.member_id
        WHERE u.key IS NOT NULL),
    seeds AS (SELECT rid FROM owners GROUP BY rid HAVING {is_seed})
    SELECT DISTINCT key FROM owners WHERE rid IN (SELECT rid FROM seeds)"""

_OWNED_KEYS_SQL = """   -- every key of the members owning a key of id_keys
    SELECT k.key FROM member_keys k LEFT JOIN member_resolution res ON res.member_id = k.member_id
    WHERE coalesce(res.survivor_id, k.member_id) IN (
        SELECT coalesce(r2.survivor_id, k2.member_id) FROM member_keys k2
        LEFT JOIN member_resolution r2 ON r2.member_id = k2.member_id
        WHERE k2.key IN (SELECT key FROM id_keys))"""


def _records_near_new(conn: duckdb.DuckDBPyConnection, since: dt.datetime, named: list[str], phones: bool) -> None:
    """id_records := the seeds (records with a key no member has, or keys of two members) among the
    versions mapped since the last run and among the records of refused links (identity_conflicts:
    their keys stay with two members), plus every record sharing a key with their members, grown
    until it holds every seed it reaches and all records of those seeds' members. It gives what
    scanning every record gives (test_identity_scope.py) and reads the history only by key.

    Every key of a record mapped by the last run is in member_keys (a run gives each record's keys
    a member; keys are never deleted, and an erasure renames a key in both places), so a key no
    member owns is found among the versions mapped since: when id_keys holds no owned key, only
    those are read (at 1M orders the scan of every version cost 0.07 s of a 0.2 s day)."""
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE id_keys AS
            {_SEED_KEYS_SQL.format(records=f"({_records_sql('mapped_at > $since', 'mapped_at > $since', phones)})",
                                   is_seed=_IS_SEED)}
            UNION SELECT unnest(CAST($named AS VARCHAR[]))
            UNION SELECT key FROM identity_conflicts  -- a refused link's record stays a seed (keys of two members)""",
        {"since": since, "named": named},
    )
    # a seed that is a CRM record naming a member (Loyalty_Member_Id__c) reaches that member's keys:
    # a Contact of ours a CRM user gave a new address before the first pull shares no key with it
    # (looked for only where such records exist: the scan of member_keys is a day's cost otherwise)
    if _any_crm_named(conn):
        conn.execute(
            """INSERT INTO id_keys
               SELECT k.key FROM member_keys k LEFT JOIN member_resolution res ON res.member_id = k.member_id
               WHERE coalesce(res.survivor_id, k.member_id) IN (
                   SELECT coalesce(r.survivor_id, c.member_ref) FROM customer_versions c
                   LEFT JOIN member_resolution r ON r.member_id = c.member_ref
                   WHERE c.platform = 'salesforce' AND c.member_ref IS NOT NULL
                     AND c.customer_key IN (SELECT key FROM id_keys))
               EXCEPT SELECT key FROM id_keys""")
    by_key = "(email IN (SELECT key FROM id_keys) OR customer_key IN (SELECT key FROM id_keys))"
    # an order version is also reached by its phone's key
    by_phone = by_key if not phones else by_key[:-1] + """ OR EXISTS (
        SELECT 1 FROM phone_keys p WHERE p.key IN (SELECT key FROM id_keys)
        AND p.phone = order_versions.phone AND p.region IS NOT DISTINCT FROM order_versions.phone_region))"""
    while True:
        conn.execute(f"INSERT INTO id_keys {_OWNED_KEYS_SQL} EXCEPT SELECT key FROM id_keys")
        owned = conn.execute(
            "SELECT count(*) FROM member_keys WHERE key IN (SELECT key FROM id_keys)").fetchall()[0][0]
        new = "" if owned else "mapped_at > $since AND "
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE id_records AS {_records_sql(new + by_phone, new + by_key, phones)}",
            None if owned else {"since": since},
        )
        grown = conn.execute(
            f"INSERT INTO id_keys {_SEED_KEYS_SQL.format(records='id_records', is_seed=_IS_SEED)} EXCEPT SELECT key FROM id_keys"
        ).fetchall()[0][0]
        if not grown:
            return


def _insert_frame(conn: duckdb.DuckDBPyConnection, statement: str, rows: list[tuple], columns: list[str]) -> None:
    # column by column: a dict per row cost 0.6 s for the 318,000 keys of 1M orders
    with registered(conn, "_frame", pa.table(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))):
        conn.execute(statement)


MEMBER_OF_SQL = """
    coalesce(
        (SELECT coalesce(r.survivor_id, k.member_id) FROM member_keys k
         LEFT JOIN member_resolution r ON r.member_id = k.member_id WHERE k.key = {t}.customer_key),
        (SELECT coalesce(r.survivor_id, k.member_id) FROM member_keys k
         LEFT JOIN member_resolution r ON r.member_id = k.member_id WHERE k.key = {t}.email))
"""
