"""Pulls from the loyalty platforms and Salesforce: raw input like orders, upstream of identity and
the ledger (DESIGN.md §4). Their list endpoints filter by update time only, so each run reads the
records as they are now and keeps every version not seen before."""

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.lib.platforms.events import modified
from loyalty_assets.lib.raw import RECORD_KEYS, insert_versions


def contact_soql() -> str:
    # IsPersonAccount exists only in orgs with Person Accounts (the push then writes a person's Account)
    return ("SELECT Id, Email, Loyalty_Member_Id__c, HasOptedOutOfEmail, Loyalty_Points_Spendable__c, "
            "Loyalty_Points_Pending__c, Loyalty_VIP_Tier__c, AccountId, LastModifiedDate"
            + (", IsPersonAccount" if PROGRAM.salesforce.person_accounts else "") + " FROM Contact")

# every Lead with an e-mail: its id is an identity key (RULES.md §8), and a member the CRM has as an
# open Lead is written on it rather than given a second one (a converted Lead is read-only). One
# without an e-mail links no one: a marketing org's bulk of them is not read.
# Our fields too: a CRM edit of one we own is a conflict, as on a Contact (defs/sync/salesforce.py)
LEAD_SOQL = ("SELECT Id, Email, Loyalty_Member_Id__c, IsConverted, Loyalty_Points_Spendable__c, Loyalty_Points_Pending__c, "
             "Loyalty_VIP_Tier__c, LastModifiedDate FROM Lead WHERE Email != null")

REQUEST_SOQL = (
    "SELECT Id, Contact__c, Contact__r.Loyalty_Member_Id__c, Points__c, Reason__c, Status__c, LastModifiedDate "
    "FROM Loyalty_Adjustment_Request__c WHERE Status__c = 'New'"
)

# asset name -> (resource key, raw source, how to read it, description); ids and times: raw.RECORD_KEYS
PULLS = {
    "raw_smile_customers": ("smile", "smile.customers", lambda c: c.customers(),
                            "Every version of every Smile.io customer (its id becomes an identity key of the member)."),
    "raw_smile_points_transactions": (
        "smile", "smile.points_transactions", lambda c: c.points_transactions(),
        "Smile.io points transactions: those that spend points are redemptions (`redeem` entries)."),
    "raw_loyaltylion_customers": (
        "loyaltylion", "loyaltylion.customers", lambda c: c.customers(),
        "Every version of every LoyaltyLion customer (its merchant id becomes an identity key)."),
    "raw_loyaltylion_transactions": (
        "loyaltylion", "loyaltylion.transactions", lambda c: c.transactions(),
        "LoyaltyLion transactions: claimed rewards are redemptions (`redeem` entries), voided ones give points back."),
    "raw_smile_reward_fulfillments": (
        "smile", "smile.reward_fulfillments", lambda c: c.reward_fulfillments(),
        "Smile.io reward fulfillments: the discount code of a redemption, to find the order it was used on."),
    "raw_smile_referrals": (
        "smile", "smile.referrals", lambda c: c.referrals(),
        "Smile.io referrals (GET /v1/referrals: the list path is assumed, see loyalty_apis.md)."),
    "raw_loyaltylion_activities": (
        "loyaltylion", "loyaltylion.activities", lambda c: c.activities(),
        "LoyaltyLion activities: `$referral` ones name a referrer and a referred e-mail."),
    "raw_salesforce_contacts": (
        "salesforce", "salesforce.contacts", lambda c: c.query_all(contact_soql()),
        "Salesforce Contacts (their ids become identity keys; consent stays Salesforce's)."),
    "raw_salesforce_leads": (
        "salesforce", "salesforce.leads", lambda c: c.query_all(LEAD_SOQL),
        "Salesforce Leads (their ids become identity keys; an open one is written on, not duplicated)."),
    "raw_salesforce_adjustment_requests": (
        "salesforce", "salesforce.adjustment_requests", lambda c: c.query_all(REQUEST_SOQL),
        "New Loyalty_Adjustment_Request__c records: validated and booked as `manual` entries."),
}  # fmt: skip
PULL_ASSETS = list(PULLS)


def pull(context: dg.AssetExecutionContext, name: str) -> dg.MaterializeResult:
    key, source, read, _ = PULLS[name]
    id_field, fields = RECORD_KEYS[source]
    resource = getattr(context.resources, key)
    if not resource.is_configured:
        context.log.info(f"{key} is not configured: skipped")
        return dg.MaterializeResult(metadata={"configured": False})
    with resource.client() as client:
        items = read(client)  # the full list: a record created with an old date is still found
    items = [{k: v for k, v in r.items() if k != "attributes"} for r in items]
    with context.resources.warehouse.connect() as conn:
        offered, added = insert_versions(
            conn, source, "default", items,
            record_id=lambda r: r[id_field],
            modified_at=lambda r: modified(r, *fields),
            tz=PROGRAM.tz,
        )
    return dg.MaterializeResult(metadata={"configured": True, "records": offered, "new_versions": added})


def _pull_asset(name: str):
    key, _, _, description = PULLS[name]

    @dg.asset(
        name=name,
        group_name="ingest",
        required_resource_keys={"warehouse", key},
        kinds={"duckdb", key},
        description=description,
        **WAREHOUSE_ASSET,
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return pull(context, name)

    return _asset


pull_assets = [_pull_asset(name) for name in PULLS]
