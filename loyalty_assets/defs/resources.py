"""Resources: the DuckDB warehouse and one per external system, secrets only through EnvVar.

A system whose settings are absent is "not configured": its assets log that and skip, so the code
location always loads (CONTRACT.md §4). Each commerce resource hands out one client per tenant
(Magento instance, BigCommerce store hash, commercetools project, SFCC organization).
"""

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from loyalty_assets.lib.warehouse import ensure_schema, warehouse_path


class Warehouse(DuckDBResource):
    """The DuckDB file; connections are opened late and closed early (one writer at a time)."""

    @contextmanager
    def connect(self):
        # DuckDB creates the file but not its folder; without one the resource would retry for minutes
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as conn:
            ensure_schema(conn, self.database)
            yield conn

    @contextmanager
    def read(self):
        """Read-only when no writer holds the file (the CLI's support commands use it)."""
        conn = duckdb.connect(self.database, read_only=True)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            yield conn
        finally:
            conn.close()


class CommerceSource(dg.ConfigurableResource):
    """What the generic ingest code needs from every commerce platform."""

    @property
    def platform(self) -> str:
        raise NotImplementedError

    @property
    def is_configured(self) -> bool:
        raise NotImplementedError

    def clients(self) -> Iterator[tuple[str, object]]:
        """(tenant, client) pairs; each client has fetch/lookahead/server_time."""
        raise NotImplementedError


class MagentoResource(CommerceSource):
    """Magento 2 REST: an admin token (username + password) or an integration access token."""

    base_url: str | None = None
    access_token: str | None = None
    username: str | None = None
    password: str | None = None
    tenant: str = "default"

    @property
    def platform(self) -> str:
        return "magento"

    @property
    def is_configured(self) -> bool:
        return bool(self.base_url and (self.access_token or (self.username and self.password)))

    def client(self):
        from loyalty_assets.clients.magento import MagentoClient

        return MagentoClient(
            self.base_url, access_token=self.access_token, username=self.username, password=self.password
        )

    def clients(self):
        yield self.tenant, self.client()


class BigCommerceResource(CommerceSource):
    """BigCommerce stores by hash; `BIGCOMMERCE_ACCESS_TOKEN_<HASH>` overrides the token of one store."""

    api_url: str | None = None
    store_hashes: str | None = None
    access_token: str | None = None

    @property
    def platform(self) -> str:
        return "bigcommerce"

    @property
    def hashes(self) -> list[str]:
        return [h.strip() for h in (self.store_hashes or "").split(",") if h.strip()]

    def token_for(self, store_hash: str) -> str | None:
        """`<HASH>` as the hash is written, or in upper case (environment names usually are)."""
        return (os.environ.get(f"BIGCOMMERCE_ACCESS_TOKEN_{store_hash}")
                or os.environ.get(f"BIGCOMMERCE_ACCESS_TOKEN_{store_hash.upper()}") or self.access_token)

    @property
    def is_configured(self) -> bool:
        return bool(self.api_url and self.hashes and all(self.token_for(h) for h in self.hashes))

    def clients(self):
        from loyalty_assets.clients.bigcommerce import BigCommerceClient

        for store_hash in self.hashes:
            yield store_hash, BigCommerceClient(self.api_url, store_hash, self.token_for(store_hash))


class CommercetoolsResource(CommerceSource):
    api_url: str | None = None
    auth_url: str | None = None
    project_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @property
    def platform(self) -> str:
        return "commercetools"

    @property
    def is_configured(self) -> bool:
        return bool(
            self.api_url and self.auth_url and self.project_key and self.client_id and self.client_secret
        )

    def clients(self):
        from loyalty_assets.clients.commercetools import CommercetoolsClient

        yield (
            self.project_key,
            CommercetoolsClient(
                self.api_url, self.auth_url, self.project_key, self.client_id, self.client_secret
            ),
        )


class SfccResource(CommerceSource):
    api_url: str | None = None
    organization_id: str | None = None
    access_token: str | None = None

    @property
    def platform(self) -> str:
        return "sfcc"

    @property
    def is_configured(self) -> bool:
        return bool(self.api_url and self.organization_id and self.access_token)

    def clients(self):
        from loyalty_assets.clients.sfcc import SfccClient

        yield self.organization_id, SfccClient(self.api_url, self.organization_id, self.access_token)


class LoyaltyPlatformResource(dg.ConfigurableResource):
    """A loyalty platform reached with a base URL and an API key (Smile.io, LoyaltyLion)."""

    api_url: str | None = None
    api_key: str | None = None
    timeout_seconds: float = Field(30.0, gt=0, description="HTTP timeout of a request (connect and read)")
    settle_seconds: float = Field(
        120.0, ge=0,
        description="A points write of unknown outcome (timeout, 5xx, lost response) is looked up, and sent "
        "again if absent, only this long after it was sent: the platform may still apply a request the "
        "client gave up on, and a lookup before that would credit it twice. Until then the member's "
        "batches wait.")

    @property
    def is_configured(self) -> bool:
        return bool(self.api_url and self.api_key)

    def client(self):
        module, name = self.client_class
        return getattr(importlib.import_module(module), name)(self.api_url, self.api_key, timeout=self.timeout_seconds)


