"""loyalty_assets: e-commerce orders to a points ledger and VIP tiers, on Dagster and DuckDB."""
