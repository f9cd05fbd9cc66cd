"""Alembic migrations of the service's schema (shipped with the package; see service/migrate.py).
The schema only ever changes through a new file in ``versions/``."""
