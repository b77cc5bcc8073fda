"""Resources: the DuckDB warehouse and one per external system, secrets only through EnvVar.

A system whose settings are absent is "not configured": its assets log that and skip, so the code
location always loads (CONTRACT.md §4).
"""

import os
from contextlib import contextmanager

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from loyalty_assets.clients.magento import MagentoClient
from loyalty_assets.lib.warehouse import ensure_schema, warehouse_path


class Warehouse(DuckDBResource):
    """The DuckDB file; connections are opened late and closed early (one writer at a time)."""

    @contextmanager
    def connect(self):
        with self.get_connection() as conn:
            ensure_schema(conn)
            yield conn

    @contextmanager
    def read(self):
        """Read-only when no writer holds the file; sensors and the CLI use it."""
        conn = duckdb.connect(self.database, read_only=True)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            yield conn
        finally:
            conn.close()


class MagentoResource(dg.ConfigurableResource):
    """Magento 2 REST: an admin token (username + password) or an integration access token."""

    base_url: str | None = None
    access_token: str | None = None
    username: str | None = None
    password: str | None = None
    tenant: str = "default"

    @property
    def is_configured(self) -> bool:
        return bool(self.base_url and (self.access_token or (self.username and self.password)))

    def client(self) -> MagentoClient:
        return MagentoClient(
            self.base_url, access_token=self.access_token, username=self.username, password=self.password
        )


def _env(name: str):
    """EnvVar when the variable is set, so an unset system is 'not configured' rather than an error."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources() -> dict:
    return {
        "warehouse": Warehouse(database=warehouse_path()),
        "magento": MagentoResource(
            base_url=_env("MAGENTO_BASE_URL"),
            access_token=_env("MAGENTO_ACCESS_TOKEN"),
            username=_env("MAGENTO_ADMIN_USERNAME"),
            password=_env("MAGENTO_ADMIN_PASSWORD"),
            tenant=os.environ.get("MAGENTO_TENANT") or "default",
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