class SmileResource(LoyaltyPlatformResource):
    client_class: ClassVar[tuple[str, str]] = ("loyalty_assets.clients.smile", "SmileClient")


class LoyaltyLionResource(LoyaltyPlatformResource):
    client_class: ClassVar[tuple[str, str]] = ("loyalty_assets.clients.loyaltylion", "LoyaltyLionClient")


class SalesforceResource(dg.ConfigurableResource):
    instance_url: str | None = None
    session_id: str | None = None
    login_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    ca_bundle: str | None = None

    @property
    def is_configured(self) -> bool:
        return bool(
            (self.instance_url and self.session_id)
            or (self.client_id and self.client_secret and self.username and self.password)
        )

    def client(self, on_call=None):
        from loyalty_assets.clients.salesforce import connect_salesforce

        return connect_salesforce(
            instance_url=self.instance_url,
            session_id=self.session_id,
            login_url=self.login_url or "https://login.salesforce.com",
            client_id=self.client_id,
            client_secret=self.client_secret,
            username=self.username,
            password=self.password,
            ca_bundle=self.ca_bundle,
            on_call=on_call,
        )


def _env(name: str):
    """EnvVar when the variable is set, so an unset system is 'not configured' rather than an error."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def source_resources() -> dict[str, CommerceSource]:
    return {
        "magento": MagentoResource(
            base_url=_env("MAGENTO_BASE_URL"),
            access_token=_env("MAGENTO_ACCESS_TOKEN"),
            username=_env("MAGENTO_ADMIN_USERNAME"),
            password=_env("MAGENTO_ADMIN_PASSWORD"),
            tenant=os.environ.get("MAGENTO_TENANT") or "default",
        ),
        "bigcommerce": BigCommerceResource(
            api_url=_env("BIGCOMMERCE_API_URL"),
            store_hashes=os.environ.get("BIGCOMMERCE_STORE_HASHES"),
            access_token=_env("BIGCOMMERCE_ACCESS_TOKEN"),
        ),
        "commercetools": CommercetoolsResource(
            api_url=_env("COMMERCETOOLS_API_URL"),
            auth_url=_env("COMMERCETOOLS_AUTH_URL"),
            project_key=os.environ.get("COMMERCETOOLS_PROJECT_KEY"),
            client_id=_env("COMMERCETOOLS_CLIENT_ID"),
            client_secret=_env("COMMERCETOOLS_CLIENT_SECRET"),
        ),
        "sfcc": SfccResource(
            api_url=_env("SFCC_API_URL"),
            organization_id=os.environ.get("SFCC_ORGANIZATION_ID"),
            access_token=_env("SFCC_ACCESS_TOKEN"),
        ),
    }


def target_resources() -> dict:
    return {
        "salesforce": SalesforceResource(
            instance_url=_env("SALESFORCE_INSTANCE_URL"),
            session_id=_env("SALESFORCE_SESSION_ID"),
            login_url=_env("SALESFORCE_LOGIN_URL"),
            client_id=_env("SALESFORCE_CLIENT_ID"),
            client_secret=_env("SALESFORCE_CLIENT_SECRET"),
            username=_env("SALESFORCE_USERNAME"),
            password=_env("SALESFORCE_PASSWORD"),
            ca_bundle=_env("SALESFORCE_CA_BUNDLE"),
        ),
        "smile": SmileResource(api_url=_env("SMILE_API_URL"), api_key=_env("SMILE_API_KEY"),
                               settle_seconds=_settle_seconds()),
        "loyaltylion": LoyaltyLionResource(
            api_url=_env("LOYALTYLION_API_URL"), api_key=_env("LOYALTYLION_API_KEY"), settle_seconds=_settle_seconds()
        ),
    }


def _settle_seconds() -> int:
    """LOYALTY_SYNC_SETTLE_SECONDS: how long, in whole seconds, a points write of unknown outcome is left
    to settle before it is looked up (LoyaltyPlatformResource.settle_seconds; default 120)."""
    text = os.environ.get("LOYALTY_SYNC_SETTLE_SECONDS", "").strip() or "120"
    if not text.isdigit():  # the code location still loads: a warning, and the default
        logging.getLogger(__name__).warning(
            "LOYALTY_SYNC_SETTLE_SECONDS must be a whole number of seconds >= 0, got %r: using 120", text)
        return 120
    return int(text)


def unconfigured_resources() -> dict:
    """Every external-system resource key of the location, none configured (each then skips itself)."""

    return {
        "magento": MagentoResource(),
        "bigcommerce": BigCommerceResource(),
        "commercetools": CommercetoolsResource(),
        "sfcc": SfccResource(),
        "smile": SmileResource(),
        "loyaltylion": LoyaltyLionResource(),
        "salesforce": SalesforceResource(),
    }


def build_resources() -> dict:
    return {"warehouse": Warehouse(database=warehouse_path()), **source_resources(), **target_resources()}


@dg.definitions
def resources() -> dg.Definitions:
    # the location's executor: materializing in the UI (its implicit asset job) and backfills run
    # in-process like loyalty_job (a process per step took 4 min for an empty day, against 10 s)
    return dg.Definitions(resources=build_resources(), executor=dg.in_process_executor)
