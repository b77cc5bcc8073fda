"""Thin ``requests`` clients for the platforms' REST APIs (no Dagster, no DuckDB), so the
extraction logic can be tested against the local emulators and reused outside Dagster."""

from loyalty_assets.clients.bigcommerce import BigCommerceClient
from loyalty_assets.clients.commercetools import (
    CommercetoolsClient,
    ct_time,
    format_ct_time,
)
from loyalty_assets.clients.http import (
    ApiConnectionError,
    ApiError,
    AuthError,
    ClientError,
    HttpClient,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    send,
)
from loyalty_assets.clients.loyaltylion import LoyaltyLionClient
from loyalty_assets.clients.magento import (
    MagentoClient,
    SearchResult,
    format_magento_time,
    magento_time,
    parse_json,
    to_json,
)
from loyalty_assets.clients.salesforce import (
    ApiUsage,
    RecordError,
    RecordResult,
    RequestLimitExceeded,
    SalesforceApiError,
    SalesforceAuthError,
    SalesforceClient,
    connect_salesforce,
    connect_salesforce_from_env,
    salesforce_settings,
)
from loyalty_assets.clients.sfcc import SfccClient, format_sfcc_time, sfcc_time
from loyalty_assets.clients.smile import (
    BalanceWouldBeNegativeError,
    Pacer,
    SmileClient,
    UncertainOutcomeError,
    choose_customer,
)

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthError",
    "BalanceWouldBeNegativeError",
    "BigCommerceClient",
    "ClientError",
    "CommercetoolsClient",
    "choose_customer",
    "ct_time",
    "format_ct_time",
    "HttpClient",
    "LoyaltyLionClient",
    "MagentoClient",
    "Pacer",
    "RateLimitedError",
    "RetryPolicy",
    "SearchResult",
    "SmileClient",
    "ServerError",
    "SfccClient",
    "format_magento_time",
    "format_sfcc_time",
    "magento_time",
    "parse_json",
    "UncertainOutcomeError",
    "send",
    "sfcc_time",
    "to_json",
    "ApiUsage",
    "RecordError",
    "RecordResult",
    "RequestLimitExceeded",
    "SalesforceApiError",
    "SalesforceAuthError",
    "SalesforceClient",
    "connect_salesforce",
    "connect_salesforce_from_env",
    "salesforce_settings",
]
