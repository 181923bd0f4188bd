"""Alembic migrations of the usqa ledger (run them with ``usqa db upgrade``)."""
