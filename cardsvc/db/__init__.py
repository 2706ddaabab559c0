"""Persistence: SQLAlchemy models, engines and Alembic migrations. Knows nothing of HTTP."""
