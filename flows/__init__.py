"""Prefect orchestration of the catalog stages; all logic lives in the `catalog` package."""
