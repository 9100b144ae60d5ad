"""Alembic migrations of the identity database."""

from gatehouse.identity.database import upgrade_database

__all__ = ["upgrade_database"]
