"""Pure domain logic: no Dagster, no HTTP. SQL that implements rules lives in lib/sql/."""
