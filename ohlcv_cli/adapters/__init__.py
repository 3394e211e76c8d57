"""Adapters, one per library: ccxt (fetcher), SQLAlchemy/Alembic (repository), kafka-python."""
