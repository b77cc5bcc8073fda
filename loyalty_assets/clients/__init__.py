"""Thin ``requests`` clients for the platforms' REST APIs (no Dagster, no DuckDB), so the
extraction logic can be tested against the local emulators and reused outside Dagster."""

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
from loyalty_assets.clients.magento import (
    MagentoClient,
    SearchResult,
    format_magento_time,
    magento_time,
    parse_json,
    to_json,
)

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthError",
    "ClientError",
    "HttpClient",
    "MagentoClient",
    "RateLimitedError",
    "RetryPolicy",
    "SearchResult",
    "ServerError",
    "format_magento_time",
    "magento_time",
    "parse_json",
    "send",
    "to_json",
]
